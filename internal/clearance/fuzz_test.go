package clearance

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzSecret is planted in fuzz seeds where secrets live (APIKey, key members,
// access_token). Whatever the mutation, an error must never quote it.
const fuzzSecret = "SECRETMARKER"

func FuzzParseConnectionFile(f *testing.F) {
	key := testKey(f)
	f.Add(connectionFileJSON(f, key, nil))
	f.Add(append([]byte("\xEF\xBB\xBF"), connectionFileJSON(f, key, func(top, _ map[string]any) { top["APIKey"] = fuzzSecret + "-api" })...))
	f.Add(connectionFileJSON(f, key, func(_, jwk map[string]any) { jwk["d"] = fuzzSecret + "dddddddd" }))
	f.Add(connectionFileJSON(f, key, func(_, jwk map[string]any) { jwk["kty"] = fuzzSecret }))
	f.Add(connectionFileJSON(f, key, func(top, _ map[string]any) {
		top["SecurityTokenServiceBaseAddresses"] = []string{"https://" + fuzzSecret + ":pw@sts.example/"}
	}))
	f.Add([]byte(`{"ServicePrincipalId":"` + fuzzSecret + `","TenantId":1,"ServicePrincipalKey":{"kty":"RSA","n":"` + fuzzSecret + `"}}`))
	f.Add([]byte(`{"APIKey":"` + fuzzSecret + `" "x":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := ParseConnectionFile(data)
		if err != nil {
			var cfErr *ConnectionFileError
			if !errors.As(err, &cfErr) {
				t.Fatalf("error is %T, want *ConnectionFileError", err)
			}
			msg := err.Error()
			if strings.Contains(msg, fuzzSecret) {
				t.Fatalf("error quotes the input: %q", msg)
			}
			if !utf8.ValidString(msg) || len(msg) > 300 {
				t.Fatalf("error is not short valid text: %q", msg)
			}
			return
		}
		if cf.PrivateKey == nil || cf.PrivateKey.N.BitLen() < MinRSAKeyBits || cf.PrivateKey.Validate() != nil {
			t.Fatal("accepted an unusable key")
		}
		if cf.ServicePrincipalID == "" || cf.TenantID == "" || len(cf.STSBaseAddresses) == 0 {
			t.Fatal("accepted a file without required fields")
		}
		for _, a := range cf.STSBaseAddresses {
			if checkBaseURL(a) != "" || strings.HasSuffix(a, "/") {
				t.Fatalf("accepted an invalid STS address")
			}
		}
		for _, v := range cf.FirstAddresses {
			if checkBaseURL(v) != "" {
				t.Fatalf("FirstAddresses holds a non-URL")
			}
		}
	})
}

func FuzzParseTokenResponse(f *testing.F) {
	f.Add([]byte(`{"access_token":"` + fuzzSecret + `-opaque","token_type":"Bearer","expires_in":3600}`))
	f.Add([]byte(`{"access_token":"` + fuzzSecret + `","token_type":"bearer","expires_in":"3600"}`))
	f.Add([]byte(`{"access_token":"` + accessJWT(f, testNow.Add(time.Hour)) + `","token_type":"Bearer"}`))
	f.Add([]byte(`{"access_token":"` + fuzzSecret + ` x","token_type":"Bearer","expires_in":1}`))
	f.Add([]byte(`{"access_token":"` + fuzzSecret + `","token_type":"mac","expires_in":-1}`))
	f.Add([]byte(`<html>` + fuzzSecret + `</html>`))
	f.Add([]byte(`{"access_token":null,"token_type":null,"expires_in":null}`))
	f.Add([]byte(`{"access_token":"a.b.c","token_type":"Bearer","expires_in":1e308}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tr, err := parseTokenResponse(body)
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, fuzzSecret) {
				t.Fatalf("error quotes the body: %q", msg)
			}
			if len(msg) > 200 {
				t.Fatalf("error too long: %q", msg)
			}
			return
		}
		if tr.AccessToken == "" || !isTokenChars(tr.AccessToken) || tr.TokenType != "Bearer" {
			t.Fatalf("accepted an unusable token")
		}
		if tr.ExpiresIn < 0 || tr.ExpiresIn > maxTokenLifetime || (tr.ExpiresIn == 0 && tr.TokenExpiry.IsZero()) {
			t.Fatalf("accepted an implausible lifetime %v / %v", tr.ExpiresIn, tr.TokenExpiry)
		}
		exp, err := tr.expiresAt(testNow)
		if err == nil && (!exp.After(testNow) || exp.Sub(testNow) > maxTokenLifetime) {
			t.Fatalf("expiry %v out of range", exp)
		}
		if err != nil && strings.Contains(err.Error(), fuzzSecret) {
			t.Fatalf("error quotes the body: %q", err)
		}
	})
}
