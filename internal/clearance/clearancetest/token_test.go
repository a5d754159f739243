package clearancetest_test

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

func params(clientID, assertion string) map[string]string {
	return map[string]string{"client_id": clientID, "grant_type": clearancetest.GrantTypeJWTBearer, "assertion": assertion}
}

// TestVendorPythonSample posts exactly what the vendor's Python sample posts:
// a JSON body; header kid; claims iss, sub, iat, exp = iat + 3600, nbf.
func TestVendorPythonSample(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	now := time.Now().Unix()
	a := sign(t, cf.PrivateKey, jwt.SigningMethodRS256, map[string]any{"kid": cf.KeyID},
		jwt.MapClaims{"iss": cf.ClientID(), "sub": cf.ClientID(), "iat": now, "exp": now + 60*60, "nbf": now})

	r := post(t, srv.Client(), cf.STSBaseAddresses[0]+"/token", "json", params(cf.ClientID(), a))

	g.Expect(r.Status).To(Equal(http.StatusOK), string(r.Raw))
	g.Expect(r.str("token_type")).To(Equal("Bearer"))
	g.Expect(r.str("access_token")).NotTo(BeEmpty())
	g.Expect(r.str("scope")).To(Equal(clearancetest.DefaultScope))
	g.Expect(r.JSON["expires_in"]).To(Equal(json.Number("3600")))
	g.Expect(r.Header.Get("Cache-Control")).To(Equal("no-store"))

	reqs := srv.Requests()
	g.Expect(reqs).To(HaveLen(1))
	g.Expect(reqs[0].Encoding).To(Equal("json"))
	g.Expect(reqs[0].KeyID).To(Equal(cf.KeyID))
	g.Expect(reqs[0].Subject).To(Equal(cf.ClientID()))
	g.Expect(reqs[0].Outcome).To(Equal(clearancetest.OutcomeSuccess))
	g.Expect(reqs[0].Expiry.Sub(*reqs[0].IssuedAt)).To(Equal(time.Hour))
}

// TestVendorNodeSample posts what the vendor's Node sample posts: a JSON body;
// no kid; claims iss, fractional iat, exp = iat + 3600 (in floating point), nbf.
func TestVendorNodeSample(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	// Like `new Date().valueOf() / 1000`, with a fraction that does not
	// survive float64 addition exactly.
	now := float64(time.Now().UnixMilli())/1000 + 0.0003
	a := sign(t, cf.PrivateKey, jwt.SigningMethodRS256, nil,
		jwt.MapClaims{"iss": cf.ClientID(), "iat": now, "exp": now + (60 * 60), "nbf": now})
	g.Expect(a).NotTo(BeEmpty())

	r := post(t, srv.Client(), cf.STSBaseAddresses[0]+"/token", "json", params(cf.ClientID(), a))

	g.Expect(r.Status).To(Equal(http.StatusOK), string(r.Raw))
	g.Expect(r.str("access_token")).NotTo(BeEmpty())
	rec := srv.Requests()[0]
	g.Expect(rec.KeyID).To(BeEmpty())
	g.Expect(rec.IssuedAt.Nanosecond()).NotTo(BeZero(), "fractional iat must be kept")
}

// TestCurlSample posts the form-encoded body of the vendor's curl sample with
// the C# sample's assertion (iss only plus the handler's default times).
func TestCurlSample(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	now := time.Now().Unix()
	a := sign(t, cf.PrivateKey, jwt.SigningMethodRS256, nil, jwt.MapClaims{"iss": cf.ClientID(), "iat": now, "nbf": now, "exp": now + 3600})

	r := post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), a))

	g.Expect(r.Status).To(Equal(http.StatusOK), string(r.Raw))
	g.Expect(srv.Requests()[0].Encoding).To(Equal("form"))
}

func TestTokenPathIsCaseInsensitive(t *testing.T) {
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	for _, p := range []string{"/connect/token", "/connect/Token", "/CONNECT/TOKEN"} {
		t.Run(p, func(t *testing.T) {
			a, err := cf.SignAssertion(clearancetest.AssertionOptions{})
			if err != nil {
				t.Fatal(err)
			}
			r := post(t, srv.Client(), srv.URL()+p, "form", params(cf.ClientID(), a))
			if r.Status != http.StatusOK {
				t.Fatalf("status %d: %s", r.Status, r.Raw)
			}
		})
	}
}

func TestAlgorithmsAccepted(t *testing.T) {
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	for _, m := range []jwt.SigningMethod{jwt.SigningMethodRS256, jwt.SigningMethodRS384, jwt.SigningMethodRS512, jwt.SigningMethodPS256} {
		t.Run(m.Alg(), func(t *testing.T) {
			a := sign(t, cf.PrivateKey, m, nil, pythonClaims(cf.ClientID(), time.Now()))
			r := post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), a))
			if r.Status != http.StatusOK {
				t.Fatalf("status %d: %s", r.Status, r.Raw)
			}
		})
	}
}

// TestAssertionTimes checks the lifetime boundaries and the skew allowance
// against a fake clock, so nothing sleeps.
func TestAssertionTimes(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	n := base.Unix()
	fn := float64(n) + 0.123
	tests := []struct {
		name     string
		claims   func(id string) jwt.MapClaims
		wantOK   bool
		wantDesc []string
	}{
		{"exactly 3600s after iat", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "iat": n, "nbf": n, "exp": n + 3600}
		}, true, nil},
		{"fractional, 3600s after iat in float arithmetic", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "iat": fn, "nbf": fn, "exp": fn + 3600}
		}, true, nil},
		{"3601s after iat", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "iat": n, "nbf": n, "exp": n + 3601}
		}, false, []string{"lifetime", "iat"}},
		{"3600.01s after iat", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "iat": fn, "exp": fn + 3600.01}
		}, false, []string{"lifetime"}},
		{"only nbf, 3600s", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "nbf": n, "exp": n + 3600}
		}, true, nil},
		{"only nbf, 3601s", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "nbf": n, "exp": n + 3601}
		}, false, []string{"lifetime", "nbf"}},
		{"only exp, within lifetime plus skew", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "exp": n + 3600 + 30}
		}, true, nil},
		{"only exp, beyond lifetime plus skew", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "exp": n + 3600 + 31}
		}, false, []string{"lifetime", "clock"}},
		{"no exp", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "iat": n, "nbf": n}
		}, false, []string{"exp"}},
		{"exp 29s in the past (within skew)", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "iat": n - 600, "exp": n - 29}
		}, true, nil},
		{"exp 31s in the past", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "iat": n - 600, "exp": n - 31}
		}, false, []string{"expired", "exp is in the past", "clock"}},
		{"nbf 29s in the future (within skew)", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "nbf": n + 29, "exp": n + 600}
		}, true, nil},
		{"nbf 31s in the future", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "nbf": n + 31, "exp": n + 600}
		}, false, []string{"nbf is in the future", "clock"}},
		{"iat 31s in the future", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "iat": n + 31, "exp": n + 600}
		}, false, []string{"iat is in the future", "clock"}},
		{"exp is a string", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "exp": "tomorrow"}
		}, false, []string{"exp", "NumericDate"}},
		{"iat negative", func(id string) jwt.MapClaims {
			return jwt.MapClaims{"iss": id, "iat": -5, "exp": n + 60}
		}, false, []string{"iat"}},
	}
	clk := fakeclock.NewFakePassiveClock(base)
	srv := newServer(t, clearancetest.WithClock(clk))
	cf := newClient(t, srv, 1)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			a := sign(t, cf.PrivateKey, jwt.SigningMethodRS256, nil, tc.claims(cf.ClientID()))
			r := post(t, srv.Client(), srv.TokenEndpoint(), "json", params(cf.ClientID(), a))
			if tc.wantOK {
				g.Expect(r.Status).To(Equal(http.StatusOK), string(r.Raw))
				return
			}
			g.Expect(r.Status).To(Equal(http.StatusBadRequest))
			g.Expect(r.str("error")).To(Equal(clearancetest.ErrInvalidGrant))
			for _, d := range tc.wantDesc {
				g.Expect(r.str("error_description")).To(ContainSubstring(d))
			}
		})
	}
}

// TestRejections covers each validation rule with the exact error code.
func TestRejections(t *testing.T) {
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	other := newClient(t, srv, 2)
	id := cf.ClientID()
	now := time.Now()
	good := func() string { return sign(t, cf.PrivateKey, jwt.SigningMethodRS256, nil, pythonClaims(id, now)) }
	with := func(mut func(jwt.MapClaims)) string {
		c := pythonClaims(id, now)
		mut(c)
		return sign(t, cf.PrivateKey, jwt.SigningMethodRS256, nil, c)
	}
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, pythonClaims(id, now)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hsTok := sign(t, []byte("0123456789abcdef0123456789abcdef"), jwt.SigningMethodHS256, nil, pythonClaims(id, now))

	tests := []struct {
		name       string
		ct         string // content type; "" means form
		body       string // raw body; overrides p when set
		p          map[string]string
		wantStatus int
		wantCode   string
		wantDesc   string
	}{
		{name: "wrong grant_type", p: map[string]string{"client_id": id, "grant_type": "client_credentials", "assertion": good()},
			wantStatus: 400, wantCode: "unsupported_grant_type"},
		{name: "missing grant_type", p: map[string]string{"client_id": id, "assertion": good()},
			wantStatus: 400, wantCode: "invalid_request"},
		{name: "missing client_id", p: map[string]string{"grant_type": clearancetest.GrantTypeJWTBearer, "assertion": good()},
			wantStatus: 400, wantCode: "invalid_client"},
		{name: "unknown client", p: params("999@"+cf.TenantID, good()), wantStatus: 400, wantCode: "invalid_client"},
		{name: "client_id without tenant", p: params(cf.ServicePrincipalID, good()), wantStatus: 400, wantCode: "invalid_client"},
		{name: "client_id of another tenant", p: params(cf.ServicePrincipalID+"@othertenant", good()), wantStatus: 400, wantCode: "invalid_client"},
		{name: "missing assertion", p: map[string]string{"client_id": id, "grant_type": clearancetest.GrantTypeJWTBearer},
			wantStatus: 400, wantCode: "invalid_request"},
		{name: "assertion not a JWT", p: params(id, "not-a-jwt"), wantStatus: 400, wantCode: "invalid_grant", wantDesc: "well-formed"},
		{name: "assertion signed by another client's key", p: params(id, sign(t, other.PrivateKey, jwt.SigningMethodRS256, nil, pythonClaims(id, now))),
			wantStatus: 400, wantCode: "invalid_grant", wantDesc: "signature"},
		{name: "signature tampered", p: params(id, good()[:len(good())-4]+"AAAA"), wantStatus: 400, wantCode: "invalid_grant", wantDesc: "signature"},
		{name: "another client's assertion for this client_id", p: params(other.ClientID(), good()), wantStatus: 400, wantCode: "invalid_grant"},
		{name: "alg none", p: params(id, noneTok), wantStatus: 400, wantCode: "invalid_grant", wantDesc: "alg"},
		{name: "alg HS256", p: params(id, hsTok), wantStatus: 400, wantCode: "invalid_grant", wantDesc: "alg"},
		{name: "kid mismatch", p: params(id, sign(t, cf.PrivateKey, jwt.SigningMethodRS256, map[string]any{"kid": other.KeyID}, pythonClaims(id, now))),
			wantStatus: 400, wantCode: "invalid_grant", wantDesc: "kid"},
		{name: "kid not a string", p: params(id, sign(t, cf.PrivateKey, jwt.SigningMethodRS256, map[string]any{"kid": 7}, pythonClaims(id, now))),
			wantStatus: 400, wantCode: "invalid_grant", wantDesc: "kid"},
		{name: "iss missing", p: params(id, with(func(c jwt.MapClaims) { delete(c, "iss") })), wantStatus: 400, wantCode: "invalid_grant", wantDesc: "iss"},
		{name: "iss wrong", p: params(id, with(func(c jwt.MapClaims) { c["iss"] = other.ClientID() })), wantStatus: 400, wantCode: "invalid_grant", wantDesc: "iss"},
		{name: "sub wrong", p: params(id, with(func(c jwt.MapClaims) { c["sub"] = "someone" })), wantStatus: 400, wantCode: "invalid_grant", wantDesc: "sub"},
		{name: "sub not a string", p: params(id, with(func(c jwt.MapClaims) { c["sub"] = 151 })), wantStatus: 400, wantCode: "invalid_grant", wantDesc: "sub"},
		{name: "exp in the past", p: params(id, with(func(c jwt.MapClaims) {
			c["exp"] = now.Add(-time.Hour).Unix()
			c["iat"] = now.Add(-2 * time.Hour).Unix()
		})),
			wantStatus: 400, wantCode: "invalid_grant", wantDesc: "clock"},
		{name: "lifetime too long", p: params(id, with(func(c jwt.MapClaims) { c["exp"] = now.Add(2 * time.Hour).Unix() })),
			wantStatus: 400, wantCode: "invalid_grant", wantDesc: "lifetime"},
		{name: "aud of the wrong type", p: params(id, with(func(c jwt.MapClaims) { c["aud"] = 5 })), wantStatus: 400, wantCode: "invalid_grant", wantDesc: "aud"},
		{name: "jti not a string", p: params(id, with(func(c jwt.MapClaims) { c["jti"] = 5 })), wantStatus: 400, wantCode: "invalid_grant", wantDesc: "jti"},
		{name: "jti empty", p: params(id, with(func(c jwt.MapClaims) { c["jti"] = "" })), wantStatus: 400, wantCode: "invalid_grant", wantDesc: "jti"},
		{name: "jti too long", p: params(id, with(func(c jwt.MapClaims) { c["jti"] = strings.Repeat("x", 257) })), wantStatus: 400, wantCode: "invalid_grant", wantDesc: "jti"},
		{name: "unsupported content type", ct: "text/plain", body: "client_id=" + id, wantStatus: 400, wantCode: "invalid_request", wantDesc: "Content-Type"},
		{name: "no content type", ct: "-", body: "client_id=" + id, wantStatus: 400, wantCode: "invalid_request", wantDesc: "Content-Type"},
		{name: "repeated form parameter", ct: "application/x-www-form-urlencoded",
			body:       "client_id=" + id + "&client_id=" + id + "&grant_type=" + clearancetest.GrantTypeJWTBearer + "&assertion=" + good(),
			wantStatus: 400, wantCode: "invalid_request", wantDesc: "repeated"},
		{name: "JSON member of the wrong type", ct: "application/json", body: `{"client_id": 151, "grant_type": "x", "assertion": "y"}`,
			wantStatus: 400, wantCode: "invalid_request", wantDesc: "client_id must be a string"},
		{name: "malformed JSON", ct: "application/json", body: `{"client_id": `, wantStatus: 400, wantCode: "invalid_request", wantDesc: "JSON"},
		{name: "body too large", ct: "application/x-www-form-urlencoded", body: "assertion=" + strings.Repeat("A", clearancetest.MaxRequestBodyBytes),
			wantStatus: 413, wantCode: "invalid_request", wantDesc: "exceeds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var r tokenReply
			switch {
			case tc.body != "":
				ct := tc.ct
				if ct == "-" {
					ct = ""
				}
				r = postRaw(t, srv.Client(), srv.TokenEndpoint(), ct, []byte(tc.body))
			default:
				r = post(t, srv.Client(), srv.TokenEndpoint(), "form", tc.p)
			}
			g.Expect(r.Status).To(Equal(tc.wantStatus), string(r.Raw))
			g.Expect(r.str("error")).To(Equal(tc.wantCode))
			g.Expect(r.str("error_description")).To(ContainSubstring(tc.wantDesc))
			g.Expect(r.JSON).NotTo(HaveKey("access_token"))
			// The assertion is never echoed back.
			if a := tc.p["assertion"]; len(a) > 20 {
				g.Expect(string(r.Raw)).NotTo(ContainSubstring(a[len(a)-20:]))
			}
		})
	}

	t.Run("both encodings give the same code", func(t *testing.T) {
		for _, enc := range []string{"form", "json"} {
			r := post(t, srv.Client(), srv.TokenEndpoint(), enc, params(id, "garbage"))
			if r.str("error") != clearancetest.ErrInvalidGrant {
				t.Errorf("%s: error %q", enc, r.str("error"))
			}
		}
	})
	t.Run("GET is not allowed", func(t *testing.T) {
		status, body := do(t, srv.Client(), http.MethodGet, srv.TokenEndpoint(), "", "")
		if status != http.StatusMethodNotAllowed || !strings.Contains(string(body), "invalid_request") {
			t.Fatalf("status %d body %s", status, body)
		}
	})
}

func TestInvalidClientStatus401(t *testing.T) {
	srv := newServer(t, clearancetest.WithInvalidClientStatus(http.StatusUnauthorized))
	r := post(t, srv.Client(), srv.TokenEndpoint(), "form", params("1@nobody", "x"))
	if r.Status != http.StatusUnauthorized || r.str("error") != clearancetest.ErrInvalidClient {
		t.Fatalf("status %d: %s", r.Status, r.Raw)
	}
}

func TestReplayedJTIRejected(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	other := newClient(t, srv, 2)
	a, err := cf.SignAssertion(clearancetest.AssertionOptions{JTI: "once"})
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), a)).Status).To(Equal(200))
	r := post(t, srv.Client(), srv.TokenEndpoint(), "json", params(cf.ClientID(), a))
	g.Expect(r.Status).To(Equal(400))
	g.Expect(r.str("error")).To(Equal(clearancetest.ErrInvalidGrant))
	g.Expect(r.str("error_description")).To(ContainSubstring("replayed"))

	// The same jti from another client is a different assertion.
	b, err := other.SignAssertion(clearancetest.AssertionOptions{JTI: "once"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(post(t, srv.Client(), srv.TokenEndpoint(), "form", params(other.ClientID(), b)).Status).To(Equal(200))

	// Without jti the same assertion may be used again (the vendor samples send none).
	c, err := cf.SignAssertion(clearancetest.AssertionOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	for range 2 {
		g.Expect(post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), c)).Status).To(Equal(200))
	}
	// A rejected assertion does not burn its jti.
	srv.SetMaxAssertionLifetime(time.Minute)
	d, err := cf.SignAssertion(clearancetest.AssertionOptions{JTI: "later"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), d)).Status).To(Equal(400))
	srv.SetMaxAssertionLifetime(time.Hour)
	g.Expect(post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), d)).Status).To(Equal(200))
}

func TestReplayCacheIsBounded(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t, clearancetest.WithReplayCacheSize(2))
	cf := newClient(t, srv, 1)
	now := time.Now()
	var as []string
	for i := range 3 {
		// Increasing lifetimes: the first assertion expires first and is evicted first.
		a, err := cf.SignAssertion(clearancetest.AssertionOptions{Now: now, Lifetime: time.Duration(50+i) * time.Minute, JTI: clearancetest.NewJTI()})
		g.Expect(err).NotTo(HaveOccurred())
		as = append(as, a)
		g.Expect(post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), a)).Status).To(Equal(200))
	}
	g.Expect(post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), as[2])).Status).To(Equal(400))
	g.Expect(post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), as[0])).Status).To(Equal(200), "evicted when full")
}

func TestRevokedKeyRejected(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	g.Expect(request(t, srv, cf, "form").Status).To(Equal(200))

	g.Expect(srv.Revoke(cf.ClientID())).To(BeTrue())
	g.Expect(srv.Revoke("nobody@nowhere")).To(BeFalse())
	r := request(t, srv, cf, "form")
	g.Expect(r.Status).To(Equal(400))
	g.Expect(r.str("error")).To(Equal(clearancetest.ErrInvalidClient))
	g.Expect(r.str("error_description")).To(ContainSubstring("revoked"))

	// Trusting the key again reinstates the client.
	g.Expect(srv.Trust(cf.ClientID(), cf.PublicKey, cf.KeyID)).To(Succeed())
	g.Expect(request(t, srv, cf, "form").Status).To(Equal(200))
}

func TestTrustValidation(t *testing.T) {
	srv := newServer(t)
	pub := &testKey(t, 1).PublicKey
	for _, id := range []string{"", "151", "@tenant", "151@", "1@a@b"} {
		if err := srv.Trust(id, pub, ""); err == nil {
			t.Errorf("Trust(%q) succeeded", id)
		}
	}
	if err := srv.Trust("1@t", nil, ""); err == nil {
		t.Error("Trust with nil key succeeded")
	}
}

// TestTrustWithoutKid accepts any kid when the trusted key has none.
func TestTrustWithoutKid(t *testing.T) {
	srv := newServer(t)
	key := testKey(t, 3)
	if err := srv.Trust("42@acme", &key.PublicKey, ""); err != nil {
		t.Fatal(err)
	}
	a := sign(t, key, jwt.SigningMethodRS256, map[string]any{"kid": "anything"}, pythonClaims("42@acme", time.Now()))
	if r := post(t, srv.Client(), srv.TokenEndpoint(), "form", params("42@acme", a)); r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Raw)
	}
}

func get(t *testing.T, c *http.Client, u string) []byte {
	t.Helper()
	status, body := do(t, c, http.MethodGet, u, "", "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: status %d", u, status)
	}
	return body
}

// TestAccessTokenVerifiesAgainstJWKS fetches discovery and the JWKS over HTTP
// and verifies an issued token with go-jose, independently of golang-jwt.
func TestAccessTokenVerifiesAgainstJWKS(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t, clearancetest.WithTokenTTL(20*time.Minute))
	cf := newClient(t, srv, 1)
	r := request(t, srv, cf, "json")
	g.Expect(r.Status).To(Equal(200))
	g.Expect(r.JSON["expires_in"]).To(Equal(json.Number("1200")))

	var disc struct {
		Issuer        string   `json:"issuer"`
		TokenEndpoint string   `json:"token_endpoint"`
		JWKSURI       string   `json:"jwks_uri"`
		GrantTypes    []string `json:"grant_types_supported"`
		AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
	}
	g.Expect(json.Unmarshal(get(t, srv.Client(), srv.BaseURL()+"/.well-known/openid-configuration"), &disc)).To(Succeed())
	g.Expect(disc.Issuer).To(Equal(srv.BaseURL()))
	g.Expect(disc.TokenEndpoint).To(Equal(srv.BaseURL() + "/token"))
	g.Expect(disc.JWKSURI).To(Equal(srv.BaseURL() + "/.well-known/openid-configuration/jwks"))
	g.Expect(disc.GrantTypes).To(ConsistOf(clearancetest.GrantTypeJWTBearer))
	g.Expect(disc.AuthMethods).NotTo(BeEmpty())

	var set jose.JSONWebKeySet
	g.Expect(json.Unmarshal(get(t, srv.Client(), disc.JWKSURI), &set)).To(Succeed())
	g.Expect(set.Keys).To(HaveLen(1))
	g.Expect(set.Keys[0].IsPublic()).To(BeTrue())

	tok, err := josejwt.ParseSigned(r.str("access_token"), []jose.SignatureAlgorithm{jose.RS256})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Headers).To(HaveLen(1))
	kid := tok.Headers[0].KeyID
	g.Expect(kid).To(Equal(srv.SigningKeyID()))
	g.Expect(tok.Headers[0].ExtraHeaders[jose.HeaderType]).To(Equal("at+jwt"))
	keys := set.Key(kid)
	g.Expect(keys).To(HaveLen(1))

	var std josejwt.Claims
	var extra struct {
		ClientID string `json:"client_id"`
		TenantID string `json:"tenant_id"`
		Scope    string `json:"scope"`
	}
	g.Expect(tok.Claims(keys[0].Key, &std, &extra)).To(Succeed())
	g.Expect(std.ValidateWithLeeway(josejwt.Expected{
		Issuer: srv.BaseURL(), Subject: cf.ClientID(), AnyAudience: josejwt.Audience{clearancetest.DefaultAccessTokenAudience}, Time: time.Now(),
	}, 0)).To(Succeed())
	g.Expect(std.ID).NotTo(BeEmpty())
	g.Expect(std.NotBefore).NotTo(BeNil())
	g.Expect(std.Expiry.Time().Sub(std.IssuedAt.Time())).To(Equal(20 * time.Minute))
	g.Expect(extra.ClientID).To(Equal(cf.ClientID()))
	g.Expect(extra.TenantID).To(Equal(cf.TenantID))
	g.Expect(extra.Scope).To(Equal(clearancetest.DefaultScope))

	// Another token gets another jti.
	r2 := request(t, srv, cf, "form")
	tok2, err := josejwt.ParseSigned(r2.str("access_token"), []jose.SignatureAlgorithm{jose.RS256})
	g.Expect(err).NotTo(HaveOccurred())
	var std2 josejwt.Claims
	g.Expect(tok2.Claims(keys[0].Key, &std2)).To(Succeed())
	g.Expect(std2.ID).NotTo(Equal(std.ID))
	g.Expect(srv.Stats().JWKSRequests).To(Equal(int64(1)))
	g.Expect(srv.Stats().DiscoveryRequests).To(Equal(int64(1)))
	g.Expect(keys[0].Key).To(BeAssignableToTypeOf(&rsa.PublicKey{}))
}

func TestSetTokenTTL(t *testing.T) {
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	srv.SetTokenTTL(5 * time.Minute)
	r := request(t, srv, cf, "form")
	if r.JSON["expires_in"] != json.Number("300") {
		t.Fatalf("expires_in %v", r.JSON["expires_in"])
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(r.str("access_token"), claims, func(*jwt.Token) (any, error) { return srv.SigningPublicKey(), nil }); err != nil {
		t.Fatal(err)
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 300 {
		t.Fatalf("exp - iat = %v", exp-iat)
	}
}

func TestRequiredAudience(t *testing.T) {
	srv := newServer(t, clearancetest.WithRequiredAudience())
	custom := newServer(t, clearancetest.WithRequiredAudience("https://sts.example/connect/token", "clearance"))
	tests := []struct {
		name   string
		srv    *clearancetest.Server
		aud    any
		wantOK bool
	}{
		{"missing", srv, nil, false},
		{"token endpoint", srv, srv.TokenEndpoint(), true},
		{"base address", srv, srv.BaseURL(), true},
		{"array containing token endpoint", srv, []string{"x", srv.TokenEndpoint()}, true},
		{"other", srv, "https://elsewhere.example/token", false},
		{"custom accepted", custom, "clearance", true},
		{"custom: own token endpoint not accepted", custom, custom.TokenEndpoint(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cf := newClient(t, tc.srv, 1)
			c := pythonClaims(cf.ClientID(), time.Now())
			if tc.aud != nil {
				c["aud"] = tc.aud
			}
			r := post(t, tc.srv.Client(), tc.srv.TokenEndpoint(), "form", params(cf.ClientID(), sign(t, cf.PrivateKey, jwt.SigningMethodRS256, nil, c)))
			if tc.wantOK != (r.Status == 200) {
				t.Fatalf("status %d: %s", r.Status, r.Raw)
			}
			if !tc.wantOK && (r.str("error") != clearancetest.ErrInvalidGrant || !strings.Contains(r.str("error_description"), "aud")) {
				t.Fatalf("unexpected error: %s", r.Raw)
			}
		})
	}
	// Without the requirement an aud, even a foreign one, is ignored.
	plain := newServer(t)
	cf := newClient(t, plain, 1)
	a, _ := cf.SignAssertion(clearancetest.AssertionOptions{Audience: "https://elsewhere.example"})
	if r := post(t, plain.Client(), plain.TokenEndpoint(), "form", params(cf.ClientID(), a)); r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
}

// TestClockControl moves the emulator's clock instead of sleeping.
func TestClockControl(t *testing.T) {
	g := NewWithT(t)
	clk := fakeclock.NewFakeClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	srv := newServer(t, clearancetest.WithClock(clk))
	cf := newClient(t, srv, 1)
	a, err := cf.SignAssertion(clearancetest.AssertionOptions{Now: clk.Now()})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), a)).Status).To(Equal(200))

	clk.Step(time.Hour + time.Minute)
	r := post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), a))
	g.Expect(r.str("error")).To(Equal(clearancetest.ErrInvalidGrant))
	g.Expect(r.str("error_description")).To(ContainSubstring("exp is in the past"))

	// The emulator running 10 minutes behind the client sees nbf in the future.
	clk.SetTime(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	srv.SetClockOffset(-10 * time.Minute)
	g.Expect(srv.Now()).To(Equal(clk.Now().Add(-10 * time.Minute)))
	b, err := cf.SignAssertion(clearancetest.AssertionOptions{Now: clk.Now()})
	g.Expect(err).NotTo(HaveOccurred())
	r = post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), b))
	g.Expect(r.str("error_description")).To(And(ContainSubstring("nbf is in the future"), ContainSubstring("clock")))

	// Issued tokens carry the emulator's (offset) clock.
	srv.SetClockOffset(0)
	r = post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), b))
	g.Expect(r.Status).To(Equal(200))
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(r.str("access_token"), claims, func(*jwt.Token) (any, error) { return srv.SigningPublicKey(), nil },
		jwt.WithTimeFunc(clk.Now))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claims["iat"]).To(BeNumerically("==", clk.Now().Unix()))
}

func TestClockOffsetOption(t *testing.T) {
	srv := newServer(t, clearancetest.WithClockOffset(2*time.Hour))
	cf := newClient(t, srv, 1)
	a, err := cf.SignAssertion(clearancetest.AssertionOptions{}) // the client's real clock
	if err != nil {
		t.Fatal(err)
	}
	r := post(t, srv.Client(), srv.TokenEndpoint(), "form", params(cf.ClientID(), a))
	if r.str("error") != clearancetest.ErrInvalidGrant || !strings.Contains(r.str("error_description"), "check the client's clock") {
		t.Fatalf("got %s", r.Raw)
	}
}

func TestNotFoundAndMetadataMethods(t *testing.T) {
	srv := newServer(t)
	if status, _ := do(t, srv.Client(), http.MethodGet, srv.URL()+"/connect/authorize", "", ""); status != http.StatusNotFound {
		t.Errorf("unknown path: status %d", status)
	}
	if status, _ := do(t, srv.Client(), http.MethodPost, srv.JWKSURL(), "application/json", "{}"); status != http.StatusMethodNotAllowed {
		t.Errorf("POST jwks: status %d", status)
	}
	ctx := context.Background()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, srv.JWKSURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD jwks: status %d", resp.StatusCode)
	}
}

func TestNewServerRejectsNonLoopback(t *testing.T) {
	for _, addr := range []string{":0", "0.0.0.0:0", "192.0.2.1:0", "example.com:80", "nonsense"} {
		if s, err := clearancetest.NewServer(clearancetest.WithAddress(addr), clearancetest.WithSigningKey(testKey(t, 0))); err == nil {
			s.Close()
			t.Errorf("NewServer(%q) succeeded", addr)
		}
	}
}

func TestVerifyAccessToken(t *testing.T) {
	srv := newServer(t)
	other := newServer(t)
	cf := newClient(t, srv, 1)
	tok := request(t, srv, cf, "form").str("access_token")

	at, err := srv.VerifyAccessToken(tok)
	if err != nil {
		t.Fatalf("a token the emulator issued: %v", err)
	}
	if at.ClientID != cf.ClientID() || at.TenantID != srv.Tenant() {
		t.Fatalf("client %q tenant %q, want %q %q", at.ClientID, at.TenantID, cf.ClientID(), srv.Tenant())
	}
	if got := at.ExpiresAt.Sub(at.IssuedAt); got != srv.TokenTTL() {
		t.Fatalf("lifetime %v, want %v", got, srv.TokenTTL())
	}
	if _, err := other.VerifyAccessToken(tok); err == nil {
		t.Fatal("another emulator accepted the token")
	}
	if _, err := srv.VerifyAccessToken(tok[:len(tok)-2]); err == nil {
		t.Fatal("a truncated signature was accepted")
	}
	srv.SetClockOffset(srv.TokenTTL() + time.Second)
	if _, err := srv.VerifyAccessToken(tok); err == nil {
		t.Fatal("an expired token was accepted")
	} else if strings.Contains(err.Error(), tok) {
		t.Fatal("the error contains the token")
	}
}
