package clearance

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	testingclock "k8s.io/utils/clock/testing"
)

// secretAccessToken is what the test STS issues in scripted replies; it must
// never appear in an error.
const secretAccessToken = "SECRET-ACCESS-TOKEN-5f1e2d3c4b5a69788796a5b4c3d2e1f0"

// fixture bundles a fake clock, a jti registry shared by all test STSs, and a
// recording transport that sees every HTTP attempt the client makes.
type fixture struct {
	clock     *testingclock.FakeClock
	jtis      *jtiRegistry
	transport *recordingTransport
	client    *Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		clock:     testingclock.NewFakeClock(testNow),
		jtis:      newJTIRegistry(),
		transport: &recordingTransport{base: NewHTTPClient(loopbackEgress).Transport},
	}
	f.client = NewClient(WithClock(f.clock), WithHTTPClient(&http.Client{Transport: f.transport}))
	return f
}

func (f *fixture) sts(t *testing.T) *testSTS {
	t.Helper()
	return newTestSTS(t, &testKey(t).PublicKey, f.clock.Now, f.jtis)
}

// recordingTransport records the URL and assertion of every attempt.
type recordingTransport struct {
	base http.RoundTripper

	mu         sync.Mutex
	urls       []string
	assertions []string
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		return nil, err
	}
	var assertion string
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var m map[string]string
		_ = json.Unmarshal(body, &m)
		assertion = m["assertion"]
	} else {
		v, _ := url.ParseQuery(string(body))
		assertion = v.Get("assertion")
	}
	rt.mu.Lock()
	rt.urls = append(rt.urls, r.URL.String())
	rt.assertions = append(rt.assertions, assertion)
	rt.mu.Unlock()
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	return rt.base.RoundTrip(r2)
}

func (rt *recordingTransport) attempts() (urls, assertions []string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]string(nil), rt.urls...), append([]string(nil), rt.assertions...)
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestMintSuccess(t *testing.T) {
	for _, enc := range []Encoding{"", EncodingForm, EncodingJSON} {
		for _, aud := range []string{"", "https://clearance-a-sts.example/connect/token"} {
			for _, kid := range []string{testKID, ""} {
				t.Run(fmt.Sprintf("encoding=%q/aud=%t/kid=%t", enc, aud != "", kid != ""), func(t *testing.T) {
					g := NewWithT(t)
					f := newFixture(t)
					sts := f.sts(t)
					sts.kid = kid
					sts.wantAudience = aud
					sts.wantEncoding = enc
					if enc == "" {
						sts.wantEncoding = EncodingForm
					}
					conn := mustConnection(t, func(_, jwk map[string]any) { jwk["kid"] = kid }, sts.base()+"/")

					tok, err := f.client.Mint(context.Background(), MintRequest{Connection: conn, Audience: aud, Encoding: enc})
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(tok.AccessToken).To(Equal("opaque-access-token-0123456789"))
					g.Expect(tok.TokenType).To(Equal("Bearer"))
					g.Expect(tok.IssuedAt).To(Equal(testNow))
					g.Expect(tok.ExpiresAt).To(Equal(testNow.Add(time.Hour)))
					g.Expect(tok.Endpoint).To(Equal(sts.endpoint()))
					g.Expect(tok.KeyID).To(Equal(kid))

					recs := sts.recorded()
					g.Expect(recs).To(HaveLen(1))
					g.Expect(recs[0].ClientID).To(Equal("151@tenant123"))
					g.Expect(recs[0].KID).To(Equal(kid))
				})
			}
		}
	}
}

func TestMintFreshAssertionPerAttempt(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // connection refused
	failing := f.sts(t)
	failing.script(stsReply{status: http.StatusServiceUnavailable, body: "<html>maintenance</html>"})
	good := f.sts(t)
	conn := mustConnection(t, nil, dead.URL+"/connect", failing.base(), good.base())

	for i := range 3 {
		tok, err := f.client.Mint(context.Background(), MintRequest{Connection: conn})
		g.Expect(err).NotTo(HaveOccurred())
		if i == 0 {
			g.Expect(tok.Endpoint).To(Equal(good.endpoint()), "the token comes from the third address")
		} else {
			g.Expect(tok.Endpoint).To(Equal(failing.endpoint()), "the second address has recovered")
		}
	}
	urls, assertions := f.transport.attempts()
	g.Expect(urls).To(Equal([]string{
		dead.URL + "/connect/token", failing.endpoint(), good.endpoint(), // failover in file order
		dead.URL + "/connect/token", failing.endpoint(),
		dead.URL + "/connect/token", failing.endpoint(),
	}))
	seen := map[string]bool{}
	for _, a := range assertions {
		g.Expect(seen).NotTo(HaveKey(a), "assertions are never reused")
		seen[a] = true
	}
	g.Expect(f.jtis.count()).To(Equal(4), "every request reaching an STS had a fresh jti")
}

func TestMintExpiry(t *testing.T) {
	now := testNow
	tests := []struct {
		name    string
		reply   func(t *testing.T) stsReply
		want    time.Time
		wantErr string
		hint    string
	}{
		{name: "expires_in number", reply: func(*testing.T) stsReply { return tokenReply(`"opaque"`, 3600) }, want: now.Add(time.Hour)},
		{name: "expires_in numeric string", reply: func(*testing.T) stsReply { return tokenReply(`"opaque"`, "1800") }, want: now.Add(30 * time.Minute)},
		{name: "expires_in fractional", reply: func(*testing.T) stsReply { return tokenReply(`"opaque"`, 59.5) }, want: now.Add(59500 * time.Millisecond)},
		{name: "expires_in capped by the token's exp", reply: func(t *testing.T) stsReply {
			return tokenReply(`"`+accessJWT(t, now.Add(30*time.Minute))+`"`, 3600)
		}, want: now.Add(30 * time.Minute).Truncate(time.Second)},
		{name: "expires_in shorter than the token's exp", reply: func(t *testing.T) stsReply {
			return tokenReply(`"`+accessJWT(t, now.Add(2*time.Hour))+`"`, 600)
		}, want: now.Add(10 * time.Minute)},
		{name: "no expires_in: token's exp", reply: func(t *testing.T) stsReply {
			return tokenReply(`"`+accessJWT(t, now.Add(20*time.Minute))+`"`, nil)
		}, want: now.Add(20 * time.Minute).Truncate(time.Second)},
		{name: "null expires_in: token's exp", reply: func(t *testing.T) stsReply {
			r := tokenReply(`"`+accessJWT(t, now.Add(20*time.Minute))+`"`, nil)
			r.body = strings.Replace(r.body, `"token_type"`, `"expires_in":null,"token_type"`, 1)
			return r
		}, want: now.Add(20 * time.Minute).Truncate(time.Second)},
		{name: "token with an XML-DSig alg still yields its exp", reply: func(*testing.T) stsReply {
			return tokenReply(`"`+unsignedJWT(`{"alg":"http://www.w3.org/2001/04/xmldsig-more#rsa-sha512","typ":"JWT"}`, fmt.Sprintf(`{"exp":%d}`, now.Add(15*time.Minute).Unix()))+`"`, nil)
		}, want: now.Add(15 * time.Minute).Truncate(time.Second)},
		{name: "neither expires_in nor exp", reply: func(*testing.T) stsReply { return tokenReply(`"opaque"`, nil) },
			wantErr: "expires_in is missing and the access token carries no exp claim", hint: HintInvalidResponse},
		{name: "token already expired", reply: func(t *testing.T) stsReply {
			return tokenReply(`"`+accessJWT(t, now.Add(-time.Minute))+`"`, 3600)
		}, wantErr: "already expired", hint: HintExpiredToken},
		{name: "exp implausibly far", reply: func(t *testing.T) stsReply {
			return tokenReply(`"`+accessJWT(t, now.Add(5*365*24*time.Hour))+`"`, nil)
		}, wantErr: "implausibly far", hint: HintInvalidResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			f := newFixture(t)
			sts := f.sts(t)
			reply := tt.reply(t)
			sts.script(reply)
			tok, err := f.client.Mint(context.Background(), MintRequest{Connection: mustConnection(t, nil, sts.base())})
			if tt.wantErr != "" {
				var te *TransientError
				g.Expect(errors.As(err, &te)).To(BeTrue(), "got %v", err)
				g.Expect(te.StatusCode).To(Equal(http.StatusOK))
				g.Expect(te.Reason).To(ContainSubstring(tt.wantErr))
				g.Expect(Hint(err)).To(Equal(tt.hint))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(tok.IssuedAt).To(Equal(now))
			g.Expect(tok.ExpiresAt).To(BeTemporally("==", tt.want))
		})
	}
}

// unsignedJWT assembles a compact JWS with a dummy signature.
func unsignedJWT(header, claims string) string {
	enc := func(s string) string { return b64bytes([]byte(s)) }
	return enc(header) + "." + enc(claims) + ".c2ln"
}

func b64bytes(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestMintErrorClasses(t *testing.T) {
	tokenJSON := `"` + secretAccessToken + `"`
	longDescription := "line one\nline\x00two\t" + strings.Repeat("é", 300)
	tests := []struct {
		name  string
		reply stsReply
		check func(g Gomega, err error, f *fixture)
		hint  string
	}{
		{name: "400 invalid_client", reply: errorReply(400, "invalid_client", "Unknown client"), hint: HintRejectedKey,
			check: wantRejected(400, "invalid_client", "Unknown client")},
		{name: "401 unauthorized_client", reply: errorReply(401, "unauthorized_client", ""), hint: HintRejectedKey,
			check: wantRejected(401, "unauthorized_client", "")},
		{name: "400 invalid_grant clock skew", reply: errorReply(400, "invalid_grant", "IDX10223: Lifetime validation failed. The token is expired."), hint: HintClockSkew,
			check: wantRejected(400, "invalid_grant", "IDX10223: Lifetime validation failed. The token is expired.")},
		{name: "400 invalid_client not yet valid", reply: errorReply(400, "invalid_client", "The token is not yet valid (nbf)"), hint: HintClockSkew,
			check: wantRejected(400, "invalid_client", "The token is not yet valid (nbf)")},
		{name: "400 invalid_grant signature", reply: errorReply(400, "invalid_grant", "Signature validation failed"), hint: HintInvalidGrant,
			check: wantRejected(400, "invalid_grant", "Signature validation failed")},
		{name: "400 unsupported_grant_type", reply: errorReply(400, "unsupported_grant_type", ""), hint: HintUnsupportedType,
			check: wantRejected(400, "unsupported_grant_type", "")},
		{name: "400 invalid_request", reply: errorReply(400, "invalid_request", "client_id missing"), hint: HintInvalidRequest,
			check: wantRejected(400, "invalid_request", "client_id missing")},
		{name: "403 HTML from a WAF", reply: stsReply{status: 403, body: "<html>" + secretAccessToken + "</html>"}, hint: HintRefused,
			check: wantRejected(403, "", "")},
		{name: "400 with an unusual code", reply: errorReply(400, "invalid_scope", "no"), hint: HintRefused,
			check: wantRejected(400, "invalid_scope", "no")},
		{name: "400 with a bogus code", reply: errorReply(400, "bad\"code\n"+secretAccessToken, "x"), hint: HintRefused,
			check: wantRejected(400, "", "")},
		{name: "400 description echoing the assertion", reply: stsReply{echo: true}, hint: HintInvalidGrant,
			check: func(g Gomega, err error, _ *fixture) {
				var re *RejectedError
				g.Expect(errors.As(err, &re)).To(BeTrue())
				g.Expect(re.Description).To(Equal("assertion [redacted] could not be validated"))
			}},
		{name: "400 description sanitised and capped", reply: errorReply(400, "invalid_grant", longDescription), hint: HintInvalidGrant,
			check: func(g Gomega, err error, _ *fixture) {
				var re *RejectedError
				g.Expect(errors.As(err, &re)).To(BeTrue())
				g.Expect(re.Description).To(HavePrefix("line one line two éé"))
				g.Expect(re.Description).To(HaveSuffix("..."))
				g.Expect([]rune(re.Description)).To(HaveLen(maxDescriptionLen + 3))
			}},
		{name: "400 temporarily_unavailable", reply: errorReply(400, "temporarily_unavailable", "busy"), hint: "",
			check: wantTransient(400, "STS reported temporarily_unavailable")},
		{name: "429 delta seconds", reply: stsReply{status: 429, header: map[string]string{"Retry-After": "120"}}, hint: HintRateLimited,
			check: wantRateLimited(2 * time.Minute)},
		{name: "429 HTTP date", reply: stsReply{status: 429, header: map[string]string{"Retry-After": testNow.Add(90 * time.Second).UTC().Format(http.TimeFormat)}}, hint: HintRateLimited,
			check: wantRateLimited(testNow.Add(90 * time.Second).Truncate(time.Second).Sub(testNow))},
		{name: "429 without Retry-After", reply: stsReply{status: 429, body: tokenJSON}, hint: HintRateLimited,
			check: wantRateLimited(0)},
		{name: "500 with a token in the body", reply: stsReply{status: 500, body: `{"access_token":` + tokenJSON + `}`}, hint: HintServerError,
			check: wantTransient(500, "STS server error")},
		{name: "503 server_error", reply: errorReply(503, "server_error", secretAccessToken), hint: HintServerError,
			check: wantTransient(503, "STS server error (server_error)")},
		{name: "404", reply: stsReply{status: 404, body: "not found"}, hint: HintWrongAddress,
			check: wantTransient(404, "token endpoint not found")},
		{name: "408", reply: stsReply{status: 408}, hint: "",
			check: wantTransient(408, "unexpected HTTP status 408")},
		{name: "302 redirect is not followed", reply: stsReply{status: 302, header: map[string]string{"Location": "http://127.0.0.1:1/steal"}}, hint: HintWrongAddress,
			check: wantTransient(302, "redirects are not followed")},
		{name: "200 HTML", reply: stsReply{status: 200, body: "<html><body>Sign in " + secretAccessToken + "</body></html>"}, hint: HintInvalidResponse,
			check: wantTransient(200, "invalid token response: body is not valid JSON (syntax error at byte offset 1)")},
		{name: "200 missing access_token", reply: tokenReply(`null`, 3600), hint: HintInvalidResponse,
			check: wantTransient(200, "access_token is missing")},
		{name: "200 access_token with spaces", reply: tokenReply(`"`+secretAccessToken+` x"`, 3600), hint: HintInvalidResponse,
			check: wantTransient(200, "access_token contains characters")},
		{name: "200 token_type mac", reply: stsReply{status: 200, body: `{"access_token":` + tokenJSON + `,"token_type":"mac","expires_in":3600}`}, hint: HintInvalidResponse,
			check: wantTransient(200, "token_type is not Bearer")},
		{name: "200 token_type missing", reply: stsReply{status: 200, body: `{"access_token":` + tokenJSON + `,"expires_in":3600}`}, hint: HintInvalidResponse,
			check: wantTransient(200, "token_type is missing")},
		{name: "200 expires_in zero", reply: tokenReply(tokenJSON, 0), hint: HintInvalidResponse,
			check: wantTransient(200, "expires_in is not positive")},
		{name: "200 expires_in negative", reply: tokenReply(tokenJSON, -60), hint: HintInvalidResponse,
			check: wantTransient(200, "expires_in is not positive")},
		{name: "200 expires_in text", reply: tokenReply(tokenJSON, "soon"), hint: HintInvalidResponse,
			check: wantTransient(200, "expires_in is not a number")},
		{name: "200 expires_in absurd", reply: tokenReply(tokenJSON, 1e10), hint: HintInvalidResponse,
			check: wantTransient(200, "expires_in is implausibly large")},
		{name: "200 body over 1 MiB", reply: tokenReply(`"`+strings.Repeat("a", maxResponseBody)+`"`, 3600), hint: HintInvalidResponse,
			check: wantTransient(200, "body larger than 1 MiB")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			f := newFixture(t)
			sts := f.sts(t)
			sts.script(tt.reply)
			_, err := f.client.Mint(context.Background(), MintRequest{Connection: mustConnection(t, nil, sts.base())})
			g.Expect(err).To(HaveOccurred())
			tt.check(g, err, f)
			g.Expect(Hint(err)).To(Equal(tt.hint))
			g.Expect(err.Error()).To(ContainSubstring(sts.endpoint()))
			_, assertions := f.transport.attempts()
			assertNoSecrets(t, err, append(append(secretsOf(testKey(t)), assertions...), secretAccessToken)...)
		})
	}
}

func wantRejected(status int, code, description string) func(Gomega, error, *fixture) {
	return func(g Gomega, err error, _ *fixture) {
		var re *RejectedError
		g.Expect(errors.As(err, &re)).To(BeTrue(), "got %T %v", err, err)
		g.Expect(re.StatusCode).To(Equal(status))
		g.Expect(re.Code).To(Equal(code))
		g.Expect(re.Description).To(Equal(description))
	}
}

func wantRateLimited(retryAfter time.Duration) func(Gomega, error, *fixture) {
	return func(g Gomega, err error, _ *fixture) {
		var rl *RateLimitedError
		g.Expect(errors.As(err, &rl)).To(BeTrue(), "got %T %v", err, err)
		g.Expect(rl.RetryAfter).To(Equal(retryAfter))
	}
}

func wantTransient(status int, reason string) func(Gomega, error, *fixture) {
	return func(g Gomega, err error, _ *fixture) {
		var te *TransientError
		g.Expect(errors.As(err, &te)).To(BeTrue(), "got %T %v", err, err)
		g.Expect(te.StatusCode).To(Equal(status))
		g.Expect(te.Reason).To(ContainSubstring(reason))
	}
}

func TestMintStopsOnRejectionAndRateLimit(t *testing.T) {
	for _, reply := range []stsReply{
		errorReply(401, "invalid_client", ""),
		{status: 429, header: map[string]string{"Retry-After": "7"}},
	} {
		t.Run(strconv.Itoa(reply.status), func(t *testing.T) {
			g := NewWithT(t)
			f := newFixture(t)
			first, second := f.sts(t), f.sts(t)
			first.script(reply)
			_, err := f.client.Mint(context.Background(), MintRequest{Connection: mustConnection(t, nil, first.base(), second.base())})
			g.Expect(err).To(HaveOccurred())
			var te *TransientError
			g.Expect(errors.As(err, &te)).To(BeFalse())
			g.Expect(second.recorded()).To(BeEmpty(), "no failover after %d", reply.status)
		})
	}
}

func TestMintFailoverOnInvalidBody(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	first, second := f.sts(t), f.sts(t)
	first.script(stsReply{status: 200, body: "<html>captive portal</html>"})
	tok, err := f.client.Mint(context.Background(), MintRequest{Connection: mustConnection(t, nil, first.base(), second.base()), Encoding: EncodingJSON})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Endpoint).To(Equal(second.endpoint()))
}

func TestMintAllAddressesFail(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	a, b := f.sts(t), f.sts(t)
	a.script(stsReply{status: 500})
	b.script(stsReply{status: 404})
	_, err := f.client.Mint(context.Background(), MintRequest{Connection: mustConnection(t, nil, a.base(), b.base())})
	var te *TransientError
	g.Expect(errors.As(err, &te)).To(BeTrue())
	g.Expect(te.Endpoint).To(Equal(b.endpoint()), "the last attempt is reported")
	g.Expect(te.StatusCode).To(Equal(404))
	g.Expect(te.Reason).To(Equal(fmt.Sprintf("all 2 STS addresses failed: %s: HTTP 500: STS server error; %s: HTTP 404: token endpoint not found at this address",
		a.endpoint(), b.endpoint())))
	g.Expect(Hint(err)).To(Equal(HintWrongAddress))
}

func TestMintCanceledDuringFailover(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		cancel() // the caller gives up while the first address is failing
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer first.Close()
	second := f.sts(t)
	_, err := f.client.Mint(ctx, MintRequest{Connection: mustConnection(t, nil, first.URL+"/connect", second.base())})
	var te *TransientError
	g.Expect(errors.As(err, &te)).To(BeTrue(), "got %v", err)
	g.Expect(errors.Is(err, context.Canceled)).To(BeTrue())
	g.Expect(te.Reason).To(ContainSubstring("canceled"))
	g.Expect(Hint(err)).To(BeEmpty())
	g.Expect(second.recorded()).To(BeEmpty(), "no further attempts once the caller has given up")
}

func TestMintNetworkErrors(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	tests := []struct {
		name      string
		transport http.RoundTripper
		base      string
		opts      []Option
		ctx       func() context.Context
		reason    string
		detail    string
		hint      string
		is        error
		timeout   bool
	}{
		{name: "connection refused", base: dead.URL, opts: []Option{WithEgress(loopbackEgress)}, reason: "unreachable", detail: "connection refused", hint: HintUnreachable},
		{name: "DNS", transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
			return nil, &net.DNSError{Err: "no such host", Name: "clearance-a-sts.example", IsNotFound: true}
		}), reason: "unreachable", detail: "DNS lookup failed: no such host", hint: HintUnreachable},
		{name: "attempt timeout", transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			<-r.Context().Done()
			return nil, r.Context().Err()
		}), opts: []Option{WithAttemptTimeout(time.Millisecond)}, reason: "timed out", detail: "no response within 1ms", hint: HintTimeout, is: context.DeadlineExceeded, timeout: true},
		{name: "caller canceled", transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			panic("must not be called")
		}), ctx: func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, reason: "request canceled", hint: "", is: context.Canceled},
		{name: "body read error", transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(io.MultiReader(strings.NewReader(`{"access_token":"`), errReader{}))}, nil
		}), reason: "unreachable", detail: "reading the response: connection closed by the server", hint: HintUnreachable},
		{name: "other transport error is sanitised", transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return nil, fmt.Errorf("malformed HTTP response %q", "HTTP/1.1 \x00 "+secretAccessToken)
		}), reason: "unreachable", detail: "connection failed: malformed HTTP response", hint: HintUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			opts := tt.opts
			if tt.transport != nil {
				opts = append(opts, WithHTTPClient(&http.Client{Transport: tt.transport}))
			}
			c := NewClient(append([]Option{WithClock(testingclock.NewFakeClock(testNow))}, opts...)...)
			base := tt.base
			if base == "" {
				base = "http://clearance-a-sts.example"
			}
			ctx := context.Background()
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			_, err := c.Mint(ctx, MintRequest{Connection: mustConnection(t, nil, base+"/connect")})
			var te *TransientError
			g.Expect(errors.As(err, &te)).To(BeTrue(), "got %T %v", err, err)
			g.Expect(te.Endpoint).To(Equal(base + "/connect/token"))
			g.Expect(te.Reason).To(Equal(tt.reason))
			g.Expect(Detail(err)).To(HavePrefix(tt.detail))
			if tt.detail != "" {
				g.Expect(err.Error()).NotTo(ContainSubstring(tt.detail), "the detail is for the manager's log only")
			}
			g.Expect(Hint(err)).To(Equal(tt.hint))
			g.Expect(te.Timeout()).To(Equal(tt.timeout))
			if tt.is != nil {
				g.Expect(errors.Is(err, tt.is)).To(BeTrue())
			}
			assertNoSecrets(t, err, append(secretsOf(testKey(t)), secretAccessToken)...)
		})
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestMintTLSVerification(t *testing.T) {
	g := NewWithT(t)
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshake is expected
	srv.StartTLS()
	defer srv.Close()
	c := NewClient(WithEgress(loopbackEgress)) // verification on, the test server's certificate is not trusted
	_, err := c.Mint(context.Background(), MintRequest{Connection: mustConnection(t, nil, srv.URL+"/connect")})
	var te *TransientError
	g.Expect(errors.As(err, &te)).To(BeTrue(), "got %v", err)
	g.Expect(te.Reason).To(Equal("TLS failure"))
	g.Expect(te.Detail).To(ContainSubstring("certificate verification failed"))
	g.Expect(err.Error()).NotTo(Or(ContainSubstring("x509"), ContainSubstring("certificate")), "no certificate details for the tenant")
	g.Expect(Hint(err)).To(Equal(HintUnreachable))
}

func TestMintInvalidArguments(t *testing.T) {
	g := NewWithT(t)
	c := NewClient()
	_, err := c.Mint(context.Background(), MintRequest{})
	g.Expect(err).To(MatchError(ContainSubstring("Connection with a private key is required")))
	_, err = c.Mint(context.Background(), MintRequest{Connection: mustConnection(t, nil), Encoding: "XML"})
	g.Expect(err).To(MatchError(ContainSubstring(`unsupported MintRequest.Encoding "XML"`)))
	conn := mustConnection(t, nil)
	conn.STSBaseAddresses = nil
	_, err = c.Mint(context.Background(), MintRequest{Connection: conn})
	var cfErr *ConnectionFileError
	g.Expect(errors.As(err, &cfErr)).To(BeTrue())
}

func TestTokenFormattingRedacts(t *testing.T) {
	g := NewWithT(t)
	tok := &Token{AccessToken: secretAccessToken, TokenType: "Bearer", Endpoint: "https://sts.example/connect/token", ExpiresAt: testNow, IssuedAt: testNow}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		s := fmt.Sprintf(format, tok)
		g.Expect(s).NotTo(ContainSubstring(secretAccessToken), format)
		g.Expect(s).To(ContainSubstring("redacted"), format)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"  30 ", 30 * time.Second},
		{"120", 2 * time.Minute},
		{"86400", 24 * time.Hour},
		{"86401", 24 * time.Hour},
		{"99999999999999999999999", 24 * time.Hour},
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(90 * time.Second).Format(time.RFC850), 90 * time.Second},
		{now.Add(90 * time.Second).Format(time.ANSIC), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{now.Add(72 * time.Hour).Format(http.TimeFormat), 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := parseRetryAfter(tt.in, now); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestNewHTTPClient(t *testing.T) {
	g := NewWithT(t)
	a := NewHTTPClient(EgressOptions{})
	tr, ok := a.Transport.(*http.Transport)
	g.Expect(ok).To(BeTrue())
	g.Expect(tr).NotTo(BeIdenticalTo(http.DefaultTransport))
	g.Expect(tr.MaxIdleConnsPerHost).To(Equal(64))
	g.Expect(tr.DisableKeepAlives).To(BeFalse())
	g.Expect(tr.TLSClientConfig.InsecureSkipVerify).To(BeFalse())
	g.Expect(tr.TLSClientConfig.MinVersion).To(BeNumerically(">=", tls.VersionTLS12))
	g.Expect(tr.TLSHandshakeTimeout).To(BeNumerically(">", 0))
	g.Expect(a.CheckRedirect).NotTo(BeNil())
	g.Expect(a.Timeout).To(BeNumerically(">", DefaultAttemptTimeout))
}

// loopbackEgress lets tests reach their STS on loopback over http.
var loopbackEgress = EgressOptions{Policy: DestinationPolicy{AllowHTTP: true, AllowedPrefixes: []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
}}}

func TestTokenEndpoint(t *testing.T) {
	g := NewWithT(t)
	g.Expect(TokenEndpoint("https://sts.example/connect")).To(Equal("https://sts.example/connect/token"))
	g.Expect(TokenEndpoint("https://sts.example/connect//")).To(Equal("https://sts.example/connect/token"))
}
