package clearance

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
)

// Encoding selects how the token request body is encoded.
type Encoding string

const (
	// EncodingForm sends application/x-www-form-urlencoded, as RFC 6749 §4.1.3
	// specifies and the vendor's curl sample does. It is the default.
	EncodingForm Encoding = "Form"
	// EncodingJSON sends the same three members as a JSON object, as the vendor's
	// Node.js and Python samples do.
	EncodingJSON Encoding = "JSON"
)

const (
	// DefaultAttemptTimeout bounds one HTTP attempt (connect, request, response
	// body) so that one hung STS address does not eat the whole reconcile before
	// failover gets a chance.
	DefaultAttemptTimeout = 10 * time.Second

	// DefaultMintTimeout bounds a whole mint, every attempt and failover
	// included: at most MaxSTSAddresses attempts fit, the last one shortened.
	DefaultMintTimeout = 30 * time.Second

	// maxResponseBody caps how much of a response body is read: token responses
	// are a few KiB and anything larger is not a token response.
	maxResponseBody = 1 << 20

	// maxRetryAfter clamps Retry-After so a silly value cannot park a refresher
	// for days (or overflow time.Duration).
	maxRetryAfter = 24 * time.Hour

	// connectionCacheSize bounds LoadConnectionFile's cache. An operator sees one
	// version per connection Secret, plus a few while Secrets rotate.
	connectionCacheSize = 64
)

// Client mints access tokens from the Clearance STS. It is safe for concurrent
// use; create one per process and share it.
type Client struct {
	httpClient     *http.Client
	clock          clock.PassiveClock
	attemptTimeout time.Duration
	mintTimeout    time.Duration
	// policy is checked on every address before a request; nil checks none
	// (the HTTP client alone decides).
	policy  *DestinationPolicy
	limiter *rate.Limiter
	cache   *connectionCache
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: NewHTTPClient with the zero
// EgressOptions, which dials public https addresses only). The client is
// copied with redirects disabled: the request carries a credential and must
// only ever reach the configured STS address; a redirect is reported as a
// TransientError.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.httpClient = hc
		}
	}
}

// WithClock sets the clock used for assertion timestamps, token expiry and
// Retry-After dates (default: the real clock). Tests pass a fake clock.
func WithClock(clk clock.PassiveClock) Option {
	return func(c *Client) {
		if clk != nil {
			c.clock = clk
		}
	}
}

// WithAttemptTimeout sets the timeout of each HTTP attempt (default
// DefaultAttemptTimeout). Non-positive values are ignored.
func WithAttemptTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.attemptTimeout = d
		}
	}
}

// WithEgress makes the Client enforce opts.Policy: every address is checked
// before a request (scheme, IP literals) and every connection when it is
// dialled (what a name resolved to), through an HTTP client built from opts.
// It replaces the HTTP client set by WithHTTPClient.
func WithEgress(opts EgressOptions) Option {
	return func(c *Client) {
		c.httpClient = NewHTTPClient(opts)
		c.policy = &opts.Policy
	}
}

// WithMintTimeout sets the deadline of a whole mint, all attempts together
// (default DefaultMintTimeout), so that no tenant's STS can hold a worker
// longer. Non-positive values are ignored.
func WithMintTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.mintTimeout = d
		}
	}
}

// WithRequestLimiter makes every HTTP attempt wait for a token of limiter
// first: all tenants share one egress identity at the STS, so their requests
// together are what the STS rate-limits. A wait that would pass the mint's
// deadline fails the attempt.
func WithRequestLimiter(limiter *rate.Limiter) Option {
	return func(c *Client) { c.limiter = limiter }
}

// NewClient returns a Client configured by opts.
func NewClient(opts ...Option) *Client {
	c := &Client{
		clock:          clock.RealClock{},
		attemptTimeout: DefaultAttemptTimeout,
		mintTimeout:    DefaultMintTimeout,
		cache:          newConnectionCache(connectionCacheSize),
	}
	for _, opt := range opts {
		opt(c)
	}
	if c.httpClient == nil {
		c.httpClient = NewHTTPClient(EgressOptions{})
	}
	hc := *c.httpClient
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.httpClient = &hc
	return c
}

// NewHTTPClient returns an HTTP client for the STS with the given egress
// options (see newTransport). Create one per process and share it, so that
// connections and TLS sessions are reused. Redirects are not followed.
func NewHTTPClient(opts EgressOptions) *http.Client {
	return &http.Client{
		Transport: newTransport(opts),
		// A backstop only: Mint bounds each attempt and the whole mint with
		// its own context deadlines.
		Timeout:       time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// LoadConnectionFile parses data like ParseConnectionFile, caching the result by
// SHA-256 of data, so that a JWK is decoded and its RSA key validated once per
// Secret version rather than on every reconcile. Errors are not cached. The
// returned value may be modified by the caller except for *PrivateKey, which is
// shared.
func (c *Client) LoadConnectionFile(data []byte) (*ConnectionFile, error) {
	if len(data) > MaxConnectionFileSize {
		return ParseConnectionFile(data) // reports the size error without hashing 1 MiB+
	}
	return c.cache.load(data)
}

// MintRequest describes one token request.
type MintRequest struct {
	// Connection is the parsed connection file (required).
	Connection *ConnectionFile
	// Audience is the optional "aud" claim of the assertion; omitted when empty.
	Audience string
	// Encoding of the request body; "" means EncodingForm.
	Encoding Encoding
}

// Token is an access token issued by the STS.
type Token struct {
	AccessToken string
	// TokenType is always "Bearer" (normalised).
	TokenType string
	// ExpiresAt is IssuedAt + expires_in, but never later than the access token's
	// own exp claim when it is a JWT.
	ExpiresAt time.Time
	// IssuedAt is the client clock's time when the response arrived.
	IssuedAt time.Time
	// Endpoint is the full token endpoint URL that issued the token, e.g.
	// "http://127.0.0.1:8090/connect/token".
	Endpoint string
	// KeyID is the kid of the key that signed the assertion.
	KeyID string
}

// String describes the token without the access token itself, so that logging a
// Token by accident does not leak it.
func (t *Token) String() string {
	if t == nil {
		return "Token(nil)"
	}
	return fmt.Sprintf("Token{Type: %s, AccessToken: [redacted, %d bytes], IssuedAt: %s, ExpiresAt: %s, Endpoint: %s, KeyID: %s}",
		t.TokenType, len(t.AccessToken), t.IssuedAt.Format(time.RFC3339), t.ExpiresAt.Format(time.RFC3339), t.Endpoint, t.KeyID)
}

// GoString is like String, for %#v.
func (t *Token) GoString() string { return t.String() }

// TokenEndpoint returns the token endpoint for an STS base address:
// "<base>/token" with trailing slashes of base trimmed.
func TokenEndpoint(base string) string {
	return strings.TrimRight(base, "/") + "/token"
}

// Mint performs one token request, with failover across the connection's
// STSBaseAddresses (in file order; ParseConnectionFile keeps at most
// MaxSTSAddresses) on transient errors, and a fresh assertion for every HTTP
// attempt so that no jti is ever reused. The whole mint ends within the
// client's mint timeout.
//
// It returns a *Token or one of *RejectedError, *RateLimitedError (both stop
// immediately: other addresses front the same service and would give the same
// answer), *DestinationError (the egress policy forbids an address; nothing
// was sent to it) or *TransientError (the last one when every address failed).
// Invalid arguments (nil Connection, unknown Encoding) are reported as plain
// errors.
func (c *Client) Mint(ctx context.Context, req MintRequest) (*Token, error) {
	conn := req.Connection
	if conn == nil || conn.PrivateKey == nil {
		return nil, errors.New("clearance: MintRequest.Connection with a private key is required")
	}
	enc := req.Encoding
	if enc == "" {
		enc = EncodingForm
	}
	if enc != EncodingForm && enc != EncodingJSON {
		return nil, fmt.Errorf("clearance: unsupported MintRequest.Encoding %q", string(enc))
	}
	if len(conn.STSBaseAddresses) == 0 {
		return nil, &ConnectionFileError{Field: memberSTSAddresses, Problem: "must contain at least one absolute http(s) URL"}
	}
	if c.policy != nil {
		for _, base := range conn.STSBaseAddresses {
			if err := c.policy.CheckEndpoint(TokenEndpoint(base)); err != nil {
				return nil, err
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.mintTimeout)
	defer cancel()

	var (
		last     *TransientError
		attempts []string
	)
	for _, base := range conn.STSBaseAddresses {
		endpoint := TokenEndpoint(base)
		if err := ctx.Err(); err != nil {
			last = c.endedError(ctx, endpoint)
			attempts = append(attempts, endpoint+": not attempted, "+last.Reason)
			break
		}
		tok, err := c.attempt(ctx, conn, endpoint, req.Audience, enc)
		if err == nil {
			return tok, nil
		}
		var te *TransientError
		if !errors.As(err, &te) {
			return nil, err
		}
		last = te
		summary := te.Reason
		if te.StatusCode != 0 {
			summary = "HTTP " + strconv.Itoa(te.StatusCode) + ": " + summary
		}
		attempts = append(attempts, endpoint+": "+summary)
		if te.kind == kindCanceled {
			break
		}
	}
	if len(attempts) > 1 {
		summary := *last
		if last.kind == kindCanceled {
			summary.Reason = "request canceled during failover: " + joinAttempts(attempts)
		} else {
			summary.Reason = fmt.Sprintf("all %d STS addresses failed: %s", len(attempts), joinAttempts(attempts))
		}
		return nil, &summary
	}
	return nil, last
}

// maxListedAttempts bounds how many attempts a failover summary lists.
const maxListedAttempts = 3

// joinAttempts lists the first maxListedAttempts attempts and counts the rest.
func joinAttempts(attempts []string) string {
	if len(attempts) <= maxListedAttempts {
		return strings.Join(attempts, "; ")
	}
	return strings.Join(attempts[:maxListedAttempts], "; ") + fmt.Sprintf("; ...and %d more", len(attempts)-maxListedAttempts)
}

// endedError reports a mint whose context ended before an attempt: the
// caller canceled, or the mint's own deadline passed.
func (c *Client) endedError(ctx context.Context, endpoint string) *TransientError {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &TransientError{Endpoint: endpoint, Reason: "timed out", Detail: "the mint's deadline of " + c.mintTimeout.String() + " passed", kind: kindTimeout, cause: context.DeadlineExceeded}
	}
	return &TransientError{Endpoint: endpoint, Reason: "request canceled", kind: kindCanceled, cause: ctx.Err()}
}

// attempt performs one HTTP exchange with endpoint.
func (c *Client) attempt(ctx context.Context, conn *ConnectionFile, endpoint, audience string, enc Encoding) (*Token, error) {
	actx, cancel := context.WithTimeout(ctx, c.attemptTimeout)
	defer cancel()
	if c.limiter != nil {
		if err := c.limiter.Wait(actx); err != nil {
			te := &TransientError{Endpoint: endpoint, Reason: "timed out", Detail: "waiting for the operator's token-request rate limit", kind: kindTimeout, cause: context.DeadlineExceeded}
			if ctx.Err() != nil {
				te = c.endedError(ctx, endpoint)
			}
			return nil, te
		}
	}
	assertion, err := newAssertion(conn, audience, c.clock.Now())
	if err != nil {
		return nil, fmt.Errorf("clearance: %w", err)
	}
	body, contentType, err := encodeTokenRequest(conn.ClientID(), assertion, enc)
	if err != nil {
		return nil, fmt.Errorf("clearance: encoding the token request: %w", err)
	}

	httpReq, err := http.NewRequestWithContext(actx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, &TransientError{Endpoint: endpoint, Reason: "invalid token endpoint URL", kind: kindNetwork}
	}
	httpReq.Header.Set("Content-Type", contentType)
	httpReq.Header.Set("Accept", "application/json")

	resp, err := c.httpClient.Do(httpReq)
	if err != nil {
		var blocked *dialBlockedError
		if errors.As(err, &blocked) {
			return nil, &DestinationError{Endpoint: endpoint, Problem: blocked.problem}
		}
		return nil, c.networkError(ctx, actx, endpoint, err, assertion)
	}
	defer func() { _ = resp.Body.Close() }()
	received := c.clock.Now()

	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		te := c.networkError(ctx, actx, endpoint, err, assertion)
		te.StatusCode = resp.StatusCode
		te.Detail = "reading the response: " + te.Detail
		return nil, te
	}
	tooLarge := len(data) > maxResponseBody
	return interpretResponse(endpoint, resp.StatusCode, resp.Header, data, tooLarge, received, conn.KeyID, assertion)
}

// encodeTokenRequest builds the RFC 7523 §2.1 request body.
func encodeTokenRequest(clientID, assertion string, enc Encoding) ([]byte, string, error) {
	if enc == EncodingJSON {
		b, err := json.Marshal(struct {
			ClientID  string `json:"client_id"`
			GrantType string `json:"grant_type"`
			Assertion string `json:"assertion"`
		}{clientID, GrantTypeJWTBearer, assertion})
		return b, "application/json", err
	}
	form := url.Values{
		"client_id":  {clientID},
		"grant_type": {GrantTypeJWTBearer},
		"assertion":  {assertion},
	}
	return []byte(form.Encode()), "application/x-www-form-urlencoded", nil
}

// networkError classifies a failed exchange without a (complete) response.
// Reason is the class a tenant's status may show (unreachable, timed out, TLS
// failure): whether a port is closed, which certificate a host presents or
// what it answered would make the operator a network scanner for anyone who
// may write a connection file. Detail says more, for the manager's log.
func (c *Client) networkError(parent, attemptCtx context.Context, endpoint string, err error, assertion string) *TransientError {
	switch {
	case parent.Err() != nil:
		return c.endedError(parent, endpoint)
	case errors.Is(attemptCtx.Err(), context.DeadlineExceeded):
		return &TransientError{Endpoint: endpoint, Reason: "timed out", Detail: "no response within " + c.attemptTimeout.String(), kind: kindTimeout, cause: context.DeadlineExceeded}
	}
	te := &TransientError{Endpoint: endpoint, Reason: "unreachable", kind: kindNetwork, cause: err}
	var (
		dnsErr  *net.DNSError
		netErr  net.Error
		certErr *tls.CertificateVerificationError
		recErr  tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &dnsErr):
		te.Detail = "DNS lookup failed"
		if dnsErr.IsNotFound {
			te.Detail += ": no such host"
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		te.Detail = "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		te.Detail = "connection closed by the server"
	case errors.As(err, &certErr):
		te.Reason = "TLS failure"
		te.Detail = "certificate verification failed: " + sanitizeText(certErr.Err.Error(), maxDescriptionLen, assertion)
	case errors.As(err, &recErr):
		te.Reason = "TLS failure"
		te.Detail = "the server did not speak TLS"
	case errors.As(err, &netErr) && netErr.Timeout():
		te.kind = kindTimeout
		te.Reason = "timed out"
		te.Detail = "network timeout"
	default:
		// Fall back to the innermost message (without the URL wrapper). net/http
		// quotes bytes the server sent in some messages ("malformed HTTP response
		// \"...\""): keep only the part before the first quote, sanitised.
		msg := err.Error()
		var urlErr *url.Error
		if errors.As(err, &urlErr) && urlErr.Err != nil {
			msg = urlErr.Err.Error()
		}
		if i := strings.IndexAny(msg, "\"`"); i >= 0 {
			msg = msg[:i]
		}
		te.Detail = "connection failed: " + sanitizeText(msg, maxDescriptionLen, assertion)
		// Do not expose an unclassified error through Unwrap either: its text is
		// not known to be safe.
		te.cause = nil
	}
	return te
}

// oauthError is the RFC 6749 §5.2 error response.
type oauthError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// transientCodes are codes some servers return from the token endpoint although
// RFC 6749 only defines them for the authorization endpoint (§4.1.2.1); they say
// "try again later".
var transientCodes = map[string]bool{
	"server_error":            true,
	"temporarily_unavailable": true,
}

// interpretResponse maps an HTTP response to a Token or a typed error.
//
// Status classification (where the requirements were open):
//   - 2xx: parsed as a token response; an unusable body is transient (it is what
//     a captive proxy or a misrouted load balancer returns).
//   - 429: rate limited, with Retry-After.
//   - 400, 401, 403: rejected. With the RFC 6749 §5.2 codes (invalid_request,
//     invalid_client, invalid_grant, unauthorized_client, unsupported_grant_type,
//     invalid_scope) that is the RFC's meaning; without a code or with an unknown
//     one (Code is then "" or that code) it is still the STS (or its WAF)
//     refusing this client, and retrying the same request elsewhere or later
//     does not help. The exception is an explicit server_error /
//     temporarily_unavailable code, which is transient.
//   - other 4xx (404, 405, 408, 409, 413, ...): transient. They describe the
//     address or a momentary condition rather than the credentials, so the next
//     address may well work.
//   - 5xx, 1xx and 3xx (redirects are never followed): transient.
func interpretResponse(endpoint string, status int, header http.Header, body []byte, tooLarge bool, received time.Time, keyID, assertion string) (*Token, error) {
	switch {
	case status >= 200 && status < 300:
		invalid := func(reason string) error {
			return &TransientError{Endpoint: endpoint, StatusCode: status, Reason: reason, kind: kindInvalidResponse}
		}
		if tooLarge {
			return nil, invalid("invalid token response: body larger than 1 MiB")
		}
		tr, err := parseTokenResponse(body)
		if err != nil {
			return nil, invalid("invalid token response: " + err.Error())
		}
		expiresAt, err := tr.expiresAt(received)
		if errors.Is(err, errTokenAlreadyExpired) {
			return nil, &TransientError{Endpoint: endpoint, StatusCode: status, Reason: "invalid token response: " + err.Error(), kind: kindExpiredToken}
		}
		if err != nil {
			return nil, invalid("invalid token response: " + err.Error())
		}
		return &Token{
			AccessToken: tr.AccessToken,
			TokenType:   tr.TokenType,
			ExpiresAt:   expiresAt,
			IssuedAt:    received,
			Endpoint:    endpoint,
			KeyID:       keyID,
		}, nil

	case status == http.StatusTooManyRequests:
		return nil, &RateLimitedError{Endpoint: endpoint, RetryAfter: parseRetryAfter(header.Get("Retry-After"), received)}

	case status == http.StatusBadRequest || status == http.StatusUnauthorized || status == http.StatusForbidden:
		code, desc := parseOAuthError(body, tooLarge, assertion)
		if transientCodes[code] {
			return nil, &TransientError{Endpoint: endpoint, StatusCode: status, Reason: "STS reported " + code, kind: kindStatus}
		}
		return nil, &RejectedError{Endpoint: endpoint, StatusCode: status, Code: code, Description: desc}

	default:
		reason := "unexpected HTTP status " + strconv.Itoa(status)
		switch {
		case status >= 500:
			reason = "STS server error"
		case status == http.StatusNotFound || status == http.StatusMethodNotAllowed:
			reason = "token endpoint not found at this address"
		case status >= 300 && status < 400:
			reason = "unexpected redirect (redirects are not followed)"
		}
		if code, _ := parseOAuthError(body, tooLarge, assertion); code != "" {
			reason += " (" + code + ")"
		}
		return nil, &TransientError{Endpoint: endpoint, StatusCode: status, Reason: reason, kind: kindStatus}
	}
}

// parseOAuthError extracts the RFC 6749 error code and a sanitised, capped
// description from an error body. Anything that is not such a JSON object
// yields empty strings: the raw body is never used.
func parseOAuthError(body []byte, tooLarge bool, assertion string) (code, description string) {
	if tooLarge {
		return "", ""
	}
	var oe oauthError
	if err := json.Unmarshal(bytes.TrimPrefix(body, utf8BOM), &oe); err != nil {
		return "", ""
	}
	code = sanitizeErrorCode(oe.Error)
	if code == "" {
		return "", ""
	}
	return code, sanitizeText(oe.ErrorDescription, maxDescriptionLen, assertion)
}

// parseRetryAfter parses an RFC 9110 §10.2.3 Retry-After value (delta-seconds or
// HTTP-date) relative to now. Missing or invalid values yield 0 (the caller's
// own backoff applies); the result is clamped to [0, maxRetryAfter].
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			var numErr *strconv.NumError
			if errors.As(err, &numErr) && errors.Is(numErr.Err, strconv.ErrRange) {
				return maxRetryAfter
			}
			return 0
		}
		if secs > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	switch {
	case d < 0:
		return 0
	case d > maxRetryAfter:
		return maxRetryAfter
	}
	return d
}
