package testutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"
)

// APIProxy is a loopback reverse proxy in front of a kube-apiserver, for
// tests that need faults on the path between a manager and the apiserver. It
// serves plain HTTP without authentication on 127.0.0.1 and forwards every
// request with the credentials of the rest.Config it was started with, so a
// manager pointed at it (see Config) acts as that user. Watches stream
// through. FailRequests makes matching requests fail with 503 before they
// reach the apiserver.
type APIProxy struct {
	srv    *http.Server
	ln     net.Listener
	url    string
	proxy  *httputil.ReverseProxy
	done   chan struct{}
	failed atomic.Int64

	mu    sync.Mutex
	match func(*http.Request) bool
}

// StartAPIProxy starts a proxy to the apiserver described by cfg.
func StartAPIProxy(cfg *rest.Config) (*APIProxy, error) {
	target, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("apiserver URL: %w", err)
	}
	if target.Scheme == "" {
		target.Scheme = "https"
	}
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("apiserver transport: %w", err)
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &APIProxy{ln: ln, url: "http://" + ln.Addr().String(), done: make(chan struct{})}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = target.Host
		},
		Transport:     transport,
		FlushInterval: -1, // watch events are forwarded as they arrive
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeStatus(w, http.StatusBadGateway, "test proxy: "+err.Error())
		},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return p, nil
}

// ServeHTTP fails matching requests and forwards the rest.
func (p *APIProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	match := p.match
	p.mu.Unlock()
	if match != nil && match(r) {
		p.failed.Add(1)
		writeStatus(w, http.StatusServiceUnavailable, "injected by the test proxy")
		return
	}
	p.proxy.ServeHTTP(w, r)
}

// writeStatus answers like the apiserver does: a metav1.Status object. No
// Retry-After header, so client-go reports the error instead of retrying.
func writeStatus(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":%q,"reason":"ServiceUnavailable","code":%d}`, msg, code)
}

// URL is the proxy's base URL, e.g. "http://127.0.0.1:41234".
func (p *APIProxy) URL() string { return p.url }

// Config returns a rest.Config that reaches the apiserver through the proxy
// (no credentials of its own: the proxy adds them). Use it with
// WriteKubeconfig to point a manager process at the proxy.
func (p *APIProxy) Config() *rest.Config { return &rest.Config{Host: p.url} }

// FailRequests makes every request for which match returns true fail with
// 503 Service Unavailable; nil forwards everything again.
func (p *APIProxy) FailRequests(match func(*http.Request) bool) {
	p.mu.Lock()
	p.match = match
	p.mu.Unlock()
}

// Failed counts the requests failed so far.
func (p *APIProxy) Failed() int64 { return p.failed.Load() }

// Close stops the proxy, closing every connection (watches included).
func (p *APIProxy) Close() error {
	err := p.srv.Close()
	<-p.done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
