package clearance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"golang.org/x/time/rate"
)

func TestCheckEndpoint(t *testing.T) {
	loopback := DestinationPolicy{AllowHTTP: true, AllowedPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	tests := []struct {
		name     string
		policy   DestinationPolicy
		endpoint string
		problem  string // "" when allowed
	}{
		{"public https", DestinationPolicy{}, "https://sts.example.com/connect/token", ""},
		{"public IPv4 literal", DestinationPolicy{}, "https://8.8.8.8/connect/token", ""},
		{"public IPv6 literal", DestinationPolicy{}, "https://[2606:4700::1]/connect/token", ""},
		{"http without the flag", DestinationPolicy{}, "http://sts.example.com/connect/token", "clear text"},
		{"http with the flag", DestinationPolicy{AllowHTTP: true}, "http://sts.example.com/connect/token", ""},
		{"loopback", DestinationPolicy{}, "https://127.0.0.1:8443/connect/token", "loopback"},
		{"IPv6 loopback", DestinationPolicy{}, "https://[::1]/connect/token", "loopback"},
		{"IPv4-mapped loopback", DestinationPolicy{}, "https://[::ffff:127.0.0.1]/connect/token", "loopback"},
		{"metadata service", DestinationPolicy{}, "https://169.254.169.254/latest", "link-local"},
		{"private 10/8", DestinationPolicy{}, "https://10.96.0.1/connect/token", "private"},
		{"private 192.168/16", DestinationPolicy{}, "https://192.168.1.1/connect/token", "private"},
		{"IPv6 unique local", DestinationPolicy{}, "https://[fd00::1]/connect/token", "private"},
		{"unspecified", DestinationPolicy{}, "https://0.0.0.0/connect/token", "unspecified"},
		{"carrier-grade NAT", DestinationPolicy{}, "https://100.64.0.1/connect/token", "shared"},
		{"NAT64 of a private address", DestinationPolicy{}, "https://[64:ff9b::a00:1]/connect/token", "NAT64"},
		{"allowed loopback range", loopback, "http://127.0.0.1:8090/connect/token", ""},
		{"allowed range does not cover others", loopback, "http://10.0.0.1/connect/token", "private"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			err := tt.policy.CheckEndpoint(tt.endpoint)
			if tt.problem == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			var de *DestinationError
			g.Expect(errors.As(err, &de)).To(BeTrue(), "got %v", err)
			g.Expect(de.Problem).To(ContainSubstring(tt.problem))
			g.Expect(de.Endpoint).To(Equal(tt.endpoint))
		})
	}
}

// countingListener accepts connections on loopback and counts them.
func countingListener(t *testing.T) (addr string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	accepted = &atomic.Int32{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}()
	return ln.Addr().String(), accepted
}

func TestMintRefusesForbiddenDestinationsWithoutSendingAPacket(t *testing.T) {
	addr, accepted := countingListener(t)
	_, port, _ := net.SplitHostPort(addr)
	tests := []struct {
		name    string
		policy  DestinationPolicy
		base    string
		problem string
	}{
		{"IP literal", DestinationPolicy{AllowHTTP: true}, "http://" + addr + "/connect", "it is a loopback address"},
		{"a name resolving to loopback", DestinationPolicy{AllowHTTP: true}, "http://localhost:" + port + "/connect", "it resolves to a loopback address"},
		{"http without the flag", DestinationPolicy{AllowedPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, "http://" + addr + "/connect", "clear text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			c := NewClient(WithEgress(EgressOptions{Policy: tt.policy}))
			_, err := c.Mint(context.Background(), MintRequest{Connection: mustConnection(t, nil, tt.base)})
			var de *DestinationError
			g.Expect(errors.As(err, &de)).To(BeTrue(), "got %T %v", err, err)
			g.Expect(de.Problem).To(ContainSubstring(tt.problem))
			g.Expect(err.Error()).NotTo(ContainSubstring("127.0.0.1:"+port+" "), "the resolved address is not reported")
			g.Expect(accepted.Load()).To(BeZero(), "nothing was dialled")
		})
	}

	t.Run("allowed by the CIDR flag", func(t *testing.T) {
		g := NewWithT(t)
		c := NewClient(WithEgress(EgressOptions{Policy: DestinationPolicy{AllowHTTP: true, AllowedPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}))
		_, err := c.Mint(context.Background(), MintRequest{Connection: mustConnection(t, nil, "http://localhost:"+port+"/connect")})
		var te *TransientError
		g.Expect(errors.As(err, &te)).To(BeTrue(), "got %T %v", err, err)
		g.Expect(accepted.Load()).To(BeNumerically(">", 0), "the listener was dialled")
	})
}

// hungListener accepts connections and never answers.
func hungListener(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestMintIsBoundedByTheMintTimeoutAndTheAddressCap(t *testing.T) {
	g := NewWithT(t)
	var addrs []string
	for i := range 20 {
		addrs = append(addrs, fmt.Sprintf("%s/connect%d", hungListener(t), i))
	}
	conn := mustConnection(t, nil, addrs...)
	g.Expect(conn.STSBaseAddresses).To(HaveLen(MaxSTSAddresses))
	g.Expect(conn.STSBaseAddresses).To(Equal(addrs[:MaxSTSAddresses]), "the first ones, in file order")

	c := NewClient(WithEgress(loopbackEgress), WithAttemptTimeout(200*time.Millisecond), WithMintTimeout(time.Second))
	start := time.Now()
	_, err := c.Mint(context.Background(), MintRequest{Connection: conn})
	elapsed := time.Since(start)
	var te *TransientError
	g.Expect(errors.As(err, &te)).To(BeTrue(), "got %v", err)
	g.Expect(te.Reason).To(HavePrefix(fmt.Sprintf("all %d STS addresses failed", MaxSTSAddresses)))
	g.Expect(strings.Count(te.Reason, "timed out")).To(Equal(MaxSTSAddresses))
	g.Expect(elapsed).To(BeNumerically("<", time.Second), "three attempts of 200ms, well inside the mint timeout")

	// A mint timeout shorter than the attempts ends the mint: the attempt
	// under way times out and no further address is tried.
	c = NewClient(WithEgress(loopbackEgress), WithAttemptTimeout(10*time.Second), WithMintTimeout(300*time.Millisecond))
	start = time.Now()
	_, err = c.Mint(context.Background(), MintRequest{Connection: conn})
	g.Expect(time.Since(start)).To(BeNumerically("<", 3*time.Second))
	g.Expect(errors.As(err, &te)).To(BeTrue(), "got %v", err)
	g.Expect(te.Timeout()).To(BeTrue())
	g.Expect(te.Detail).To(ContainSubstring("deadline"))
}

func TestParseTenThousandAddresses(t *testing.T) {
	g := NewWithT(t)
	addrs := make([]string, 10_000)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("https://sts%d.example.com/connect", i%5000) // half are duplicates
	}
	data := connectionFileJSON(t, testKey(t), nil, addrs...)
	g.Expect(len(data)).To(BeNumerically("<", MaxConnectionFileSize))
	cf, err := ParseConnectionFile(data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cf.STSBaseAddresses).To(Equal(addrs[:MaxSTSAddresses]))
}

func BenchmarkParseTenThousandAddresses(b *testing.B) {
	addrs := make([]string, 10_000)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("https://sts%d.example.com/connect", i)
	}
	data := connectionFileJSON(b, testKey(b), nil, addrs...)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseConnectionFile(data); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFailoverSummaryIsCapped(t *testing.T) {
	g := NewWithT(t)
	attempts := make([]string, 7)
	for i := range attempts {
		attempts[i] = fmt.Sprintf("https://sts%d.example/connect/token: unreachable", i)
	}
	got := joinAttempts(attempts)
	g.Expect(got).To(HaveSuffix("; ...and 4 more"))
	g.Expect(strings.Count(got, "unreachable")).To(Equal(maxListedAttempts))
	g.Expect(joinAttempts(attempts[:2])).To(Equal(attempts[0] + "; " + attempts[1]))
}

func TestRequestLimiterBoundsAttempts(t *testing.T) {
	g := NewWithT(t)
	addr, accepted := countingListener(t)
	// One request per minute, burst one: the first attempt goes out, the
	// second cannot get a slot within its mint's deadline.
	limiter := rate.NewLimiter(rate.Every(time.Minute), 1)
	c := NewClient(WithEgress(loopbackEgress), WithRequestLimiter(limiter), WithMintTimeout(300*time.Millisecond))
	conn := mustConnection(t, nil, "http://"+addr+"/connect")
	_, err := c.Mint(context.Background(), MintRequest{Connection: conn})
	g.Expect(err).To(HaveOccurred())
	g.Eventually(accepted.Load).Should(Equal(int32(1)))
	_, err = c.Mint(context.Background(), MintRequest{Connection: conn})
	var te *TransientError
	g.Expect(errors.As(err, &te)).To(BeTrue(), "got %v", err)
	g.Expect(te.Timeout()).To(BeTrue())
	g.Consistently(accepted.Load, 200*time.Millisecond).Should(Equal(int32(1)), "the limited attempt was not sent")
}

func TestParseCIDRs(t *testing.T) {
	g := NewWithT(t)
	got, err := ParseCIDRs(" 127.0.0.0/8, ,::1/128,10.1.2.3/8")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal([]netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("10.0.0.0/8"),
	}))
	_, err = ParseCIDRs("127.0.0.1")
	g.Expect(err).To(MatchError(ContainSubstring(`invalid CIDR "127.0.0.1"`)))
}

func TestMintThroughAProxyFromTheEnvironment(t *testing.T) {
	g := NewWithT(t)
	var proxied atomic.Value
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Store(r.URL.String()) // a forward proxy sees the absolute URL
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("NO_PROXY", "")
	// The proxy listens on loopback, which the policy does not allow: it is
	// dialled because the administrator configured it.
	c := NewClient(WithEgress(EgressOptions{Policy: DestinationPolicy{AllowHTTP: true}}))
	_, err := c.Mint(context.Background(), MintRequest{Connection: mustConnection(t, nil, "http://sts.clearance.invalid/connect")})
	var te *TransientError
	g.Expect(errors.As(err, &te)).To(BeTrue(), "got %T %v", err, err)
	g.Expect(te.StatusCode).To(Equal(http.StatusServiceUnavailable))
	g.Expect(proxied.Load()).To(Equal("http://sts.clearance.invalid/connect/token"))

	// A target that is itself forbidden is not handed to the proxy.
	proxied.Store("")
	_, err = c.Mint(context.Background(), MintRequest{Connection: mustConnection(t, nil, "http://10.1.2.3/connect")})
	var de *DestinationError
	g.Expect(errors.As(err, &de)).To(BeTrue(), "got %T %v", err, err)
	g.Expect(proxied.Load()).To(Equal(""))
}
