package clearancetest

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Outcomes of token requests, as counted in Stats and recorded in Request.
// Rejections are counted under their RFC 6749 error code.
const (
	OutcomeSuccess = "success"
	// OutcomeFault counts requests whose response an injected fault replaced,
	// dropped or mutated.
	OutcomeFault = "fault"

	ErrInvalidRequest       = "invalid_request"
	ErrInvalidClient        = "invalid_client"
	ErrInvalidGrant         = "invalid_grant"
	ErrUnsupportedGrantType = "unsupported_grant_type"

	// UnknownClient is the Stats.Clients key for requests whose client_id is
	// missing or not trusted; only trusted ids get their own key, which keeps
	// the counters bounded whatever clients send.
	UnknownClient = "(unknown)"
)

// Stats is a snapshot of the emulator's request counters.
type Stats struct {
	// TokenRequests counts requests to the token endpoint.
	TokenRequests int64 `json:"token_requests"`
	// Outcomes counts token requests by outcome: OutcomeSuccess, an error
	// code such as ErrInvalidGrant, or OutcomeFault.
	Outcomes map[string]int64 `json:"outcomes"`
	// Clients counts token requests by client_id, then by outcome.
	Clients map[string]map[string]int64 `json:"clients"`
	// Delayed counts token requests that got injected latency.
	Delayed int64 `json:"delayed"`
	// DiscoveryRequests and JWKSRequests count the metadata endpoints.
	DiscoveryRequests int64 `json:"discovery_requests"`
	JWKSRequests      int64 `json:"jwks_requests"`
}

// Outcome returns the number of token requests with the given outcome.
func (st Stats) Outcome(outcome string) int64 { return st.Outcomes[outcome] }

// Client returns the number of token requests by clientID with the given outcome.
func (st Stats) Client(clientID, outcome string) int64 { return st.Clients[clientID][outcome] }

type statsCollector struct {
	discovery atomic.Int64
	jwks      atomic.Int64
	delayed   atomic.Int64

	mu       sync.Mutex
	total    int64
	outcomes map[string]int64
	clients  map[string]map[string]int64
}

func (c *statsCollector) init() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total = 0
	c.outcomes = make(map[string]int64)
	c.clients = make(map[string]map[string]int64)
	c.discovery.Store(0)
	c.jwks.Store(0)
	c.delayed.Store(0)
}

func (c *statsCollector) count(clientKey, outcome string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total++
	c.outcomes[outcome]++
	m := c.clients[clientKey]
	if m == nil {
		m = make(map[string]int64, 2)
		c.clients[clientKey] = m
	}
	m[outcome]++
}

func (c *statsCollector) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Stats{
		TokenRequests:     c.total,
		Outcomes:          maps.Clone(c.outcomes),
		Clients:           make(map[string]map[string]int64, len(c.clients)),
		Delayed:           c.delayed.Load(),
		DiscoveryRequests: c.discovery.Load(),
		JWKSRequests:      c.jwks.Load(),
	}
	for k, v := range c.clients {
		st.Clients[k] = maps.Clone(v)
	}
	return st
}

// Stats returns a snapshot of the request counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// ResetStats zeroes the counters and forgets the request history.
func (s *Server) ResetStats() {
	s.stats.init()
	s.history.reset()
}

// Request describes one token request as the emulator decoded it. Claims come
// from the assertion even when it was rejected (so tests can see what a client
// sent); the assertion itself and its signature are never kept.
type Request struct {
	// Time is the emulator's clock (including offset) when the request arrived.
	Time time.Time `json:"time"`
	// Encoding is "form" or "json" ("" when the body could not be decoded).
	Encoding  string `json:"encoding"`
	ClientID  string `json:"client_id,omitempty"`
	GrantType string `json:"grant_type,omitempty"`
	// Algorithm and KeyID are the assertion's "alg" and "kid" headers.
	Algorithm string `json:"alg,omitempty"`
	KeyID     string `json:"kid,omitempty"`
	Issuer    string `json:"iss,omitempty"`
	Subject   string `json:"sub,omitempty"`
	// Audience is the "aud" claim; a single string becomes one element.
	Audience []string `json:"aud,omitempty"`
	JTI      string   `json:"jti,omitempty"`
	// IssuedAt, NotBefore and Expiry keep sub-second precision (the vendor's
	// Node sample sends fractional NumericDates); nil when absent or invalid.
	IssuedAt  *time.Time `json:"iat,omitempty"`
	NotBefore *time.Time `json:"nbf,omitempty"`
	Expiry    *time.Time `json:"exp,omitempty"`
	// Status is the HTTP status sent (0 when the connection was dropped).
	Status int `json:"status"`
	// Outcome is OutcomeSuccess, an error code, or OutcomeFault.
	Outcome string `json:"outcome"`
	// Description is the error_description sent, if any.
	Description string `json:"error_description,omitempty"`
	// Fault and Latency describe an injected fault that applied, if any.
	Fault   bool          `json:"fault,omitempty"`
	Latency time.Duration `json:"latency,omitempty"`
}

// requestHistory is a ring buffer of the most recent requests.
type requestHistory struct {
	mu   sync.Mutex
	buf  []Request
	next int
	full bool
}

func (h *requestHistory) init(n int) { h.buf = make([]Request, n) }

func (h *requestHistory) add(r Request) {
	if len(h.buf) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf[h.next] = r
	h.next++
	if h.next == len(h.buf) {
		h.next, h.full = 0, true
	}
}

func (h *requestHistory) snapshot() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.full {
		return append([]Request(nil), h.buf[:h.next]...)
	}
	out := make([]Request, 0, len(h.buf))
	out = append(out, h.buf[h.next:]...)
	return append(out, h.buf[:h.next]...)
}

func (h *requestHistory) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.buf)
	h.next, h.full = 0, false
}

// Requests returns the most recent token requests, oldest first (at most the
// WithRequestHistory size).
func (s *Server) Requests() []Request { return s.history.snapshot() }
