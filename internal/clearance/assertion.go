package clearance

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AssertionLifetime is the validity of each client assertion. RFC 7523 §3 asks
// for a short-lived assertion and the vendor samples use an hour; five minutes is
// plenty for a single HTTP exchange and limits the damage if one is captured
// (e.g. in a proxy log). A fresh assertion is signed for every HTTP attempt, so a
// long lifetime buys nothing.
const AssertionLifetime = 5 * time.Minute

// GrantTypeJWTBearer is the RFC 7523 §2.1 grant type sent to the token endpoint.
const GrantTypeJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer" //nolint:gosec // a grant type URN, not a credential

// assertionClaims is the claim set of the client assertion. A dedicated struct
// (rather than jwt.RegisteredClaims) keeps "aud" a single string, which is how
// the STS's .NET handler and the vendor samples write it.
type assertionClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  string           `json:"aud,omitempty"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
	ID        string           `json:"jti"`
}

// The getters below implement jwt.Claims.

func (c *assertionClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c *assertionClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c *assertionClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
func (c *assertionClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *assertionClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *assertionClaims) GetAudience() (jwt.ClaimStrings, error) {
	if c.Audience == "" {
		return nil, nil
	}
	return jwt.ClaimStrings{c.Audience}, nil
}

// newAssertion signs an RFC 7523 client assertion for conn at time now.
//
// iss = sub = client_id (RFC 7523 §3 for client authentication), iat = nbf = now
// truncated to seconds (NumericDate has second precision; truncating keeps nbf
// from being in the STS's future by a fraction of a second), exp = now + 5 min,
// and a random 128-bit jti so the STS can detect replays.
func newAssertion(conn *ConnectionFile, audience string, now time.Time) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("generating assertion id: %w", err)
	}
	now = now.Truncate(time.Second)
	clientID := conn.ClientID()
	claims := &assertionClaims{
		Issuer:    clientID,
		Subject:   clientID,
		Audience:  audience,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(AssertionLifetime)),
		ID:        hex.EncodeToString(jti[:]),
	}
	token := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	if conn.KeyID != "" {
		token.Header["kid"] = conn.KeyID
	}
	signed, err := token.SignedString(conn.PrivateKey)
	if err != nil {
		// Errors from crypto/rsa do not contain key material; still, do not wrap
		// anything that might, and keep the message generic.
		return "", errors.New("signing the client assertion failed")
	}
	return signed, nil
}
