package clearance

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

// testAPIKey is the APIKey written into every test connection file; it must never
// show up in an error string.
const testAPIKey = "APIKEY-SECRET-ABCDEFGHIJ" //nolint:gosec // a fake key planted to detect leaks

const (
	testSPID   = "151"
	testTenant = "tenant123"
	testKID    = "urn:service:tenant123:MyApiUser:151"
)

// testNow is the fake clock's start; it has a sub-second part on purpose so that
// the truncation of iat/nbf is exercised.
var testNow = time.Date(2025, 3, 14, 15, 9, 26, 535_000_000, time.UTC)

var (
	keyOnce    sync.Once
	key2048    *rsa.PrivateKey
	key1024    *rsa.PrivateKey
	keyOnceErr error
)

// testKeys returns a 2048-bit and a 1024-bit RSA key, generated once per test
// binary because RSA key generation dominates test time otherwise.
func testKeys(tb testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	tb.Helper()
	keyOnce.Do(func() {
		key2048, keyOnceErr = rsa.GenerateKey(rand.Reader, 2048)
		if keyOnceErr == nil {
			key1024, keyOnceErr = rsa.GenerateKey(rand.Reader, 1024) //nolint:gosec // deliberately too small: the parser must refuse it
		}
	})
	if keyOnceErr != nil {
		tb.Fatalf("generating test keys: %v", keyOnceErr)
	}
	return key2048, key1024
}

func testKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	k, _ := testKeys(tb)
	return k
}

func b64(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.Bytes()) }

// jwkMap renders key as the .NET JsonWebKey serialiser does: every member present,
// nulls for the unused ones, and the non-standard nbf/exp strings.
func jwkMap(key *rsa.PrivateKey, kid string) map[string]any {
	key.Precompute()
	return map[string]any{
		"k":   nil,
		"kid": kid,
		"kty": "RSA",
		"use": nil,
		"n":   b64(key.N),
		"e":   b64(big.NewInt(int64(key.E))),
		"x5t": nil,
		"d":   b64(key.D),
		"p":   b64(key.Primes[0]),
		"q":   b64(key.Primes[1]),
		"dp":  b64(key.Precomputed.Dp),
		"dq":  b64(key.Precomputed.Dq),
		"qi":  b64(key.Precomputed.Qinv),
		"nbf": "0001-01-01T00:00:00",
		"exp": "0001-01-01T00:00:00",
	}
}

// connectionFileMap builds the top-level members of a .NET-shaped connection file.
func connectionFileMap(key *rsa.PrivateKey, stsAddresses ...string) map[string]any {
	if len(stsAddresses) == 0 {
		stsAddresses = []string{"https://clearance-a-sts.example/connect"}
	}
	return map[string]any{
		"DocumentStoreBaseAddresses":        []string{"https://clearance-a-ds.example/api/v1"},
		"SecurityTokenServiceBaseAddresses": stsAddresses,
		"KeyStoreBaseAddresses":             []string{"https://clearance-a-ks.example/api/v1"},
		"DeviceServiceBaseAddresses":        []string{"https://clearance-a-dev.example/api/v1"},
		"CaseServiceBaseAddresses":          []string{"https://clearance-a-case.example/api/v1"},
		"SearchServiceBaseAddresses":        []string{"https://clearance-a-search.example/api/v1"},
		"UserServiceBaseAddresses":          []string{"https://clearance-a-user.example/api/v1"},
		"ApiBaseAddresses":                  []string{"https://clearance-a-api.example/api/v1"},
		"CADApiAddresses":                   []string{"https://clearance-a-cad.example/api"},
		"APIKey":                            testAPIKey,
		"CertificateThumbprints":            []string{},
		"DisableEncryption":                 false,
		"ServicePrincipalId":                testSPID,
		"ServicePrincipalKey":               jwkMap(key, testKID),
		"TenantId":                          testTenant,
	}
}

// connectionFileJSON builds a .NET-shaped connection file; mutate may edit the
// top-level map and the JWK map before serialisation.
func connectionFileJSON(tb testing.TB, key *rsa.PrivateKey, mutate func(top, jwk map[string]any), stsAddresses ...string) []byte {
	tb.Helper()
	top := connectionFileMap(key, stsAddresses...)
	if mutate != nil {
		mutate(top, top["ServicePrincipalKey"].(map[string]any))
	}
	b, err := json.Marshal(top)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// mustConnection parses a test connection file pointing at the given STS bases.
func mustConnection(tb testing.TB, mutate func(top, jwk map[string]any), stsAddresses ...string) *ConnectionFile {
	tb.Helper()
	cf, err := ParseConnectionFile(connectionFileJSON(tb, testKey(tb), mutate, stsAddresses...))
	if err != nil {
		tb.Fatalf("ParseConnectionFile: %v", err)
	}
	return cf
}

// secretsOf returns the strings that must never appear in an error message for
// the test key: the private exponent and primes in base64url and decimal, and
// the APIKey.
func secretsOf(key *rsa.PrivateKey) []string {
	return []string{
		b64(key.D), key.D.String(), b64(key.Primes[0]), b64(key.Primes[1]),
		b64(key.Precomputed.Dp), b64(key.Precomputed.Dq), b64(key.Precomputed.Qinv),
		testAPIKey,
	}
}

// assertNoSecrets fails if err's message (or the message of anything it wraps)
// contains any of the secrets, or any 16-character window of one of them.
func assertNoSecrets(tb testing.TB, err error, secrets ...string) {
	tb.Helper()
	if err == nil {
		return
	}
	msgs := []string{err.Error()}
	for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
		msgs = append(msgs, e.Error())
	}
	for _, msg := range msgs {
		for _, s := range secrets {
			if s == "" {
				continue
			}
			if strings.Contains(msg, s) {
				tb.Errorf("error message leaks a secret (%d chars): %q", len(s), msg)
				continue
			}
			const window = 16
			for i := 0; i+window <= len(s); i += window / 2 {
				if strings.Contains(msg, s[i:i+window]) {
					tb.Errorf("error message leaks part of a secret: %q", msg)
					break
				}
			}
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func b64decode(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
