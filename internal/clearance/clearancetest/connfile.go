package clearancetest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// MaxConnectionFileSize bounds connection files accepted by ParseConnectionFile.
const MaxConnectionFileSize = 1 << 20

// netDefaultDate is how .NET serialises default(DateTime), which the vendor's
// files carry in the key's nbf and exp members.
const netDefaultDate = "0001-01-01T00:00:00"

// ConnectionFile is a Clearance connection file: either one the emulator
// generated or one parsed by ParseConnectionFile.
type ConnectionFile struct {
	ServicePrincipalID string
	TenantID           string
	// KeyID is the JWK "kid" ("urn:service:<tenant>:<name>:<id>" when generated).
	KeyID string
	// PrivateKey is nil when a parsed file carries only the public half.
	PrivateKey *rsa.PrivateKey
	PublicKey  *rsa.PublicKey
	// STSBaseAddresses is SecurityTokenServiceBaseAddresses.
	STSBaseAddresses []string
	// Data is the serialised file: what was generated, or what was parsed.
	// It contains the private key; treat it as a secret.
	Data []byte
}

// ClientID returns the OAuth client_id, "<ServicePrincipalId>@<TenantId>".
func (c *ConnectionFile) ClientID() string { return c.ServicePrincipalID + "@" + c.TenantID }

// WriteFile writes Data to path, readable by the owner only.
func (c *ConnectionFile) WriteFile(path string) error {
	if err := os.WriteFile(path, c.Data, 0o600); err != nil {
		return fmt.Errorf("clearancetest: writing connection file: %w", err)
	}
	return nil
}

// AssertionOptions shapes an assertion made by ConnectionFile.SignAssertion.
// The zero value produces what the vendor's Python sample sends: header kid,
// claims iss, sub, iat, nbf and exp = iat + 1h.
type AssertionOptions struct {
	// Now is the client's clock (default time.Now()).
	Now time.Time
	// Lifetime is exp - iat (default 1h).
	Lifetime time.Duration
	// JTI and Audience are added when non-empty.
	JTI      string
	Audience string
	// OmitKeyID and OmitSubject drop the kid header and sub claim, as the
	// vendor's Node sample does.
	OmitKeyID   bool
	OmitSubject bool
}

// SignAssertion signs an RS256 client assertion with the file's private key.
func (c *ConnectionFile) SignAssertion(o AssertionOptions) (string, error) {
	if c.PrivateKey == nil {
		return "", errors.New("clearancetest: connection file has no private key")
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	life := o.Lifetime
	if life == 0 {
		life = time.Hour
	}
	id := c.ClientID()
	claims := jwt.MapClaims{
		"iss": id,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(life).Unix(),
	}
	if !o.OmitSubject {
		claims["sub"] = id
	}
	if o.JTI != "" {
		claims["jti"] = o.JTI
	}
	if o.Audience != "" {
		claims["aud"] = o.Audience
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	if !o.OmitKeyID && c.KeyID != "" {
		tok.Header["kid"] = c.KeyID
	}
	s, err := tok.SignedString(c.PrivateKey)
	if err != nil {
		return "", fmt.Errorf("clearancetest: signing assertion: %w", err)
	}
	return s, nil
}

// netConnectionFile mirrors the member order and shape of the vendor's
// .NET-serialised connection file.
type netConnectionFile struct {
	DocumentStoreBaseAddresses        []string `json:"DocumentStoreBaseAddresses"`
	SecurityTokenServiceBaseAddresses []string `json:"SecurityTokenServiceBaseAddresses"`
	KeyStoreBaseAddresses             []string `json:"KeyStoreBaseAddresses"`
	DeviceServiceBaseAddresses        []string `json:"DeviceServiceBaseAddresses"`
	CaseServiceBaseAddresses          []string `json:"CaseServiceBaseAddresses"`
	SearchServiceBaseAddresses        []string `json:"SearchServiceBaseAddresses"`
	UserServiceBaseAddresses          []string `json:"UserServiceBaseAddresses"`
	APIBaseAddresses                  []string `json:"ApiBaseAddresses"`
	CADAPIAddresses                   []string `json:"CADApiAddresses"`
	APIKey                            string   `json:"APIKey"`
	CertificateThumbprints            []string `json:"CertificateThumbprints"`
	DisableEncryption                 bool     `json:"DisableEncryption"`
	ServicePrincipalID                string   `json:"ServicePrincipalId"`
	ServicePrincipalKey               netJWK   `json:"ServicePrincipalKey"`
	TenantID                          string   `json:"TenantId"`
}

// netJWK is a Microsoft.IdentityModel JsonWebKey as Json.NET writes it: unset
// members are explicit nulls and nbf/exp are DateTime strings.
type netJWK struct {
	K   *string `json:"k"`
	Kid string  `json:"kid"`
	Kty string  `json:"kty"`
	Use *string `json:"use"`
	N   string  `json:"n"`
	E   string  `json:"e"`
	X5t *string `json:"x5t"`
	D   string  `json:"d"`
	P   string  `json:"p"`
	Q   string  `json:"q"`
	DP  string  `json:"dp"`
	DQ  string  `json:"dq"`
	QI  string  `json:"qi"`
	Nbf string  `json:"nbf"`
	Exp string  `json:"exp"`
}

// ConnectionFileOption adjusts a generated connection file.
type ConnectionFileOption func(*connFileConfig)

type connFileConfig struct {
	stsAddresses []string
	serviceName  string
	tenant       string
}

// WithSTSAddresses lists these SecurityTokenServiceBaseAddresses instead of
// the server's own base address (e.g. a dead address first, to test failover).
func WithSTSAddresses(addrs ...string) ConnectionFileOption {
	return func(c *connFileConfig) { c.stsAddresses = append([]string(nil), addrs...) }
}

// WithFileServiceName sets the service name in the kid of this file.
func WithFileServiceName(name string) ConnectionFileOption {
	return func(c *connFileConfig) { c.serviceName = name }
}

// WithFileTenant sets the TenantId of this file (default: the server's tenant).
func WithFileTenant(tenant string) ConnectionFileOption {
	return func(c *connFileConfig) { c.tenant = tenant }
}

// NewConnectionFile generates a fresh RSA-2048 client key, trusts it and
// returns its connection file. Key generation is slow (tens to hundreds of
// milliseconds); see NewConnectionFileWithKey to reuse keys.
func (s *Server) NewConnectionFile(opts ...ConnectionFileOption) (*ConnectionFile, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("clearancetest: generating client key: %w", err)
	}
	return s.NewConnectionFileWithKey(key, opts...)
}

// NewConnectionFileWithKey is NewConnectionFile with a caller-supplied key.
// Each call allocates a new ServicePrincipalId, so one key may back several
// clients.
func (s *Server) NewConnectionFileWithKey(key *rsa.PrivateKey, opts ...ConnectionFileOption) (*ConnectionFile, error) {
	cfg := connFileConfig{stsAddresses: []string{s.base}, serviceName: s.cfg.serviceName, tenant: s.cfg.tenant}
	for _, o := range opts {
		o(&cfg)
	}
	if key == nil || key.N.BitLen() < 2048 {
		return nil, errors.New("clearancetest: client key must be RSA with at least 2048 bits")
	}
	if cfg.tenant == "" || strings.Contains(cfg.tenant, "@") {
		return nil, errors.New("clearancetest: tenant must be non-empty and must not contain '@'")
	}
	if key.Precomputed.Dp == nil || key.Precomputed.Dq == nil || key.Precomputed.Qinv == nil {
		// dp, dq and qi are written out; make sure they exist without
		// touching the caller's key.
		k := *key
		k.Precompute()
		key = &k
	}

	// Reserve the id and trust the key in one step, so concurrent callers and
	// already trusted files never collide.
	s.clientsMu.Lock()
	var id string
	for range len(s.clients) + 1 { // at most len(clients) ids can be taken
		id = strconv.Itoa(s.nextID)
		s.nextID++
		if _, taken := s.clients[id+"@"+cfg.tenant]; !taken {
			break
		}
	}
	kid := fmt.Sprintf("urn:service:%s:%s:%s", cfg.tenant, cfg.serviceName, id)
	clientID := id + "@" + cfg.tenant
	s.clients[clientID] = &trustedClient{pub: &key.PublicKey, kid: kid}
	s.clientsMu.Unlock()

	data, err := s.encodeConnectionFile(key, id, kid, cfg)
	if err != nil {
		return nil, err
	}
	return &ConnectionFile{
		ServicePrincipalID: id,
		TenantID:           cfg.tenant,
		KeyID:              kid,
		PrivateKey:         key,
		PublicKey:          &key.PublicKey,
		STSBaseAddresses:   cfg.stsAddresses,
		Data:               data,
	}, nil
}

func (s *Server) encodeConnectionFile(key *rsa.PrivateKey, id, kid string, cfg connFileConfig) ([]byte, error) {
	// go-jose does the base64url encoding of the key's big integers.
	raw, err := json.Marshal(jose.JSONWebKey{Key: key, KeyID: kid})
	if err != nil {
		return nil, fmt.Errorf("clearancetest: encoding client key: %w", err)
	}
	var m struct {
		N, E, D, P, Q string
		DP            string `json:"dp"`
		DQ            string `json:"dq"`
		QI            string `json:"qi"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("clearancetest: encoding client key: %w", err)
	}
	at := func(p string) []string { return []string{s.root + p} }
	doc := netConnectionFile{
		DocumentStoreBaseAddresses:        at("/ds/api/v1"),
		SecurityTokenServiceBaseAddresses: cfg.stsAddresses,
		KeyStoreBaseAddresses:             at("/ks/api/v1"),
		DeviceServiceBaseAddresses:        at("/devices/api/v1"),
		CaseServiceBaseAddresses:          at("/cases/api/v1"),
		SearchServiceBaseAddresses:        at("/search/api/v1"),
		UserServiceBaseAddresses:          at("/users/api/v1"),
		APIBaseAddresses:                  at("/api/v1"),
		CADAPIAddresses:                   at("/cad/api/v1"),
		APIKey:                            rand.Text(), // 26 random base32 characters, like a real key: opaque uppercase text
		CertificateThumbprints:            []string{},
		ServicePrincipalID:                id,
		ServicePrincipalKey: netJWK{
			Kid: kid, Kty: "RSA",
			N: m.N, E: m.E, D: m.D, P: m.P, Q: m.Q, DP: m.DP, DQ: m.DQ, QI: m.QI,
			Nbf: netDefaultDate, Exp: netDefaultDate,
		},
		TenantID: cfg.tenant,
	}
	out, err := json.MarshalIndent(doc, "", "  ") //nolint:gosec // G117: writing the APIKey is the point of a connection file generator
	if err != nil {
		return nil, fmt.Errorf("clearancetest: encoding connection file: %w", err)
	}
	return append(out, '\n'), nil
}

// ParseConnectionFile reads a connection file independently of package
// clearance. It tolerates a UTF-8 byte-order mark, JSON nulls, unknown
// members and a numeric ServicePrincipalId. The private key is decoded when
// d, p and q are all present. Errors never quote the input.
func ParseConnectionFile(data []byte) (*ConnectionFile, error) {
	if len(data) > MaxConnectionFileSize {
		return nil, fmt.Errorf("clearancetest: connection file exceeds %d bytes", MaxConnectionFileSize)
	}
	trimmed := bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var doc struct {
		ServicePrincipalID json.RawMessage            `json:"ServicePrincipalId"`
		TenantID           *string                    `json:"TenantId"`
		STS                []string                   `json:"SecurityTokenServiceBaseAddresses"`
		Key                map[string]json.RawMessage `json:"ServicePrincipalKey"`
	}
	if err := json.Unmarshal(trimmed, &doc); err != nil {
		return nil, errors.New("clearancetest: connection file is not a valid JSON object of the expected shape")
	}
	id, err := principalID(doc.ServicePrincipalID)
	if err != nil {
		return nil, err
	}
	if doc.TenantID == nil || *doc.TenantID == "" || strings.Contains(*doc.TenantID, "@") {
		return nil, errors.New("clearancetest: connection file: TenantId missing or invalid")
	}
	if doc.Key == nil {
		return nil, errors.New("clearancetest: connection file: ServicePrincipalKey missing")
	}
	member := func(name string) (string, bool) {
		raw, ok := doc.Key[name]
		if !ok {
			return "", false
		}
		var v *string
		if json.Unmarshal(raw, &v) != nil || v == nil || *v == "" {
			return "", false
		}
		return *v, true
	}
	if kty, _ := member("kty"); kty != "RSA" {
		return nil, errors.New("clearancetest: connection file: ServicePrincipalKey.kty must be RSA")
	}
	jwk := map[string]string{"kty": "RSA"}
	for _, name := range []string{"n", "e"} {
		v, ok := member(name)
		if !ok {
			return nil, fmt.Errorf("clearancetest: connection file: ServicePrincipalKey.%s missing", name)
		}
		jwk[name] = v
	}
	private := true
	for _, name := range []string{"d", "p", "q"} {
		if _, ok := member(name); !ok {
			private = false
		}
	}
	if private {
		for _, name := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if v, ok := member(name); ok {
				jwk[name] = v
			}
		}
	}
	raw, err := json.Marshal(jwk)
	if err != nil {
		return nil, fmt.Errorf("clearancetest: connection file: %w", err)
	}
	var key jose.JSONWebKey
	if err := key.UnmarshalJSON(raw); err != nil {
		return nil, errors.New("clearancetest: connection file: ServicePrincipalKey is not a valid RSA JWK")
	}
	cf := &ConnectionFile{ServicePrincipalID: id, TenantID: *doc.TenantID, STSBaseAddresses: doc.STS, Data: data}
	cf.KeyID, _ = member("kid")
	switch k := key.Key.(type) {
	case *rsa.PrivateKey:
		cf.PrivateKey, cf.PublicKey = k, &k.PublicKey
	case *rsa.PublicKey:
		cf.PublicKey = k
	default:
		return nil, errors.New("clearancetest: connection file: ServicePrincipalKey is not an RSA key")
	}
	if cf.PublicKey.N.BitLen() < 2048 {
		return nil, errors.New("clearancetest: connection file: ServicePrincipalKey is shorter than 2048 bits")
	}
	return cf, nil
}

// principalID accepts ServicePrincipalId as a JSON string or an integer.
func principalID(raw json.RawMessage) (string, error) {
	bad := errors.New("clearancetest: connection file: ServicePrincipalId missing or invalid")
	if len(raw) == 0 {
		return "", bad
	}
	var s *string
	if err := json.Unmarshal(raw, &s); err == nil {
		if s == nil || *s == "" || strings.Contains(*s, "@") {
			return "", bad
		}
		return *s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		if i, err := n.Int64(); err == nil && i >= 0 {
			return strconv.FormatInt(i, 10), nil
		}
	}
	return "", bad
}

// NewJTI returns a random assertion id (128 bits, hex).
func NewJTI() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error on supported platforms
	return hex.EncodeToString(b[:])
}
