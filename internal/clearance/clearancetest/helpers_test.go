package clearancetest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

// Keys are generated once per test binary: RSA-2048 generation costs up to a
// few hundred milliseconds on this machine and dozens of tests need keys.
var (
	keysOnce sync.Once
	keys     [4]*rsa.PrivateKey
	keysErr  error
)

func testKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	keysOnce.Do(func() {
		for j := range keys {
			if keys[j], keysErr = rsa.GenerateKey(rand.Reader, 2048); keysErr != nil {
				return
			}
		}
	})
	if keysErr != nil {
		t.Fatalf("generating test keys: %v", keysErr)
	}
	return keys[i]
}

// newServer starts an emulator that reuses a pre-generated signing key.
func newServer(t testing.TB, opts ...clearancetest.Option) *clearancetest.Server {
	t.Helper()
	return clearancetest.NewTestServer(t, append([]clearancetest.Option{clearancetest.WithSigningKey(testKey(t, 0))}, opts...)...)
}

// newClient makes a connection file on srv backed by pre-generated key i (1..3).
func newClient(t testing.TB, srv *clearancetest.Server, i int, opts ...clearancetest.ConnectionFileOption) *clearancetest.ConnectionFile {
	t.Helper()
	cf, err := srv.NewConnectionFileWithKey(testKey(t, i), opts...)
	if err != nil {
		t.Fatalf("NewConnectionFileWithKey: %v", err)
	}
	return cf
}

// sign makes a JWS with the given algorithm, extra header members and claims.
func sign(t testing.TB, key any, method jwt.SigningMethod, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing assertion: %v", err)
	}
	return s
}

// pythonClaims are the claims of the vendor's Python sample.
func pythonClaims(clientID string, now time.Time) jwt.MapClaims {
	n := now.Unix()
	return jwt.MapClaims{"iss": clientID, "sub": clientID, "iat": n, "exp": n + 3600, "nbf": n}
}

// tokenReply is a decoded token endpoint response.
type tokenReply struct {
	Status int
	Header http.Header
	Raw    []byte
	JSON   map[string]any
}

func (r tokenReply) str(k string) string { s, _ := r.JSON[k].(string); return s }

// post sends a token request. enc is "form" or "json"; params are sent as-is.
func post(t testing.TB, client *http.Client, endpoint, enc string, params map[string]string) tokenReply {
	t.Helper()
	var body []byte
	var ct string
	switch enc {
	case "form":
		v := url.Values{}
		for k, p := range params {
			v.Set(k, p)
		}
		body, ct = []byte(v.Encode()), "application/x-www-form-urlencoded"
	case "json":
		var err error
		if body, err = json.Marshal(params); err != nil {
			t.Fatal(err)
		}
		ct = "application/json"
	default:
		t.Fatalf("unknown encoding %q", enc)
	}
	return postRaw(t, client, endpoint, ct, body)
}

func postRaw(t testing.TB, client *http.Client, endpoint, contentType string, body []byte) tokenReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", endpoint, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	r := tokenReply{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		_ = d.Decode(&r.JSON) // faults may send broken JSON on purpose; tests check Raw then
	}
	return r
}

// request sends a token request with a vendor-shaped (Python sample) assertion.
func request(t testing.TB, srv *clearancetest.Server, cf *clearancetest.ConnectionFile, enc string) tokenReply {
	t.Helper()
	a, err := cf.SignAssertion(clearancetest.AssertionOptions{Now: srv.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return post(t, srv.Client(), srv.TokenEndpoint(), enc, map[string]string{
		"client_id": cf.ClientID(), "grant_type": clearancetest.GrantTypeJWTBearer, "assertion": a,
	})
}

func do(t testing.TB, client *http.Client, method, u, contentType, body string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}
