package tokeninfo

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("test key"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestClaims(t *testing.T) {
	iat := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name  string
		token string
		want  []Claim
	}{
		{
			name: "identity and timing in fixed order, others left out",
			token: sign(t, jwt.MapClaims{
				"exp": iat.Add(time.Hour).Unix(), "custom": "not printed", "sub": "151@tenant123",
				"iss": "http://127.0.0.1:1/connect", "aud": []string{"client", "other"}, "iat": iat.Unix(),
			}),
			want: []Claim{
				{"iss", "http://127.0.0.1:1/connect"}, {"sub", "151@tenant123"}, {"aud", "client,other"},
				{"iat", "2030-01-02T03:04:05Z"}, {"exp", "2030-01-02T04:04:05Z"},
			},
		},
		{
			name:  "non-string values as JSON",
			token: sign(t, jwt.MapClaims{"tid": 42, "scope": []any{"a", 1}, "client_id": map[string]any{"x": true}}),
			want:  []Claim{{"client_id", `{"x":true}`}, {"tid", "42"}, {"scope", `["a",1]`}},
		},
		{
			name: "alg unknown to golang-jwt",
			token: base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"http://www.w3.org/2001/04/xmldsig-more#rsa-sha512","typ":"JWT"}`)) + "." +
				base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"151@tenant123","exp":1893553445}`)) + ".c2ln",
			want: []Claim{{"sub", "151@tenant123"}, {"exp", "2030-01-02T03:04:05Z"}},
		},
		{name: "opaque token", token: "opaque-token", want: nil},
		{name: "empty", token: "", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Claims(tt.token); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Claims() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClaimsNeverContainTheSignature(t *testing.T) {
	tok := sign(t, jwt.MapClaims{"sub": "x", "jti": "id-1"})
	sig := tok[strings.LastIndex(tok, ".")+1:]
	if got := Join(Claims(tok), "=", " "); strings.Contains(got, sig) || got != "sub=x jti=id-1" {
		t.Errorf("Join(Claims()) = %q", got)
	}
}

func TestJoin(t *testing.T) {
	c := []Claim{{"iss", "a"}, {"sub", "b"}}
	if got := Join(c, ": ", "\n"); got != "iss: a\nsub: b" {
		t.Errorf("Join = %q", got)
	}
	if got := Join(nil, "=", " "); got != "" {
		t.Errorf("Join(nil) = %q", got)
	}
}

func TestFingerprint(t *testing.T) {
	sum := sha256.Sum256([]byte("token"))
	if got, want := Fingerprint([]byte("token")), hex.EncodeToString(sum[:])[:12]; got != want {
		t.Errorf("Fingerprint = %q, want %q", got, want)
	}
	if Fingerprint([]byte("a")) == Fingerprint([]byte("b")) {
		t.Error("different tokens share a fingerprint")
	}
}
