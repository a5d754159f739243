package clearancetest_test

// Interoperability of the emulator with the operator's STS client. The
// emulator itself never imports package clearance; only this test does.

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"

	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

func clientConn(t *testing.T, data []byte) *clearance.ConnectionFile {
	t.Helper()
	conn, err := clearance.ParseConnectionFile(data)
	if err != nil {
		t.Fatalf("clearance.ParseConnectionFile: %v", err)
	}
	return conn
}

func mintCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestInteropEncodings(t *testing.T) {
	srv := newServer(t, clearancetest.WithTokenTTL(15*time.Minute))
	cf := newClient(t, srv, 1)
	conn := clientConn(t, cf.Data)
	c := clearance.NewClient(clearance.WithHTTPClient(srv.Client()))
	for _, tc := range []struct {
		name string
		enc  clearance.Encoding
		want string
	}{{"form", clearance.EncodingForm, "form"}, {"json", clearance.EncodingJSON, "json"}, {"default", "", "form"}} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			tok, err := c.Mint(mintCtx(t), clearance.MintRequest{Connection: conn, Encoding: tc.enc})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(tok.TokenType).To(Equal("Bearer"))
			g.Expect(tok.Endpoint).To(Equal(srv.TokenEndpoint()))
			g.Expect(tok.KeyID).To(Equal(cf.KeyID))
			g.Expect(tok.ExpiresAt.Sub(tok.IssuedAt)).To(BeNumerically("~", 15*time.Minute, 2*time.Second))

			parsed, err := jwt.Parse(tok.AccessToken, func(*jwt.Token) (any, error) { return srv.SigningPublicKey(), nil },
				jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(srv.BaseURL()), jwt.WithSubject(cf.ClientID()))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(parsed.Valid).To(BeTrue())

			reqs := srv.Requests()
			last := reqs[len(reqs)-1]
			g.Expect(last.Encoding).To(Equal(tc.want))
			g.Expect(last.Outcome).To(Equal(clearancetest.OutcomeSuccess))
			g.Expect(last.Issuer).To(Equal(cf.ClientID()))
		})
	}
	// Every attempt uses a fresh assertion: jtis (if any) never repeat.
	seen := map[string]bool{}
	for _, r := range srv.Requests() {
		if r.JTI != "" {
			if seen[r.JTI] {
				t.Errorf("jti %q reused", r.JTI)
			}
			seen[r.JTI] = true
		}
	}
}

// TestInteropFailover stops the first STS address; the client fails over to
// the second.
func TestInteropFailover(t *testing.T) {
	g := NewWithT(t)
	first := newServer(t)
	second := newServer(t)
	cf := newClient(t, second, 1, clearancetest.WithSTSAddresses(first.BaseURL(), second.BaseURL()))
	g.Expect(first.Trust(cf.ClientID(), cf.PublicKey, cf.KeyID)).To(Succeed())
	conn := clientConn(t, cf.Data)
	c := clearance.NewClient(clearance.WithEgress(testutil.LoopbackEgress), clearance.WithAttemptTimeout(5*time.Second))

	g.Expect(first.StopListening()).To(Succeed())
	tok, err := c.Mint(mintCtx(t), clearance.MintRequest{Connection: conn})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Endpoint).To(Equal(second.TokenEndpoint()))
	g.Expect(second.Stats().Outcome(clearancetest.OutcomeSuccess)).To(Equal(int64(1)))

	// Back on the same address, the first one serves again.
	g.Expect(first.Resume()).To(Succeed())
	tok, err = c.Mint(mintCtx(t), clearance.MintRequest{Connection: conn, Encoding: clearance.EncodingJSON})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Endpoint).To(Equal(first.TokenEndpoint()))

	// A 503 on the first address also fails over.
	g.Expect(first.InjectFault(clearancetest.FaultServerError(http.StatusServiceUnavailable).Times(1))).To(Succeed())
	tok, err = c.Mint(mintCtx(t), clearance.MintRequest{Connection: conn})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Endpoint).To(Equal(second.TokenEndpoint()))

	// Both down: a TransientError naming both attempts.
	g.Expect(first.StopListening()).To(Succeed())
	g.Expect(second.StopListening()).To(Succeed())
	_, err = c.Mint(mintCtx(t), clearance.MintRequest{Connection: conn})
	var te *clearance.TransientError
	g.Expect(errors.As(err, &te)).To(BeTrue(), "got %v", err)
	g.Expect(te.Reason).To(ContainSubstring("all 2"))
}

// TestInteropErrors checks that emulator answers map to the client's typed errors.
func TestInteropErrors(t *testing.T) {
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	conn := clientConn(t, cf.Data)
	c := clearance.NewClient(clearance.WithEgress(testutil.LoopbackEgress))
	mint := func(t *testing.T) error {
		_, err := c.Mint(mintCtx(t), clearance.MintRequest{Connection: conn})
		return err
	}

	t.Run("rate limited", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.InjectFault(clearancetest.FaultRateLimited(2 * time.Second).Times(1))).To(Succeed())
		var rl *clearance.RateLimitedError
		g.Expect(errors.As(mint(t), &rl)).To(BeTrue())
		g.Expect(rl.RetryAfter).To(Equal(2 * time.Second))
	})
	t.Run("200 without access_token", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.InjectFault(clearancetest.FaultMissingAccessToken().Times(1))).To(Succeed())
		var te *clearance.TransientError
		g.Expect(errors.As(mint(t), &te)).To(BeTrue())
	})
	t.Run("200 with HTML", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.InjectFault(clearancetest.FaultHTML(http.StatusOK).Times(1))).To(Succeed())
		var te *clearance.TransientError
		g.Expect(errors.As(mint(t), &te)).To(BeTrue())
	})
	t.Run("clock skew", func(t *testing.T) {
		g := NewWithT(t)
		srv.SetClockOffset(-10 * time.Minute)
		defer srv.SetClockOffset(0)
		err := mint(t)
		var re *clearance.RejectedError
		g.Expect(errors.As(err, &re)).To(BeTrue(), "got %v", err)
		g.Expect(re.Code).To(Equal(clearancetest.ErrInvalidGrant))
		g.Expect(clearance.Hint(err)).To(ContainSubstring("clock"))
	})
	t.Run("revoked", func(t *testing.T) {
		g := NewWithT(t)
		srv.Revoke(cf.ClientID())
		err := mint(t)
		var re *clearance.RejectedError
		g.Expect(errors.As(err, &re)).To(BeTrue(), "got %v", err)
		g.Expect(re.Code).To(Equal(clearancetest.ErrInvalidClient))
		g.Expect(clearance.Hint(err)).NotTo(BeEmpty())
	})
}

func TestInteropTLSAndAudience(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t, clearancetest.WithTLS(), clearancetest.WithRequiredAudience())
	cf := newClient(t, srv, 1)
	conn := clientConn(t, cf.Data)
	c := clearance.NewClient(clearance.WithHTTPClient(srv.Client()))

	_, err := c.Mint(mintCtx(t), clearance.MintRequest{Connection: conn})
	var re *clearance.RejectedError
	g.Expect(errors.As(err, &re)).To(BeTrue(), "no aud: got %v", err)

	tok, err := c.Mint(mintCtx(t), clearance.MintRequest{Connection: conn, Audience: srv.TokenEndpoint(), Encoding: clearance.EncodingJSON})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Endpoint).To(Equal(srv.TokenEndpoint()))

	// The default client does not trust the self-signed certificate.
	_, err = clearance.NewClient(clearance.WithEgress(testutil.LoopbackEgress)).Mint(mintCtx(t), clearance.MintRequest{Connection: conn, Audience: srv.TokenEndpoint()})
	var te *clearance.TransientError
	g.Expect(errors.As(err, &te)).To(BeTrue(), "got %v", err)
}
