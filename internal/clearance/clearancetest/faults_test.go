package clearancetest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

func TestFaultKinds(t *testing.T) {
	tests := []struct {
		name  string
		fault clearancetest.Fault
		check func(g Gomega, r tokenReply)
	}{
		{"503", clearancetest.FaultServerError(http.StatusServiceUnavailable), func(g Gomega, r tokenReply) {
			g.Expect(r.Status).To(Equal(503))
			g.Expect(r.str("error")).To(Equal("temporarily_unavailable"))
		}},
		{"500 plain text", clearancetest.FaultStatus(500, "boom"), func(g Gomega, r tokenReply) {
			g.Expect(r.Status).To(Equal(500))
			g.Expect(r.Header.Get("Content-Type")).To(HavePrefix("text/plain"))
			g.Expect(string(r.Raw)).To(Equal("boom"))
		}},
		{"429 with Retry-After", clearancetest.FaultRateLimited(1500 * time.Millisecond), func(g Gomega, r tokenReply) {
			g.Expect(r.Status).To(Equal(429))
			g.Expect(r.Header.Get("Retry-After")).To(Equal("2"))
		}},
		{"200 with HTML", clearancetest.FaultHTML(200), func(g Gomega, r tokenReply) {
			g.Expect(r.Status).To(Equal(200))
			g.Expect(r.Header.Get("Content-Type")).To(HavePrefix("text/html"))
			g.Expect(string(r.Raw)).To(HavePrefix("<!DOCTYPE html>"))
		}},
		{"200 without access_token", clearancetest.FaultMissingAccessToken(), func(g Gomega, r tokenReply) {
			g.Expect(r.Status).To(Equal(200))
			g.Expect(r.JSON).NotTo(HaveKey("access_token"))
			g.Expect(r.JSON).To(HaveKeyWithValue("token_type", "Bearer"))
		}},
		{"wrong token_type", clearancetest.FaultTokenType("mac"), func(g Gomega, r tokenReply) {
			g.Expect(r.str("token_type")).To(Equal("mac"))
			g.Expect(r.str("access_token")).NotTo(BeEmpty())
		}},
		{"expires_in 0", clearancetest.FaultExpiresIn(0), func(g Gomega, r tokenReply) {
			g.Expect(r.JSON["expires_in"]).To(Equal(json.Number("0")))
		}},
		{"expires_in negative", clearancetest.FaultExpiresIn(-60), func(g Gomega, r tokenReply) {
			g.Expect(r.JSON["expires_in"]).To(Equal(json.Number("-60")))
		}},
		{"expires_in string", clearancetest.FaultExpiresIn("3600"), func(g Gomega, r tokenReply) {
			g.Expect(r.JSON["expires_in"]).To(Equal("3600"))
		}},
		{"expires_in enormous", clearancetest.FaultExpiresIn(int64(1) << 62), func(g Gomega, r tokenReply) {
			g.Expect(r.JSON["expires_in"]).To(Equal(json.Number("4611686018427387904")))
		}},
		{"expires_in null", clearancetest.FaultExpiresIn(nil), func(g Gomega, r tokenReply) {
			g.Expect(r.JSON).To(HaveKeyWithValue("expires_in", BeNil()))
		}},
		{"extra member", clearancetest.Fault{Override: map[string]any{"refresh_token": "r"}}, func(g Gomega, r tokenReply) {
			g.Expect(r.str("refresh_token")).To(Equal("r"))
			g.Expect(r.str("access_token")).NotTo(BeEmpty())
		}},
	}
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			srv.ClearFaults()
			srv.ResetStats()
			g.Expect(srv.InjectFault(tc.fault.Times(1))).To(Succeed())
			tc.check(g, request(t, srv, cf, "form"))
			// Exactly one request was affected.
			g.Expect(request(t, srv, cf, "form").Status).To(Equal(200))
			st := srv.Stats()
			g.Expect(st.Outcome(clearancetest.OutcomeFault)).To(Equal(int64(1)))
			g.Expect(st.Outcome(clearancetest.OutcomeSuccess)).To(Equal(int64(1)))
			g.Expect(srv.PendingFaults()).To(BeEmpty())
		})
	}
}

func TestFaultCountAndOrder(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	g.Expect(srv.InjectFault(clearancetest.FaultServerError(502).Times(2))).To(Succeed())
	g.Expect(srv.InjectFault(clearancetest.FaultRateLimited(time.Second).Times(1))).To(Succeed())
	g.Expect(srv.PendingFaults()).To(HaveLen(2))
	var got []int
	for range 4 {
		got = append(got, request(t, srv, cf, "form").Status)
	}
	g.Expect(got).To(Equal([]int{502, 502, 429, 200}))
}

func TestFaultUnlimitedUntilCleared(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	g.Expect(srv.InjectFault(clearancetest.FaultServerError(500))).To(Succeed())
	for range 3 {
		g.Expect(request(t, srv, cf, "form").Status).To(Equal(500))
	}
	srv.ClearFaults()
	g.Expect(request(t, srv, cf, "form").Status).To(Equal(200))
}

func TestFaultProbability(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t, clearancetest.WithSigningKey(testKey(t, 0)))
	cf := newClient(t, srv, 1)
	g.Expect(srv.InjectFault(clearancetest.FaultServerError(503).WithProbability(0.5))).To(Succeed())
	// Use a fixed, pre-signed assertion: signing per request would dominate.
	a, err := cf.SignAssertion(clearancetest.AssertionOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	const n = 200
	faulted := 0
	for range n {
		if post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), a)).Status == 503 {
			faulted++
		}
	}
	// P(outside [60,140]) for Binomial(200, 0.5) is below 1e-8.
	g.Expect(faulted).To(BeNumerically(">=", 60))
	g.Expect(faulted).To(BeNumerically("<=", 140))
	g.Expect(srv.Stats().Outcome(clearancetest.OutcomeFault)).To(Equal(int64(faulted)))
}

func TestFaultLatency(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	g.Expect(srv.InjectFault(clearancetest.FaultLatency(200 * time.Millisecond).Times(1))).To(Succeed())
	start := time.Now()
	r := request(t, srv, cf, "form")
	g.Expect(time.Since(start)).To(BeNumerically(">=", 200*time.Millisecond))
	g.Expect(r.Status).To(Equal(200), "latency alone does not change the outcome")
	g.Expect(srv.Stats().Delayed).To(Equal(int64(1)))
	g.Expect(srv.Stats().Outcome(clearancetest.OutcomeSuccess)).To(Equal(int64(1)))

	// Latency combined with a status.
	g.Expect(srv.InjectFault(clearancetest.FaultServerError(504).WithLatency(100 * time.Millisecond).Times(1))).To(Succeed())
	start = time.Now()
	g.Expect(request(t, srv, cf, "form").Status).To(Equal(504))
	g.Expect(time.Since(start)).To(BeNumerically(">=", 100*time.Millisecond))
}

func TestFaultLatencyClientTimeout(t *testing.T) {
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	if err := srv.InjectFault(clearancetest.FaultLatency(5 * time.Second).Times(1)); err != nil {
		t.Fatal(err)
	}
	a, _ := cf.SignAssertion(clearancetest.AssertionOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.TokenEndpoint(),
		strings.NewReader(url.Values{"client_id": {cf.ClientID()}, "grant_type": {clearancetest.GrantTypeJWTBearer}, "assertion": {a}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := srv.Client().Do(req)
	if err == nil {
		_ = resp.Body.Close()
		t.Fatal("expected a timeout")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestFaultDrop(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	g.Expect(srv.InjectFault(clearancetest.FaultDrop().Times(1))).To(Succeed())
	a, err := cf.SignAssertion(clearancetest.AssertionOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.TokenEndpoint(),
		strings.NewReader(url.Values{"client_id": {cf.ClientID()}, "grant_type": {clearancetest.GrantTypeJWTBearer}, "assertion": {a}}.Encode()))
	g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := srv.Client().Do(req)
	if err == nil {
		_ = resp.Body.Close()
	}
	g.Expect(err).To(HaveOccurred(), "the connection is closed without a response")
	g.Expect(request(t, srv, cf, "form").Status).To(Equal(200))
	dropped := srv.Requests()[0]
	g.Expect(dropped.Status).To(Equal(0))
	g.Expect(dropped.Fault).To(BeTrue())
	g.Expect(dropped.Outcome).To(Equal(clearancetest.OutcomeFault))
	// Claims of pre-empted requests are still decoded for observation.
	g.Expect(dropped.Issuer).To(Equal(cf.ClientID()))
	g.Expect(dropped.Expiry).NotTo(BeNil())
}

// TestMutateFaultSkipsRejections: a mutating fault waits for a success.
func TestMutateFaultSkipsRejections(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	g.Expect(srv.InjectFault(clearancetest.FaultTokenType("mac").Times(1))).To(Succeed())
	r := post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), "garbage"))
	g.Expect(r.str("error")).To(Equal(clearancetest.ErrInvalidGrant))
	g.Expect(srv.PendingFaults()).To(HaveLen(1))
	g.Expect(request(t, srv, cf, "form").str("token_type")).To(Equal("mac"))
	g.Expect(srv.PendingFaults()).To(BeEmpty())
}

func TestFaultValidation(t *testing.T) {
	srv := newServer(t)
	bad := []clearancetest.Fault{
		{},
		{Status: 42},
		{Status: 500, Drop: true},
		{Status: 500, Override: map[string]any{"a": 1}},
		{Status: 500, Count: -1},
		{Status: 500, Probability: 1.5},
		{Latency: time.Hour},
		{Status: 500, Header: map[string]string{"Bad Name": "x"}},
	}
	for i, f := range bad {
		if err := srv.InjectFault(f); err == nil {
			t.Errorf("fault %d accepted: %+v", i, f)
		}
	}
}

func TestStopListeningAndResume(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	url := srv.TokenEndpoint()
	g.Expect(request(t, srv, cf, "form").Status).To(Equal(200)) // leaves a keep-alive connection

	g.Expect(srv.StopListening()).To(Succeed())
	g.Expect(srv.StopListening()).To(Succeed(), "idempotent")
	g.Expect(srv.Listening()).To(BeFalse())
	a, _ := cf.SignAssertion(clearancetest.AssertionOptions{})
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url,
		strings.NewReader("client_id="+cf.ClientID()+"&grant_type="+clearancetest.GrantTypeJWTBearer+"&assertion="+a))
	g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// A fresh client: the refusal must not depend on connection reuse.
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err == nil {
		_ = resp.Body.Close()
	}
	g.Expect(errors.Is(err, syscall.ECONNREFUSED)).To(BeTrue(), "got %v", err)

	g.Expect(srv.Resume()).To(Succeed())
	g.Expect(srv.Resume()).To(Succeed(), "idempotent")
	g.Expect(srv.TokenEndpoint()).To(Equal(url), "same address")
	// StopListening closed the shared client's keep-alive connection. Whether
	// the client notices before reusing it is a race (a POST on a stale
	// connection fails with EOF, as after a real restart), so drop it.
	srv.Client().CloseIdleConnections()
	g.Expect(request(t, srv, cf, "form").Status).To(Equal(200))
}

func TestCloseIsIdempotent(t *testing.T) {
	srv, err := clearancetest.NewServer(clearancetest.WithSigningKey(testKey(t, 0)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	srv.Close()
	if err := srv.Resume(); !errors.Is(err, clearancetest.ErrServerClosed) {
		t.Fatalf("Resume after Close: %v", err)
	}
	if err := srv.StopListening(); !errors.Is(err, clearancetest.ErrServerClosed) {
		t.Fatalf("StopListening after Close: %v", err)
	}
}

func TestShutdownWaitsForRequests(t *testing.T) {
	srv, err := clearancetest.NewServer(clearancetest.WithSigningKey(testKey(t, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cf := newClient(t, srv, 1)
	if err := srv.InjectFault(clearancetest.FaultLatency(300 * time.Millisecond).Times(1)); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		a, _ := cf.SignAssertion(clearancetest.AssertionOptions{})
		body := "client_id=" + cf.ClientID() + "&grant_type=" + clearancetest.GrantTypeJWTBearer + "&assertion=" + a
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.TokenEndpoint(), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := srv.Client().Do(req)
		if err != nil {
			done <- -1
			return
		}
		_ = resp.Body.Close()
		done <- resp.StatusCode
	}()
	// Wait until the request is in flight (bounded).
	for i := 0; i < 200 && srv.Stats().Delayed == 0; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got != 200 {
		t.Fatalf("in-flight request: %d", got)
	}
}
