package clearancetest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"k8s.io/utils/clock"
)

// Protocol constants of the emulated service.
const (
	// GrantTypeJWTBearer is the only grant type the STS accepts (RFC 7523 §2.1).
	GrantTypeJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// BasePath is the path of the STS base address; connection files list
	// "<server root>/connect" as SecurityTokenServiceBaseAddresses.
	BasePath = "/connect"
	// TokenPath is the token endpoint path (matched case-insensitively).
	TokenPath = BasePath + "/token"
	// DiscoveryPath is the OpenID discovery document path.
	DiscoveryPath = BasePath + "/.well-known/openid-configuration"
	// JWKSPath is the path of the key set that verifies issued access tokens.
	JWKSPath = DiscoveryPath + "/jwks"
	// AdminPath prefixes the loopback-only admin endpoints.
	AdminPath = "/_emulator"
	// MaxRequestBodyBytes bounds a token request body. A JWT-bearer request is a
	// few KiB at most; the bound keeps a misbehaving client from making the
	// emulator buffer arbitrary amounts of memory.
	MaxRequestBodyBytes = 64 << 10
)

// Defaults used when the corresponding option is not given.
const (
	DefaultTenant               = "tenant123"
	DefaultServiceName          = "EmulatorClient"
	DefaultTokenTTL             = time.Hour
	DefaultMaxAssertionLifetime = time.Hour
	DefaultClockSkew            = 30 * time.Second
	// DefaultAccessTokenAudience is the "aud" of issued access tokens: the
	// only access token in the vendor's documentation carries "client".
	DefaultAccessTokenAudience = "client"
	DefaultScope               = "clearance"
	DefaultReplayCacheSize     = 100_000
	DefaultRequestHistory      = 1_000
	// firstServicePrincipalID mirrors the vendor's sample connection file
	// ("ServicePrincipalId": "151") so generated files look familiar.
	firstServicePrincipalID = 151
	// maxFaultLatency bounds injected latency (and admin stop-listening
	// durations) so a typo cannot hang a test run for hours.
	maxFaultLatency = 10 * time.Minute
)

// ErrServerClosed is returned by operations on a closed Server.
var ErrServerClosed = errors.New("clearancetest: server closed")

// Option configures a Server.
type Option func(*config)

type config struct {
	address             string
	useTLS              bool
	clk                 clock.PassiveClock
	clockOffset         time.Duration
	tokenTTL            time.Duration
	maxLifetime         time.Duration
	skew                time.Duration
	requireAudience     bool
	audiences           []string
	tenant              string
	serviceName         string
	signingKey          *rsa.PrivateKey
	accessAudience      string
	scope               string
	replaySize          int
	historySize         int
	hook                func(Request)
	admin               bool
	invalidClientStatus int
	logger              *slog.Logger
}

// WithAddress sets the listen address (default "127.0.0.1:0", a random port).
// The host must be a loopback address or "localhost".
func WithAddress(addr string) Option { return func(c *config) { c.address = addr } }

// WithTLS serves HTTPS with a freshly generated self-signed certificate for
// 127.0.0.1, ::1 and localhost. See Server.CACertPEM and Server.Client.
func WithTLS() Option { return func(c *config) { c.useTLS = true } }

// WithClock sets the clock the emulator checks assertions against and stamps
// tokens with (default: the real clock). Any clock.Clock satisfies
// clock.PassiveClock; a fake clock lets tests move time without sleeping.
// Injected latency always uses real time, because clients time out in real time.
func WithClock(clk clock.PassiveClock) Option { return func(c *config) { c.clk = clk } }

// WithClockOffset makes the emulator's clock run ahead (positive) or behind
// (negative) the configured clock, to test clock skew. See SetClockOffset.
func WithClockOffset(d time.Duration) Option { return func(c *config) { c.clockOffset = d } }

// WithTokenTTL sets the lifetime of issued access tokens (default 1h).
func WithTokenTTL(d time.Duration) Option { return func(c *config) { c.tokenTTL = d } }

// WithMaxAssertionLifetime sets how far exp may lie after iat (or nbf) in an
// assertion (default 1h, which the vendor samples use exactly).
func WithMaxAssertionLifetime(d time.Duration) Option {
	return func(c *config) { c.maxLifetime = d }
}

// WithClockSkew sets the allowance for clock differences when checking exp,
// nbf and iat (default 30s).
func WithClockSkew(d time.Duration) Option { return func(c *config) { c.skew = d } }

// WithRequiredAudience makes an "aud" claim mandatory. The assertion must name
// one of the given audiences; with none given, the token endpoint URL or the
// base address (the issuer) are accepted, as RFC 7523 §3 suggests.
func WithRequiredAudience(audiences ...string) Option {
	return func(c *config) {
		c.requireAudience = true
		c.audiences = append([]string(nil), audiences...)
	}
}

// WithTenant sets the TenantId of generated connection files (default "tenant123").
func WithTenant(tenant string) Option { return func(c *config) { c.tenant = tenant } }

// WithServiceName sets the service account name used in generated key ids
// ("urn:service:<tenant>:<name>:<id>").
func WithServiceName(name string) Option { return func(c *config) { c.serviceName = name } }

// WithSigningKey sets the key that signs access tokens, skipping a key
// generation (RSA-2048 generation takes tens to hundreds of milliseconds).
func WithSigningKey(key *rsa.PrivateKey) Option { return func(c *config) { c.signingKey = key } }

// WithAccessTokenAudience sets the "aud" claim of issued access tokens.
func WithAccessTokenAudience(aud string) Option { return func(c *config) { c.accessAudience = aud } }

// WithScope sets the "scope" member of token responses and the claim in tokens.
func WithScope(scope string) Option { return func(c *config) { c.scope = scope } }

// WithReplayCacheSize bounds the number of remembered jti values (default
// 100,000). When full, the entry closest to expiry is forgotten first.
func WithReplayCacheSize(n int) Option { return func(c *config) { c.replaySize = n } }

// WithRequestHistory sets how many recent token requests Requests returns
// (default 1,000; 0 keeps none).
func WithRequestHistory(n int) Option { return func(c *config) { c.historySize = n } }

// WithRequestHook registers a function called synchronously for every token
// request, before the response is written, so that a test observing the
// response also observes the record. It must not block.
func WithRequestHook(hook func(Request)) Option { return func(c *config) { c.hook = hook } }

// WithoutAdmin disables the HTTP admin endpoints under /_emulator/.
func WithoutAdmin() Option { return func(c *config) { c.admin = false } }

// WithInvalidClientStatus sets the HTTP status of invalid_client errors:
// 400 (default, what IdentityServer-style services send) or 401 (which RFC 6749
// §5.2 permits), so clients can be tested against both.
func WithInvalidClientStatus(status int) Option {
	return func(c *config) { c.invalidClientStatus = status }
}

// WithLogger logs one line per request (client id, outcome, status, latency)
// and server errors. Secrets (assertions, tokens, keys) are never logged.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Server is a running STS emulator. All methods are safe for concurrent use.
type Server struct {
	cfg     config
	root    string // scheme://host:port, fixed for the server's lifetime
	addr    string // actual host:port, reused by Resume
	base    string // root + BasePath
	tokenEP string // root + TokenPath

	clockOffset atomic.Int64
	tokenTTL    atomic.Int64
	maxLifetime atomic.Int64

	signKey       *rsa.PrivateKey
	signKID       string
	jwksJSON      []byte
	discoveryJSON []byte

	tlsConfig *tls.Config
	caPEM     []byte
	caPool    *x509.CertPool

	clientsMu sync.RWMutex
	clients   map[string]*trustedClient
	nextID    int

	faults  faultSet
	stats   statsCollector
	history requestHistory
	replay  *replayCache

	lmu         sync.Mutex // guards the fields below
	httpSrv     *http.Server
	closed      bool
	resumeTimer *time.Timer
	serveWG     sync.WaitGroup
	done        chan struct{}

	clientOnce sync.Once
	client     *http.Client
}

type trustedClient struct {
	pub     *rsa.PublicKey
	kid     string
	revoked bool
}

// NewServer starts an emulator listening on a loopback address. Call Close
// (or Shutdown) when done.
func NewServer(opts ...Option) (*Server, error) {
	cfg := config{
		address:             "127.0.0.1:0",
		tokenTTL:            DefaultTokenTTL,
		maxLifetime:         DefaultMaxAssertionLifetime,
		skew:                DefaultClockSkew,
		tenant:              DefaultTenant,
		serviceName:         DefaultServiceName,
		accessAudience:      DefaultAccessTokenAudience,
		scope:               DefaultScope,
		replaySize:          DefaultReplayCacheSize,
		historySize:         DefaultRequestHistory,
		admin:               true,
		invalidClientStatus: http.StatusBadRequest,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.clk == nil {
		cfg.clk = clock.RealClock{}
	}

	s := &Server{
		cfg:     cfg,
		clients: make(map[string]*trustedClient),
		nextID:  firstServicePrincipalID,
		replay:  newReplayCache(cfg.replaySize),
		done:    make(chan struct{}),
	}
	s.clockOffset.Store(int64(cfg.clockOffset))
	s.tokenTTL.Store(int64(cfg.tokenTTL))
	s.maxLifetime.Store(int64(cfg.maxLifetime))
	s.history.init(cfg.historySize)
	s.stats.init()

	if err := s.initSigningKey(); err != nil {
		return nil, err
	}
	scheme := "http"
	if cfg.useTLS {
		if err := s.initTLS(); err != nil {
			return nil, err
		}
		scheme = "https"
	}

	ln, err := s.listenOn(cfg.address)
	if err != nil {
		return nil, err
	}
	s.addr = ln.Addr().String()
	s.root = scheme + "://" + s.addr
	s.base = s.root + BasePath
	s.tokenEP = s.root + TokenPath
	if err := s.initDiscovery(); err != nil {
		_ = ln.Close()
		return nil, err
	}
	s.lmu.Lock()
	s.serve(ln)
	s.lmu.Unlock()
	return s, nil
}

// NewTestServer is NewServer for tests: it fails tb on error and closes the
// server when the test ends.
func NewTestServer(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s, err := NewServer(opts...)
	if err != nil {
		tb.Fatalf("clearancetest: starting emulator: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

func (c *config) validate() error {
	host, _, err := net.SplitHostPort(c.address)
	if err != nil {
		return fmt.Errorf("clearancetest: listen address %q: %w", c.address, err)
	}
	if !isLoopbackHost(host) {
		return fmt.Errorf("clearancetest: listen address %q is not a loopback address", c.address)
	}
	switch {
	case c.tokenTTL <= 0:
		return errors.New("clearancetest: token TTL must be positive")
	case c.maxLifetime <= 0:
		return errors.New("clearancetest: max assertion lifetime must be positive")
	case c.skew < 0:
		return errors.New("clearancetest: clock skew must not be negative")
	case c.tenant == "" || strings.Contains(c.tenant, "@"):
		return errors.New("clearancetest: tenant must be non-empty and must not contain '@'")
	case c.replaySize < 1:
		return errors.New("clearancetest: replay cache size must be at least 1")
	case c.historySize < 0:
		return errors.New("clearancetest: request history must not be negative")
	case c.invalidClientStatus != http.StatusBadRequest && c.invalidClientStatus != http.StatusUnauthorized:
		return errors.New("clearancetest: invalid_client status must be 400 or 401")
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) initSigningKey() error {
	key := s.cfg.signingKey
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return fmt.Errorf("clearancetest: generating signing key: %w", err)
		}
	}
	if key.N.BitLen() < 2048 {
		return errors.New("clearancetest: signing key must be at least 2048 bits")
	}
	key.Precompute() // a no-op for generated keys; keeps signing fast for supplied ones
	jwk := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: "RS256", Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return fmt.Errorf("clearancetest: signing key thumbprint: %w", err)
	}
	// The RFC 7638 thumbprint makes a stable kid: the same key always gets the same id.
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		return fmt.Errorf("clearancetest: encoding JWKS: %w", err)
	}
	s.signKey, s.signKID, s.jwksJSON = key, jwk.KeyID, set
	return nil
}

func (s *Server) initDiscovery() error {
	doc := map[string]any{
		"issuer":                                s.base,
		"jwks_uri":                              s.root + JWKSPath,
		"token_endpoint":                        s.tokenEP,
		"grant_types_supported":                 []string{GrantTypeJWTBearer},
		"token_endpoint_auth_methods_supported": []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": allowedAlgs,
		"response_types_supported":                         []string{"token"},
		"subject_types_supported":                          []string{"public"},
		"id_token_signing_alg_values_supported":            []string{"RS256"},
		"scopes_supported":                                 []string{s.cfg.scope},
		"claims_supported":                                 []string{"sub", "client_id", "tenant_id", "scope"},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("clearancetest: encoding discovery document: %w", err)
	}
	s.discoveryJSON = b
	return nil
}

// listenOn opens a listener, wrapping it in TLS when configured.
func (s *Server) listenOn(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("clearancetest: listen on %s: %w", addr, err)
	}
	if s.tlsConfig != nil {
		ln = tls.NewListener(ln, s.tlsConfig)
	}
	return ln, nil
}

// serve starts an http.Server on ln. Callers hold s.lmu.
func (s *Server) serve(ln net.Listener) {
	errLog := log.New(io.Discard, "", 0)
	if s.cfg.logger != nil {
		errLog = slog.NewLogLogger(s.cfg.logger.Handler(), slog.LevelDebug)
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// No WriteTimeout: injected latency may legitimately exceed any fixed value.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       errLog,
		// HTTP/1.1 only: connection-drop faults need Hijack, which HTTP/2 lacks.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	s.httpSrv = srv
	s.serveWG.Add(1)
	go func() {
		defer s.serveWG.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && s.cfg.logger != nil {
			s.cfg.logger.Error("sts-emulator: serve failed", "error", err)
		}
	}()
}

// URL returns the server root, e.g. "http://127.0.0.1:41234".
func (s *Server) URL() string { return s.root }

// BaseURL returns the STS base address, e.g. "http://127.0.0.1:41234/connect":
// what connection files list as SecurityTokenServiceBaseAddresses and the
// "iss" of issued access tokens.
func (s *Server) BaseURL() string { return s.base }

// TokenEndpoint returns the token endpoint URL (BaseURL + "/token").
func (s *Server) TokenEndpoint() string { return s.tokenEP }

// JWKSURL returns the URL of the JSON Web Key Set that verifies access tokens.
func (s *Server) JWKSURL() string { return s.root + JWKSPath }

// Addr returns the listen address (host:port); it stays the same across
// StopListening and Resume.
func (s *Server) Addr() string { return s.addr }

// SigningKeyID returns the kid of the key that signs access tokens.
func (s *Server) SigningKeyID() string { return s.signKID }

// SigningPublicKey returns the public key that verifies access tokens.
func (s *Server) SigningPublicKey() *rsa.PublicKey { return &s.signKey.PublicKey }

// Tenant returns the tenant of generated connection files.
func (s *Server) Tenant() string { return s.cfg.tenant }

// Now returns the emulator's current time: its clock plus the clock offset.
func (s *Server) Now() time.Time {
	return s.cfg.clk.Now().Add(time.Duration(s.clockOffset.Load()))
}

// SetClockOffset changes how far the emulator's clock runs ahead of (positive)
// or behind (negative) the configured clock.
func (s *Server) SetClockOffset(d time.Duration) { s.clockOffset.Store(int64(d)) }

// ClockOffset returns the current clock offset.
func (s *Server) ClockOffset() time.Duration { return time.Duration(s.clockOffset.Load()) }

// SetTokenTTL changes the lifetime of access tokens issued from now on.
// Non-positive values are ignored.
func (s *Server) SetTokenTTL(d time.Duration) {
	if d > 0 {
		s.tokenTTL.Store(int64(d))
	}
}

// TokenTTL returns the lifetime of newly issued access tokens.
func (s *Server) TokenTTL() time.Duration { return time.Duration(s.tokenTTL.Load()) }

// SetMaxAssertionLifetime changes the longest accepted assertion lifetime.
// Non-positive values are ignored.
func (s *Server) SetMaxAssertionLifetime(d time.Duration) {
	if d > 0 {
		s.maxLifetime.Store(int64(d))
	}
}

// MaxAssertionLifetime returns the longest accepted assertion lifetime.
func (s *Server) MaxAssertionLifetime() time.Duration {
	return time.Duration(s.maxLifetime.Load())
}

// Trust makes the server accept assertions for clientID ("<id>@<tenant>")
// signed by pub. A non-empty kid must then match the assertion's "kid" header
// when the assertion carries one. Trusting a revoked client again reinstates it.
func (s *Server) Trust(clientID string, pub *rsa.PublicKey, kid string) error {
	id, tenant, ok := strings.Cut(clientID, "@")
	if !ok || id == "" || tenant == "" || strings.Contains(tenant, "@") {
		return errors.New("clearancetest: client id must have the form <ServicePrincipalId>@<TenantId>")
	}
	if pub == nil || pub.N == nil || pub.N.BitLen() < 2048 {
		return errors.New("clearancetest: client key must be an RSA public key of at least 2048 bits")
	}
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	s.clients[clientID] = &trustedClient{pub: pub, kid: kid}
	return nil
}

// TrustConnectionFile parses a connection file (see ParseConnectionFile) and
// trusts its public key under its client id, which it returns.
func (s *Server) TrustConnectionFile(data []byte) (string, error) {
	cf, err := ParseConnectionFile(data)
	if err != nil {
		return "", err
	}
	if err := s.Trust(cf.ClientID(), cf.PublicKey, cf.KeyID); err != nil {
		return "", err
	}
	return cf.ClientID(), nil
}

// Revoke makes the server reject clientID with invalid_client ("key revoked").
// It reports whether the client was known.
func (s *Server) Revoke(clientID string) bool {
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	c, ok := s.clients[clientID]
	if ok {
		// Copy on write: request handlers read *trustedClient without the lock.
		s.clients[clientID] = &trustedClient{pub: c.pub, kid: c.kid, revoked: true}
	}
	return ok
}

// Clients returns the ids of trusted (including revoked) clients.
func (s *Server) Clients() []string {
	s.clientsMu.RLock()
	defer s.clientsMu.RUnlock()
	ids := make([]string, 0, len(s.clients))
	for id := range s.clients {
		ids = append(ids, id)
	}
	return ids
}

func (s *Server) lookupClient(clientID string) *trustedClient {
	s.clientsMu.RLock()
	defer s.clientsMu.RUnlock()
	return s.clients[clientID]
}

// StopListening closes the listener and every open connection, so clients see
// "connection refused" until Resume. It is a no-op when already stopped.
func (s *Server) StopListening() error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	s.stopLocked()
	return nil
}

func (s *Server) stopLocked() {
	if s.httpSrv == nil {
		return
	}
	_ = s.httpSrv.Close() // the only error is the listener's close error, which is moot here
	s.httpSrv = nil
	s.serveWG.Wait()
}

// Resume listens again on the same address after StopListening. It is a no-op
// when already listening.
func (s *Server) Resume() error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.resumeTimer != nil {
		s.resumeTimer.Stop()
		s.resumeTimer = nil
	}
	if s.httpSrv != nil {
		return nil
	}
	// The port was just released by this process; rebinding normally succeeds
	// at once (Go sets SO_REUSEADDR), but retry briefly in case the kernel lags.
	var lastErr error
	for range 50 {
		ln, err := s.listenOn(s.addr)
		if err == nil {
			s.serve(ln)
			return nil
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond)
	}
	return lastErr
}

// Listening reports whether the server currently accepts connections.
func (s *Server) Listening() bool {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.httpSrv != nil
}

// stopListeningFor stops listening now and resumes after d (admin endpoint).
func (s *Server) stopListeningFor(d time.Duration) error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	s.stopLocked()
	if s.resumeTimer != nil {
		s.resumeTimer.Stop()
	}
	s.resumeTimer = time.AfterFunc(d, func() {
		if err := s.Resume(); err != nil && !errors.Is(err, ErrServerClosed) && s.cfg.logger != nil {
			s.cfg.logger.Error("sts-emulator: resume failed", "error", err)
		}
	})
	return nil
}

// Close stops the server immediately, closing all connections. It is idempotent.
func (s *Server) Close() {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	close(s.done)
	if s.resumeTimer != nil {
		s.resumeTimer.Stop()
	}
	s.stopLocked()
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
}

// Shutdown stops accepting connections and waits for in-flight requests to
// finish or ctx to end, whichever comes first; then it closes the server.
func (s *Server) Shutdown(ctx context.Context) error {
	s.lmu.Lock()
	srv := s.httpSrv
	s.lmu.Unlock()
	var err error
	if srv != nil {
		err = srv.Shutdown(ctx)
	}
	s.Close()
	return err
}

// CACertPEM returns the PEM certificate clients must trust in TLS mode (the
// server's self-signed certificate), or nil without TLS.
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.caPEM...) }

// CertPool returns a pool holding the server certificate, or nil without TLS.
func (s *Server) CertPool() *x509.CertPool { return s.caPool }

// Client returns an HTTP client with keep-alive connections that trusts the
// server's certificate in TLS mode. Its idle connections are closed by Close.
func (s *Server) Client() *http.Client {
	s.clientOnce.Do(func() {
		tr, _ := http.DefaultTransport.(*http.Transport)
		if tr == nil {
			tr = &http.Transport{}
		} else {
			tr = tr.Clone()
		}
		tr.MaxIdleConns = 256
		tr.MaxIdleConnsPerHost = 256
		tr.ForceAttemptHTTP2 = false
		if s.caPool != nil {
			tr.TLSClientConfig = &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12}
		}
		s.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	})
	return s.client
}

// ServeHTTP routes a request. Endpoint paths are matched case-insensitively
// (the vendor documents both "/token" and "/Token"); admin paths are not.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.EqualFold(p, TokenPath):
		s.handleToken(w, r)
	case strings.EqualFold(p, DiscoveryPath):
		s.stats.discovery.Add(1)
		s.serveStatic(w, r, s.discoveryJSON)
	case strings.EqualFold(p, JWKSPath):
		s.stats.jwks.Add(1)
		s.serveStatic(w, r, s.jwksJSON)
	case s.cfg.admin && (p == AdminPath || strings.HasPrefix(p, AdminPath+"/")):
		s.handleAdmin(w, r)
	default:
		writeOAuthError(w, &oauthError{status: http.StatusNotFound, code: "not_found", desc: "no such endpoint"})
	}
}

func (s *Server) serveStatic(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeOAuthError(w, &oauthError{status: http.StatusMethodNotAllowed, code: ErrInvalidRequest, desc: "use GET"})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=60")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body) // a failed write means the client went away; nothing to do
	}
}
