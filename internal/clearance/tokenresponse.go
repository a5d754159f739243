package clearance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxTokenLifetime bounds expires_in (and an exp claim used in its place). A
// token "valid for years" is not something a real STS issues; accepting it would
// make the operator stop refreshing, so it is treated as an invalid response.
const maxTokenLifetime = 365 * 24 * time.Hour

// errTokenAlreadyExpired is returned by expiresAt when the token is expired by
// our clock (typically clock skew, or a proxy replaying a cached response).
var errTokenAlreadyExpired = errors.New("the issued access token is already expired according to the local clock")

// tokenResponse is a successful RFC 6749 §5.1 token response.
type tokenResponse struct {
	AccessToken string
	TokenType   string
	// ExpiresIn is the response's expires_in; 0 when absent.
	ExpiresIn time.Duration
	// TokenExpiry is the access token's own "exp" claim when it is a JWT that
	// carries one (read without verifying the signature: we are not the audience
	// and only use it as an upper bound); zero otherwise.
	TokenExpiry time.Time
}

// parseTokenResponse parses a 2xx token endpoint body. Its error messages are
// fixed strings (plus a byte offset) and never quote the body, which contains
// the access token.
func parseTokenResponse(body []byte) (*tokenResponse, error) {
	body = bytes.TrimPrefix(body, utf8BOM)
	var raw struct {
		AccessToken json.RawMessage `json:"access_token"`
		TokenType   json.RawMessage `json:"token_type"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		var syntaxErr *json.SyntaxError
		if errors.As(err, &syntaxErr) {
			return nil, fmt.Errorf("body is not valid JSON (syntax error at byte offset %d)", syntaxErr.Offset)
		}
		return nil, errors.New("body is not a JSON object")
	}

	tr := &tokenResponse{}
	var ok bool
	if tr.AccessToken, ok = jsonString(raw.AccessToken); !ok || tr.AccessToken == "" {
		return nil, errors.New("access_token is missing or not a string")
	}
	if !isTokenChars(tr.AccessToken) {
		return nil, errors.New("access_token contains characters not allowed in a bearer token")
	}
	tokenType, ok := jsonString(raw.TokenType)
	if !ok || tokenType == "" {
		return nil, errors.New("token_type is missing or not a string")
	}
	if !strings.EqualFold(tokenType, "Bearer") {
		return nil, errors.New("token_type is not Bearer")
	}
	tr.TokenType = "Bearer"

	expiresIn, err := parseExpiresIn(raw.ExpiresIn)
	if err != nil {
		return nil, err
	}
	tr.ExpiresIn = expiresIn
	tr.TokenExpiry = jwtExpiry(tr.AccessToken)
	if tr.ExpiresIn == 0 && tr.TokenExpiry.IsZero() {
		return nil, errors.New("expires_in is missing and the access token carries no exp claim")
	}
	return tr, nil
}

// expiresAt computes when the token stops being usable, given the clock time at
// which the response arrived. expires_in is relative to the response, so it is
// immune to clock skew between us and the STS; but the resource servers check the
// token's own exp, so the result is never later than that.
func (tr *tokenResponse) expiresAt(received time.Time) (time.Time, error) {
	var exp time.Time
	switch {
	case tr.ExpiresIn > 0:
		exp = received.Add(tr.ExpiresIn)
		if !tr.TokenExpiry.IsZero() && tr.TokenExpiry.Before(exp) {
			exp = tr.TokenExpiry
		}
	case !tr.TokenExpiry.IsZero():
		exp = tr.TokenExpiry
		if exp.Sub(received) > maxTokenLifetime {
			return time.Time{}, errors.New("the access token's exp claim is implausibly far in the future")
		}
	default:
		return time.Time{}, errors.New("expires_in is missing and the access token carries no exp claim")
	}
	if !exp.After(received) {
		return time.Time{}, errTokenAlreadyExpired
	}
	return exp, nil
}

// jsonString decodes a JSON string member; null or absent yields ("", true).
func jsonString(raw json.RawMessage) (string, bool) {
	if isNull(raw) {
		return "", true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// parseExpiresIn accepts a JSON number or a numeric string (some STS
// implementations serialise it as a string). Absent or null yields 0.
func parseExpiresIn(raw json.RawMessage) (time.Duration, error) {
	if isNull(raw) {
		return 0, nil
	}
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return 0, errors.New("expires_in is not a number")
		}
		text = n.String()
	}
	secs, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
	if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) {
		return 0, errors.New("expires_in is not a number")
	}
	if secs <= 0 {
		return 0, errors.New("expires_in is not positive")
	}
	if secs > maxTokenLifetime.Seconds() {
		return 0, errors.New("expires_in is implausibly large (more than a year)")
	}
	d := time.Duration(secs * float64(time.Second))
	if d <= 0 {
		return 0, errors.New("expires_in is not positive")
	}
	return d, nil
}

// jwtExpiry returns the exp claim of an access token that is a JWT, or the zero
// time (opaque token, no exp, malformed exp). The signature is not verified: the
// value only ever shortens the lifetime we assume.
func jwtExpiry(token string) time.Time {
	if strings.Count(token, ".") != 2 {
		return time.Time{}
	}
	claims := jwt.MapClaims{}
	// ErrTokenUnverifiable only means the alg is unknown to golang-jwt (Clearance
	// has used XML-DSig URIs such as ".../xmldsig-more#rsa-sha512"); the claims
	// were decoded by then and are usable.
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil && !errors.Is(err, jwt.ErrTokenUnverifiable) {
		return time.Time{}
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return time.Time{}
	}
	return exp.Time
}

// isTokenChars reports whether s uses only visible ASCII, as RFC 6750 b64token
// does in practice; anything else could not be sent in an Authorization header.
func isTokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
