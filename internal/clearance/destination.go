package clearance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// DestinationPolicy decides which STS addresses a Client may send a token
// request to. The addresses come from a tenant's connection file, so without
// a policy the operator would dial anything a tenant names, on the tenant's
// behalf: loopback services, the cloud metadata address, cluster-internal
// endpoints. The zero value allows only https to public unicast addresses.
type DestinationPolicy struct {
	// AllowHTTP accepts plain http:// addresses (the assertion and the token
	// then travel in clear text): for tests, local runs and emulators.
	AllowHTTP bool
	// AllowedPrefixes are address ranges that may be dialled although they
	// are not public (loopback, private, link-local, ...).
	AllowedPrefixes []netip.Prefix
}

// DestinationError means the policy forbids an STS address. No packet was
// sent to it. The message names the address's class, never the address a
// DNS name resolved to.
type DestinationError struct {
	Endpoint string
	// Problem is what the policy objects to, e.g. "http:// is not allowed".
	Problem string
}

// Error implements error.
func (e *DestinationError) Error() string {
	return "STS address " + e.Endpoint + " is not allowed: " + e.Problem
}

// notPublic are IPv4 and IPv6 ranges that are neither covered by the netip
// predicates used in classify nor reachable public unicast space.
var notPublic = []struct {
	prefix netip.Prefix
	class  string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "a reserved"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a shared (carrier-grade NAT)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "a reserved"},
	{netip.MustParsePrefix("192.0.2.0/24"), "a documentation"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "a documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "a documentation"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved"},
	{netip.MustParsePrefix("64:ff9b::/96"), "a NAT64"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a NAT64"},
	{netip.MustParsePrefix("2001:db8::/32"), "a documentation"},
	{netip.MustParsePrefix("2002::/16"), "a 6to4"},
}

// classify returns "" for a public unicast address, else its class ("a
// loopback", "a private", ...), for messages.
func classify(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case ip.IsLoopback():
		return "a loopback"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "a link-local"
	case ip.IsPrivate():
		return "a private"
	case ip.IsUnspecified():
		return "an unspecified"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return "a multicast"
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "a broadcast"
	}
	for _, np := range notPublic {
		if np.prefix.Contains(ip) {
			return np.class
		}
	}
	return ""
}

// checkIP reports whether ip may be dialled: "" when allowed, else the problem.
func (p *DestinationPolicy) checkIP(ip netip.Addr) string {
	ip = ip.Unmap()
	for _, pfx := range p.AllowedPrefixes {
		if pfx.Contains(ip) {
			return ""
		}
	}
	if class := classify(ip); class != "" {
		return "it is " + class + " address (the operator's --sts-allow-cidrs can allow it)"
	}
	return ""
}

// CheckEndpoint checks what can be checked of an address without a network
// round trip: the scheme, and the address itself when the host is an IP
// literal. Host names are checked on every address they resolve to, when
// dialled.
func (p *DestinationPolicy) CheckEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return &DestinationError{Endpoint: endpoint, Problem: "not a valid URL"}
	}
	switch {
	case u.Scheme == "http" && !p.AllowHTTP:
		return &DestinationError{Endpoint: endpoint, Problem: "http:// would send the assertion and the token in clear text; use https (the operator's --sts-allow-http allows http)"}
	case u.Scheme != "http" && u.Scheme != "https":
		return &DestinationError{Endpoint: endpoint, Problem: "only https URLs are accepted"}
	}
	if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil {
		if problem := p.checkIP(ip); problem != "" {
			return &DestinationError{Endpoint: endpoint, Problem: problem}
		}
	}
	return nil
}

// control is a net.Dialer Control function: it runs after name resolution,
// with the address about to be connected, so a DNS name that resolves (or
// re-resolves) to a forbidden address is caught before any packet is sent.
func (p *DestinationPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &DestinationError{Endpoint: address, Problem: "not an IP address"}
	}
	if problem := p.checkIP(ap.Addr()); problem != "" {
		return &dialBlockedError{problem: strings.Replace(problem, "it is", "it resolves to", 1), address: address}
	}
	return nil
}

// dialBlockedError carries a refused dial out of net/http; the client turns
// it into a DestinationError naming the endpoint, and only the manager's log
// sees the address.
type dialBlockedError struct {
	problem string
	address string
}

func (e *dialBlockedError) Error() string { return "dial to a forbidden address: " + e.problem }

// EgressOptions configure how a Client reaches the STS (see WithEgress).
type EgressOptions struct {
	// Policy is enforced on every connection, except to a proxy from the
	// standard environment variables (HTTPS_PROXY, HTTP_PROXY, NO_PROXY),
	// which the operator's administrator chose; a request through a proxy
	// has its target checked before it is handed to the proxy.
	Policy DestinationPolicy
	// RootCAs, when set, replaces the system roots for STS certificates (a
	// private STS). Nil uses the system roots.
	RootCAs *x509.CertPool
}

// newTransport builds the STS transport for opts: TLS 1.2+ with verification,
// proxies from the environment, the policy on every dial, bounded handshake
// and header timeouts, and enough idle connections per host to reuse TLS
// sessions across reconciles.
func newTransport(opts EgressOptions) *http.Transport {
	policy := opts.Policy
	proxyFunc := httpproxy.FromEnvironment().ProxyFunc()
	proxies := map[string]bool{}
	for _, v := range []string{httpproxy.FromEnvironment().HTTPSProxy, httpproxy.FromEnvironment().HTTPProxy} {
		if u, err := url.Parse(v); err == nil && u.Host != "" {
			proxies[canonicalHostPort(u)] = true
		}
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: policy.control}
	direct := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy: func(req *http.Request) (*url.URL, error) {
			proxy, err := proxyFunc(req.URL)
			if err != nil || proxy == nil {
				return proxy, err
			}
			// The proxy resolves the name, so check what it resolves to here.
			if err := policy.checkHostResolved(req.Context(), req.URL); err != nil {
				return nil, err
			}
			return proxy, nil
		},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if proxies[addr] {
				return direct.DialContext(ctx, network, addr)
			}
			return dialer.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 15 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: opts.RootCAs},
	}
	return t
}

// checkHostResolved resolves u's host and applies the policy to every
// address, for requests a proxy will connect on our behalf. The proxy is the
// administrator's choice, and where it sends requests its own policy; this
// keeps a tenant from using it to reach what the operator may not dial.
func (p *DestinationPolicy) checkHostResolved(ctx context.Context, u *url.URL) error {
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if problem := p.checkIP(ip); problem != "" {
			return &dialBlockedError{problem: problem, address: host}
		}
		return nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		// Behind a proxy, often only the proxy can resolve names: what
		// cannot be resolved here cannot be checked here either.
		return nil
	}
	for _, ip := range addrs {
		if problem := p.checkIP(ip); problem != "" {
			return &dialBlockedError{problem: strings.Replace(problem, "it is", "it resolves to", 1), address: ip.String()}
		}
	}
	return nil
}

// canonicalHostPort is u's host:port with the scheme's default port filled in.
func canonicalHostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// ParseCIDRs parses a comma-separated list of CIDRs (as --sts-allow-cidrs
// takes it); blanks are skipped.
func ParseCIDRs(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("invalid CIDR %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
