package clearance

import (
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jtiRegistry is shared by every test STS of a test so that jti uniqueness is
// checked across failover attempts, as the real STS's replay cache would.
type jtiRegistry struct {
	mu   sync.Mutex
	seen map[string]bool
}

func newJTIRegistry() *jtiRegistry { return &jtiRegistry{seen: map[string]bool{}} }

// add records jti and reports whether it was new.
func (r *jtiRegistry) add(jti string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[jti] {
		return false
	}
	r.seen[jti] = true
	return true
}

func (r *jtiRegistry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// stsReply is one scripted response of the test STS.
type stsReply struct {
	status int
	header map[string]string
	body   string
	// echo makes the reply a 400 invalid_grant whose error_description quotes the
	// received assertion, like a careless STS might.
	echo bool
}

// recordedRequest is what the test STS saw in one request.
type recordedRequest struct {
	Encoding  Encoding
	ClientID  string
	Assertion string
	JTI       string
	KID       string
	Aud       any
}

// testSTS is an httptest token endpoint that verifies requests the way the real
// Clearance STS does (RFC 7523 §3): signature with the registered public key, alg,
// kid, iss/sub = client_id, time claims against its clock, assertion lifetime,
// jti replay, grant_type and client_id parameters. Verification failures fail the
// test and are answered with 400 invalid_grant.
type testSTS struct {
	t         testing.TB
	server    *httptest.Server
	publicKey *rsa.PublicKey
	kid       string
	clientID  string
	now       func() time.Time
	jtis      *jtiRegistry

	// wantAudience is the expected aud claim ("" means the claim must be absent).
	wantAudience string
	// wantEncoding, when set, is the body encoding the client must use.
	wantEncoding Encoding
	// verify disables all checks when false (benchmarks).
	verify bool

	mu       sync.Mutex
	replies  []stsReply // consumed in order; when exhausted, success is returned
	success  stsReply
	requests []recordedRequest
}

// newTestSTS starts a verifying STS serving POST /connect/token. Its default
// reply is a successful token response with expires_in 3600 and an opaque token.
func newTestSTS(tb testing.TB, pub *rsa.PublicKey, now func() time.Time, jtis *jtiRegistry) *testSTS {
	tb.Helper()
	if jtis == nil {
		jtis = newJTIRegistry()
	}
	s := &testSTS{
		t:         tb,
		publicKey: pub,
		kid:       testKID,
		clientID:  testSPID + "@" + testTenant,
		now:       now,
		jtis:      jtis,
		verify:    true,
		success:   tokenReply(`"opaque-access-token-0123456789"`, 3600),
	}
	s.server = httptest.NewServer(http.HandlerFunc(s.handle))
	tb.Cleanup(s.server.Close)
	return s
}

// base is the STS base address as it appears in a connection file.
func (s *testSTS) base() string { return s.server.URL + "/connect" }

func (s *testSTS) endpoint() string { return s.server.URL + "/connect/token" }

// script queues replies for the next requests.
func (s *testSTS) script(replies ...stsReply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replies = append(s.replies, replies...)
}

func (s *testSTS) recorded() []recordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recordedRequest(nil), s.requests...)
}

// tokenReply is a 200 token response; accessTokenJSON is the raw JSON value of
// access_token and expiresIn the raw expires_in (nil omits it).
func tokenReply(accessTokenJSON string, expiresIn any) stsReply {
	body := `{"access_token":` + accessTokenJSON + `,"token_type":"Bearer"`
	if expiresIn != nil {
		b, _ := json.Marshal(expiresIn)
		body += `,"expires_in":` + string(b)
	}
	body += `,"scope":"api"}`
	return stsReply{status: http.StatusOK, header: map[string]string{"Content-Type": "application/json"}, body: body}
}

// errorReply is an RFC 6749 §5.2 error response.
func errorReply(status int, code, description string) stsReply {
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": description})
	return stsReply{status: status, header: map[string]string{"Content-Type": "application/json"}, body: string(b)}
}

// accessJWT is an STS-issued access token (HS256 with a test secret) whose exp is
// exp; it looks like what Clearance issues and lets tests check expiry capping.
func accessJWT(tb testing.TB, exp time.Time) string {
	tb.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "https://clearance-a-sts.example/connect",
		"aud": "client",
		"exp": exp.Unix(),
		"nbf": exp.Add(-time.Hour).Unix(),
	})
	s, err := tok.SignedString([]byte("test-sts-signing-secret"))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func (s *testSTS) handle(w http.ResponseWriter, r *http.Request) {
	var rec recordedRequest
	if s.verify {
		var problem string
		rec, problem = s.check(r)
		if problem != "" {
			s.t.Errorf("test STS: %s", problem)
			writeReply(w, errorReply(http.StatusBadRequest, "invalid_grant", "test STS: "+problem))
			return
		}
	} else {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	reply := s.success
	if len(s.replies) > 0 {
		reply = s.replies[0]
		s.replies = s.replies[1:]
	}
	s.mu.Unlock()
	if reply.echo {
		reply = errorReply(http.StatusBadRequest, "invalid_grant", "assertion "+rec.Assertion+" could not be validated")
	}
	writeReply(w, reply)
}

func writeReply(w http.ResponseWriter, reply stsReply) {
	for k, v := range reply.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(reply.status)
	_, _ = io.WriteString(w, reply.body)
}

// check verifies one token request; it returns a problem description or "".
func (s *testSTS) check(r *http.Request) (recordedRequest, string) {
	var rec recordedRequest
	if r.Method != http.MethodPost {
		return rec, "method " + r.Method
	}
	if r.URL.Path != "/connect/token" {
		return rec, "path " + r.URL.Path
	}
	if r.URL.RawQuery != "" {
		return rec, "unexpected query string"
	}
	if got := r.Header.Get("Accept"); got != "application/json" {
		return rec, "Accept header " + got
	}
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return rec, "bad Content-Type"
	}
	params := map[string]string{}
	switch mediaType {
	case "application/x-www-form-urlencoded":
		rec.Encoding = EncodingForm
		if err := r.ParseForm(); err != nil {
			return rec, "bad form body"
		}
		for k, v := range r.PostForm {
			if len(v) != 1 {
				return rec, "repeated form parameter " + k
			}
			params[k] = v[0]
		}
	case "application/json":
		rec.Encoding = EncodingJSON
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		var body struct {
			ClientID  *string `json:"client_id"`
			GrantType *string `json:"grant_type"`
			Assertion *string `json:"assertion"`
		}
		if err := dec.Decode(&body); err != nil {
			return rec, "bad JSON body: " + err.Error()
		}
		for k, v := range map[string]*string{"client_id": body.ClientID, "grant_type": body.GrantType, "assertion": body.Assertion} {
			if v != nil {
				params[k] = *v
			}
		}
	default:
		return rec, "Content-Type " + mediaType
	}
	if s.wantEncoding != "" && rec.Encoding != s.wantEncoding {
		return rec, fmt.Sprintf("encoding %s, want %s", rec.Encoding, s.wantEncoding)
	}
	if len(params) != 3 {
		return rec, fmt.Sprintf("%d body parameters, want exactly client_id, grant_type, assertion", len(params))
	}
	if params["grant_type"] != GrantTypeJWTBearer {
		return rec, "grant_type " + params["grant_type"]
	}
	rec.ClientID = params["client_id"]
	if rec.ClientID != s.clientID {
		return rec, "client_id " + rec.ClientID
	}
	rec.Assertion = params["assertion"]

	now := s.now()
	claims := jwt.MapClaims{}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(s.clientID),
		jwt.WithSubject(s.clientID),
	}
	if s.wantAudience != "" {
		opts = append(opts, jwt.WithAudience(s.wantAudience))
	}
	tok, err := jwt.ParseWithClaims(rec.Assertion, claims, func(t *jwt.Token) (any, error) {
		return s.publicKey, nil
	}, opts...)
	if err != nil {
		return rec, "assertion rejected: " + err.Error()
	}
	if typ, _ := tok.Header["typ"].(string); typ != "JWT" {
		return rec, "typ header " + typ
	}
	kid, hasKID := tok.Header["kid"].(string)
	rec.KID = kid
	switch {
	case s.kid == "" && hasKID:
		return rec, "kid header present although the key has no kid"
	case s.kid != "" && kid != s.kid:
		return rec, "kid header " + kid
	}
	for _, c := range []string{"iss", "sub", "iat", "nbf", "exp", "jti"} {
		if _, ok := claims[c]; !ok {
			return rec, "missing claim " + c
		}
	}
	rec.Aud = claims["aud"]
	if s.wantAudience == "" && rec.Aud != nil {
		return rec, "unexpected aud claim"
	}
	if s.wantAudience != "" && rec.Aud != s.wantAudience {
		return rec, fmt.Sprintf("aud claim %v is not the single string %q", rec.Aud, s.wantAudience)
	}
	iat, _ := claims.GetIssuedAt()
	nbf, _ := claims.GetNotBefore()
	exp, _ := claims.GetExpirationTime()
	if !iat.Equal(now.Truncate(time.Second)) || !nbf.Equal(iat.Time) {
		return rec, fmt.Sprintf("iat %v / nbf %v, want both %v", iat, nbf, now.Truncate(time.Second))
	}
	if lifetime := exp.Sub(iat.Time); lifetime <= 0 || lifetime > 5*time.Minute {
		return rec, fmt.Sprintf("assertion lifetime %v, want (0, 5m]", lifetime)
	}
	jti, _ := claims["jti"].(string)
	if raw, err := hex.DecodeString(jti); err != nil || len(raw) != 16 {
		return rec, "jti is not 128 random bits in hex"
	}
	if !s.jtis.add(jti) {
		return rec, "jti replayed"
	}
	rec.JTI = jti
	if strings.Count(rec.Assertion, ".") != 2 {
		return rec, "assertion is not a compact JWS"
	}
	return rec, ""
}
