// Package tokeninfo describes an access token without revealing it: its
// identity and timing claims, decoded without verification, and a short
// fingerprint. It is the one claims printer shared by `clearance-operator
// mint`, the kubectl plugin and hack/run-local, so they show the same claims
// the same way and none of them prints the token or its signature.
package tokeninfo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// PrintableClaims are the claims shown, in this order: identity and timing
// only. Anything else a token carries is left out, so a claim added by the
// STS later cannot leak through a display.
var PrintableClaims = []string{"iss", "sub", "aud", "client_id", "tenant_id", "tid", "scope", "iat", "nbf", "exp", "jti"}

// timeClaims are NumericDate claims, shown as RFC 3339 UTC times.
var timeClaims = map[string]bool{"iat": true, "nbf": true, "exp": true}

// Claim is one printable claim, its value in readable form.
type Claim struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Claims returns the printable claims of a JWT access token in
// PrintableClaims order, decoded without verification (a display, not a
// trust decision); nil for an opaque token. Strings are shown as they are,
// a list of strings comma-separated, NumericDates as RFC 3339 UTC, anything
// else as JSON.
func Claims(token string) []Claim {
	claims := jwt.MapClaims{}
	// ErrTokenUnverifiable only means the alg is unknown to golang-jwt (an
	// XML-DSig URI, as Clearance has used): the claims are decoded by then,
	// and the operator reads exp from such tokens too.
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil && !errors.Is(err, jwt.ErrTokenUnverifiable) {
		return nil
	}
	var out []Claim
	for _, name := range PrintableClaims {
		v, ok := claims[name]
		if !ok {
			continue
		}
		if value, ok := readable(name, v); ok {
			out = append(out, Claim{Name: name, Value: value})
		}
	}
	return out
}

func readable(name string, v any) (string, bool) {
	switch val := v.(type) {
	case float64:
		if timeClaims[name] {
			return time.Unix(int64(val), 0).UTC().Format(time.RFC3339), true
		}
	case string:
		return val, true
	case []any:
		if strs, ok := stringList(val); ok {
			return strings.Join(strs, ","), true
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	return string(b), true
}

func stringList(v []any) ([]string, bool) {
	out := make([]string, 0, len(v))
	for _, e := range v {
		s, ok := e.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// Join formats claims as "name<sep>value" items joined by between, e.g.
// Join(c, "=", " ") for one line or Join(c, ": ", "\n") for a list.
func Join(claims []Claim, sep, between string) string {
	parts := make([]string, 0, len(claims))
	for _, c := range claims {
		parts = append(parts, c.Name+sep+c.Value)
	}
	return strings.Join(parts, between)
}

// Fingerprint is a short hash of a token (a hex prefix of its SHA-256):
// enough to tell two tokens apart, or to match a token a pod holds against
// the Secret, and useless for recovering the token.
func Fingerprint(token []byte) string {
	sum := sha256.Sum256(token)
	return hex.EncodeToString(sum[:6])
}
