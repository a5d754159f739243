package clearancetest_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

// TestGeneratedConnectionFileShape checks member order, .NET nulls and the
// date strings against the vendor's documented shape.
func TestGeneratedConnectionFileShape(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t, clearancetest.WithTenant("acme"), clearancetest.WithServiceName("MyApiUser"))
	cf := newClient(t, srv, 1)

	g.Expect(topLevelKeys(t, cf.Data)).To(Equal([]string{
		"DocumentStoreBaseAddresses", "SecurityTokenServiceBaseAddresses", "KeyStoreBaseAddresses",
		"DeviceServiceBaseAddresses", "CaseServiceBaseAddresses", "SearchServiceBaseAddresses",
		"UserServiceBaseAddresses", "ApiBaseAddresses", "CADApiAddresses", "APIKey",
		"CertificateThumbprints", "DisableEncryption", "ServicePrincipalId", "ServicePrincipalKey", "TenantId",
	}))
	var doc map[string]any
	g.Expect(json.Unmarshal(cf.Data, &doc)).To(Succeed())
	g.Expect(doc["SecurityTokenServiceBaseAddresses"]).To(Equal([]any{srv.BaseURL()}))
	g.Expect(doc["DocumentStoreBaseAddresses"]).To(Equal([]any{srv.URL() + "/ds/api/v1"}))
	g.Expect(doc["CertificateThumbprints"]).To(Equal([]any{}))
	g.Expect(doc["DisableEncryption"]).To(BeFalse())
	g.Expect(doc["APIKey"]).To(MatchRegexp(`^[A-Z2-7]{26}$`))
	g.Expect(doc["ServicePrincipalId"]).To(Equal(cf.ServicePrincipalID))
	g.Expect(doc["TenantId"]).To(Equal("acme"))

	key, ok := doc["ServicePrincipalKey"].(map[string]any)
	g.Expect(ok).To(BeTrue())
	var raw struct {
		Key json.RawMessage `json:"ServicePrincipalKey"`
	}
	g.Expect(json.Unmarshal(cf.Data, &raw)).To(Succeed())
	g.Expect(topLevelKeys(t, raw.Key)).To(Equal([]string{"k", "kid", "kty", "use", "n", "e", "x5t", "d", "p", "q", "dp", "dq", "qi", "nbf", "exp"}))
	for _, k := range []string{"k", "use", "x5t"} {
		g.Expect(key).To(HaveKeyWithValue(k, BeNil()))
	}
	g.Expect(key["kid"]).To(Equal("urn:service:acme:MyApiUser:" + cf.ServicePrincipalID))
	g.Expect(key["kty"]).To(Equal("RSA"))
	g.Expect(key["e"]).To(Equal("AQAB"))
	g.Expect(key["nbf"]).To(Equal("0001-01-01T00:00:00"))
	g.Expect(key["exp"]).To(Equal("0001-01-01T00:00:00"))
	for _, k := range []string{"n", "d", "p", "q", "dp", "dq", "qi"} {
		g.Expect(key[k]).To(MatchRegexp(`^[A-Za-z0-9_-]+$`), "base64url without padding: %s", k)
	}

	// Ids count up and each file is trusted at once.
	cf2 := newClient(t, srv, 1)
	g.Expect(cf2.ServicePrincipalID).NotTo(Equal(cf.ServicePrincipalID))
	g.Expect(request(t, srv, cf2, "form").Status).To(Equal(200))
}

func topLevelKeys(t *testing.T, data []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestParseConnectionFileRoundTrip(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	parsed, err := clearancetest.ParseConnectionFile(cf.Data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(parsed.ClientID()).To(Equal(cf.ClientID()))
	g.Expect(parsed.KeyID).To(Equal(cf.KeyID))
	g.Expect(parsed.STSBaseAddresses).To(Equal([]string{srv.BaseURL()}))
	g.Expect(parsed.PrivateKey.Equal(cf.PrivateKey)).To(BeTrue())
	g.Expect(parsed.PublicKey.Equal(cf.PublicKey)).To(BeTrue())

	path := filepath.Join(t.TempDir(), "conn.json")
	g.Expect(cf.WriteFile(path)).To(Succeed())
	fi, err := os.Stat(path)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o600)))
}

// TestParseConnectionFileTolerance feeds variants a .NET tool or a human might produce.
func TestParseConnectionFileTolerance(t *testing.T) {
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	var doc map[string]any
	if err := json.Unmarshal(cf.Data, &doc); err != nil {
		t.Fatal(err)
	}
	variant := func(mut func(m map[string]any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(cf.Data, &m)
		mut(m)
		b, _ := json.Marshal(m)
		return b
	}
	key := func(m map[string]any) map[string]any { k, _ := m["ServicePrincipalKey"].(map[string]any); return k }
	tests := []struct {
		name        string
		data        []byte
		wantPrivate bool
		wantErr     string
	}{
		{"with BOM", append([]byte("\xef\xbb\xbf"), cf.Data...), true, ""},
		{"unknown members", variant(func(m map[string]any) { m["Future"] = map[string]any{"x": 1}; key(m)["alg"] = "RS256" }), true, ""},
		{"numeric ServicePrincipalId", variant(func(m map[string]any) { m["ServicePrincipalId"] = 151 }), true, ""},
		{"public key only (private members null)", variant(func(m map[string]any) {
			for _, k := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				key(m)[k] = nil
			}
		}), false, ""},
		{"null kid", variant(func(m map[string]any) { key(m)["kid"] = nil }), true, ""},
		{"null address lists", variant(func(m map[string]any) { m["KeyStoreBaseAddresses"] = nil }), true, ""},
		{"missing TenantId", variant(func(m map[string]any) { delete(m, "TenantId") }), false, "TenantId"},
		{"missing key", variant(func(m map[string]any) { delete(m, "ServicePrincipalKey") }), false, "ServicePrincipalKey"},
		{"EC key", variant(func(m map[string]any) { key(m)["kty"] = "EC" }), false, "kty"},
		{"missing n", variant(func(m map[string]any) { delete(key(m), "n") }), false, "n missing"},
		{"not JSON", []byte("{"), false, "JSON"},
		{"too large", bytes.Repeat([]byte(" "), clearancetest.MaxConnectionFileSize+1), false, "exceeds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := clearancetest.ParseConnectionFile(tc.data)
			if tc.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
				// Errors never quote key material.
				g.Expect(err.Error()).NotTo(ContainSubstring(key(doc)["n"].(string)[:16]))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.PublicKey.Equal(cf.PublicKey)).To(BeTrue())
			g.Expect(got.PrivateKey != nil).To(Equal(tc.wantPrivate))
			g.Expect(got.ServicePrincipalID).To(Equal(cf.ServicePrincipalID))

			// Trusting the variant in a fresh emulator works.
			other := newServer(t)
			id, err := other.TrustConnectionFile(tc.data)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(id).To(Equal(cf.ClientID()))
		})
	}
}

// TestTrustedIDsAreNotReused: generated ids skip ids already trusted.
func TestTrustedIDsAreNotReused(t *testing.T) {
	g := NewWithT(t)
	a := newServer(t)
	first := newClient(t, a, 1) // id 151 on a
	b := newServer(t)
	_, err := b.TrustConnectionFile(first.Data) // 151 is taken on b
	g.Expect(err).NotTo(HaveOccurred())
	second := newClient(t, b, 2)
	g.Expect(second.ClientID()).NotTo(Equal(first.ClientID()))
	g.Expect(request(t, b, first, "form").Status).To(Equal(200))
	g.Expect(request(t, b, second, "form").Status).To(Equal(200))
}

func TestFailoverAddresses(t *testing.T) {
	srv := newServer(t)
	cf := newClient(t, srv, 1, clearancetest.WithSTSAddresses("http://127.0.0.1:1/connect", srv.BaseURL()))
	parsed, err := clearancetest.ParseConnectionFile(cf.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(parsed.STSBaseAddresses, " "); got != "http://127.0.0.1:1/connect "+srv.BaseURL() {
		t.Fatalf("addresses %s", got)
	}
}

func TestTLS(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t, clearancetest.WithTLS())
	g.Expect(srv.BaseURL()).To(HavePrefix("https://127.0.0.1:"))
	cf := newClient(t, srv, 1)

	// A client trusting the PEM gets a token.
	pool := x509.NewCertPool()
	g.Expect(pool.AppendCertsFromPEM(srv.CACertPEM())).To(BeTrue())
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	a, err := cf.SignAssertion(clearancetest.AssertionOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	r := post(t, client, cf.STSBaseAddresses[0]+"/token", "form", params(cf.ClientID(), a))
	g.Expect(r.Status).To(Equal(200))
	g.Expect(r.str("access_token")).NotTo(BeEmpty())

	// So does Server.Client, also via "localhost".
	g.Expect(request(t, srv, cf, "json").Status).To(Equal(200))
	localhost := strings.Replace(srv.TokenEndpoint(), "127.0.0.1", "localhost", 1)
	g.Expect(post(t, srv.Client(), localhost, "form", params(cf.ClientID(), a)).Status).To(Equal(200))

	// A client without the CA is refused.
	plain := &http.Client{Transport: &http.Transport{}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.JWKSURL(), nil)
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := plain.Do(req)
	if err == nil {
		_ = resp.Body.Close()
	}
	var cve *tls.CertificateVerificationError
	g.Expect(errors.As(err, &cve)).To(BeTrue(), "got %v", err)

	// No TLS: no PEM.
	g.Expect(newServer(t).CACertPEM()).To(BeEmpty())
}
