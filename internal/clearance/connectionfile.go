// Package clearance talks to the Clearance Security Token Service (STS): it parses
// the JSON Connection File issued for an integration account and exchanges an
// RFC 7523 JWT-bearer assertion signed with its ServicePrincipalKey for a bearer
// access token.
//
// The package is pure Go (no Kubernetes dependencies besides k8s.io/utils/clock)
// and never logs. Every error it returns is safe to show to users: none contains
// an access token, an assertion, key material, the APIKey or raw response bodies.
package clearance

import (
	"bytes"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// MaxConnectionFileSize is the largest connection file accepted. Real files are a
// few KiB; the cap bounds memory and CPU spent on a hostile or mistaken Secret and
// is checked before any parsing.
const MaxConnectionFileSize = 1 << 20

// MaxSTSAddresses is how many distinct SecurityTokenServiceBaseAddresses a
// mint tries: the first ones, in file order. A file may list more; they are
// validated but never dialled, so one tenant's list of hung addresses cannot
// hold a worker for long.
const MaxSTSAddresses = 3

// MaxAddressLength bounds one address: it ends up in status, events and the
// target Secret. Real addresses are a few dozen bytes.
const MaxAddressLength = 512

// maxIDLength bounds the identifiers copied to status, events and the
// target Secret (ServicePrincipalId, TenantId, the key's kid); real ones are
// GUIDs and short numbers.
const maxIDLength = 256

// maxAddressLists bounds how many address lists (by member name, sorted)
// are copied to the target Secret; real files have a handful.
const maxAddressLists = 16

// addressListName matches the member names of address lists whose first
// entry is copied: the name also makes a Secret data key.
var addressListName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,62}(?i:addresses)$`)

// MinRSAKeyBits is the smallest RSA modulus accepted for the ServicePrincipalKey.
const MinRSAKeyBits = 2048

// MaxRSAKeyBits is the largest RSA modulus accepted. Signing cost grows with the
// cube of the size; a 16k-bit key would make every token request slow, and no
// real connection file has one.
const MaxRSAKeyBits = 8192

// Member names of the JSON Connection File (the .NET serialiser's PascalCase).
const (
	memberServicePrincipalID  = "ServicePrincipalId"
	memberTenantID            = "TenantId"
	memberServicePrincipalKey = "ServicePrincipalKey"
	memberSTSAddresses        = "SecurityTokenServiceBaseAddresses"
)

// utf8BOM is written by some Windows tools in front of the JSON document.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// ConnectionFile is the validated content of a JSON Connection File.
//
// Values returned by ParseConnectionFile / Client.LoadConnectionFile must be
// treated as read-only: PrivateKey may be shared between callers.
type ConnectionFile struct {
	ServicePrincipalID string
	TenantID           string
	// KeyID is the JWK "kid" of ServicePrincipalKey (may be empty). It is sent as
	// the assertion's "kid" header so the STS can pick the right public key.
	KeyID      string
	PrivateKey *rsa.PrivateKey
	// STSBaseAddresses are the first MaxSTSAddresses distinct
	// SecurityTokenServiceBaseAddresses entries, in file order, with trailing
	// "/" trimmed; each is an absolute http(s) URL of at most MaxAddressLength
	// bytes without user info, query or fragment.
	STSBaseAddresses []string
	// FirstAddresses maps the JSON member name of every *BaseAddresses / *Addresses
	// list (e.g. "DocumentStoreBaseAddresses", "CADApiAddresses") to its first
	// entry, for non-secret extras in the target Secret. Never contains APIKey or
	// key material. Lists whose first non-empty entry is not an absolute http(s)
	// URL without user info are left out.
	FirstAddresses map[string]string
}

// ClientID returns the OAuth client_id "<ServicePrincipalId>@<TenantId>" that the
// STS expects both as the request's client_id and as the assertion's iss/sub.
func (c *ConnectionFile) ClientID() string {
	return c.ServicePrincipalID + "@" + c.TenantID
}

// String describes the connection file without key material, so that an
// accidental %v in a log line cannot leak the private key.
func (c *ConnectionFile) String() string {
	if c == nil {
		return "ConnectionFile(nil)"
	}
	bits := 0
	if c.PrivateKey != nil && c.PrivateKey.N != nil {
		bits = c.PrivateKey.N.BitLen()
	}
	return fmt.Sprintf("ConnectionFile{ClientID: %s, KeyID: %s, Key: RSA-%d [redacted], STS: %v}",
		c.ClientID(), c.KeyID, bits, c.STSBaseAddresses)
}

// GoString is like String, for %#v.
func (c *ConnectionFile) GoString() string { return c.String() }

// clone returns a copy whose slices and map can be modified without affecting c
// (the private key itself is shared).
func (c *ConnectionFile) clone() *ConnectionFile {
	cp := *c
	cp.STSBaseAddresses = slices.Clone(c.STSBaseAddresses)
	cp.FirstAddresses = maps.Clone(c.FirstAddresses)
	return &cp
}

// ParseConnectionFile parses and validates a JSON Connection File as produced by
// Clearance (.NET serialised: PascalCase members, null members, extra members).
// A UTF-8 BOM, unknown members, nulls and any member order are tolerated.
//
// All failures are *ConnectionFileError values that name the field and never
// quote the input.
func ParseConnectionFile(data []byte) (*ConnectionFile, error) {
	if len(data) > MaxConnectionFileSize {
		return nil, &ConnectionFileError{Problem: fmt.Sprintf("larger than the %d-byte limit", MaxConnectionFileSize)}
	}
	bomOffset := 0
	if bytes.HasPrefix(data, utf8BOM) {
		data = data[len(utf8BOM):]
		bomOffset = len(utf8BOM)
	}

	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, jsonProblem("", err, bomOffset)
	}
	if top == nil {
		return nil, &ConnectionFileError{Problem: "must be a JSON object"}
	}

	cf := &ConnectionFile{}
	var err error
	if cf.ServicePrincipalID, err = requiredID(top, memberServicePrincipalID); err != nil {
		return nil, err
	}
	if cf.TenantID, err = requiredID(top, memberTenantID); err != nil {
		return nil, err
	}
	if cf.STSBaseAddresses, err = stsAddresses(lookup(top, memberSTSAddresses)); err != nil {
		return nil, err
	}
	if cf.PrivateKey, cf.KeyID, err = parseServicePrincipalKey(lookup(top, memberServicePrincipalKey)); err != nil {
		return nil, err
	}
	cf.FirstAddresses = firstAddresses(top)
	return cf, nil
}

// jsonProblem maps an encoding/json error to a ConnectionFileError. The json
// errors themselves are never wrapped: some of them describe input values.
func jsonProblem(field string, err error, offset int) *ConnectionFileError {
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return &ConnectionFileError{Field: field, Problem: fmt.Sprintf("invalid JSON at byte offset %d", syntaxErr.Offset+int64(offset))}
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return &ConnectionFileError{Field: field, Problem: "must be a JSON object"}
	}
	return &ConnectionFileError{Field: field, Problem: "invalid JSON"}
}

// lookup returns the member called name, matching case-insensitively when there
// is no exact match (some tools re-serialise the file in camelCase). When several
// members differ only by case, the lexically smallest wins, for determinism.
// A JSON null is reported as absent.
func lookup(m map[string]json.RawMessage, name string) json.RawMessage {
	if v, ok := m[name]; ok {
		return nonNull(v)
	}
	var keys []string
	for k := range m {
		if strings.EqualFold(k, name) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	return nonNull(m[keys[0]])
}

func nonNull(v json.RawMessage) json.RawMessage {
	if isNull(v) {
		return nil
	}
	return v
}

func isNull(v json.RawMessage) bool {
	return len(v) == 0 || string(bytes.TrimSpace(v)) == "null"
}

// requiredID reads ServicePrincipalId / TenantId. A JSON number is accepted as
// well as a string because the service principal id is numeric in Clearance and
// hand-edited files sometimes drop the quotes.
func requiredID(top map[string]json.RawMessage, name string) (string, error) {
	raw := lookup(top, name)
	if raw == nil {
		return "", &ConnectionFileError{Field: name, Problem: "missing"}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", &ConnectionFileError{Field: name, Problem: "must be a string"}
		}
		s = n.String()
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", &ConnectionFileError{Field: name, Problem: "must not be empty"}
	}
	if strings.ContainsFunc(s, isControl) {
		return "", &ConnectionFileError{Field: name, Problem: "must not contain control characters"}
	}
	if len(s) > maxIDLength {
		return "", &ConnectionFileError{Field: name, Problem: fmt.Sprintf("longer than %d bytes", maxIDLength)}
	}
	return s, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// stringList decodes a JSON array of strings (null entries kept as "", and a bare
// string accepted as a one-element list). ok is false when raw is neither.
func stringList(raw json.RawMessage) (list []string, badIndex int, ok bool) {
	var single string
	if err := json.Unmarshal(raw, &single); err == nil {
		return []string{single}, -1, true
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, -1, false
	}
	list = make([]string, len(items))
	for i, item := range items {
		if isNull(item) {
			continue
		}
		if err := json.Unmarshal(item, &list[i]); err != nil {
			return nil, i, false
		}
	}
	return list, -1, true
}

// stsAddresses validates SecurityTokenServiceBaseAddresses. Null and empty
// entries are skipped; any other entry must be an absolute http(s) URL, because a
// typo would otherwise only show up as an opaque network error at token time.
func stsAddresses(raw json.RawMessage) ([]string, error) {
	if raw == nil {
		return nil, &ConnectionFileError{Field: memberSTSAddresses, Problem: "missing"}
	}
	list, bad, ok := stringList(raw)
	if !ok {
		if bad >= 0 {
			return nil, &ConnectionFileError{Field: fmt.Sprintf("%s[%d]", memberSTSAddresses, bad), Problem: "must be a string"}
		}
		return nil, &ConnectionFileError{Field: memberSTSAddresses, Problem: "must be an array of URLs"}
	}
	var out []string
	for i, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if problem := checkBaseURL(s); problem != "" {
			return nil, &ConnectionFileError{Field: fmt.Sprintf("%s[%d]", memberSTSAddresses, i), Problem: problem}
		}
		// Later entries are still checked above, but only the first few
		// distinct ones are kept: the search stays linear in the list.
		s = strings.TrimRight(s, "/")
		if len(out) < MaxSTSAddresses && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, &ConnectionFileError{Field: memberSTSAddresses, Problem: "must contain at least one absolute http(s) URL"}
	}
	return out, nil
}

// checkBaseURL returns "" when s is an absolute http(s) URL usable as a base for
// "<base>/token", or a description of the problem that does not quote s.
func checkBaseURL(s string) string {
	if len(s) > MaxAddressLength {
		return fmt.Sprintf("longer than %d bytes", MaxAddressLength)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "not a valid URL"
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "not an absolute http(s) URL"
	case u.Opaque != "" || u.Host == "":
		return "not an absolute http(s) URL (missing host)"
	case u.User != nil:
		// Credentials in the URL would end up in Token.Endpoint and error strings.
		return "must not contain user info"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "must not contain a query or fragment"
	}
	return ""
}

// firstAddresses collects the first entry of every *Addresses list for use as
// non-secret metadata. Problems here are not errors: these lists are not needed
// to obtain a token.
func firstAddresses(top map[string]json.RawMessage) map[string]string {
	out := make(map[string]string)
	for _, name := range slices.Sorted(maps.Keys(top)) {
		raw := top[name]
		if len(out) == maxAddressLists || !addressListName.MatchString(name) || isNull(raw) {
			continue
		}
		list, _, ok := stringList(raw)
		if !ok {
			continue
		}
		for _, s := range list {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if checkBaseURL(s) == "" {
				out[name] = s
			}
			break
		}
	}
	return out
}

// jwkMembers are the JWK members go-jose needs for an RSA private key. Everything
// else (k, x5t, nbf, exp, ...) is dropped before go-jose sees the key: the .NET
// serialiser writes them as null or as non-standard strings that go-jose rejects.
var (
	jwkRSAPublic  = []string{"n", "e"}
	jwkRSAPrivate = []string{"d", "p", "q", "dp", "dq", "qi"}
)

// knownKeyTypes are JWK "kty" values we may name in an error without echoing
// arbitrary file content.
var knownKeyTypes = []string{"EC", "oct", "OKP", "AKP"}

// parseServicePrincipalKey validates the JWK and converts it with go-jose. It
// checks every member itself first so that errors can name the member; go-jose's
// own errors are never wrapped because some of them could include input.
func parseServicePrincipalKey(raw json.RawMessage) (*rsa.PrivateKey, string, error) {
	const field = memberServicePrincipalKey
	if raw == nil {
		return nil, "", &ConnectionFileError{Field: field, Problem: "missing"}
	}
	// Tolerate a JWK that was stored as a JSON string containing the object.
	var nested string
	if err := json.Unmarshal(raw, &nested); err == nil {
		raw = json.RawMessage(nested)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, "", &ConnectionFileError{Field: field, Problem: "must be a JSON Web Key object"}
	}

	clean := make(map[string]json.RawMessage, 12)
	strMember := func(name string, required bool) (string, error) {
		v := nonNull(m[name])
		if v == nil {
			if required {
				return "", &ConnectionFileError{Field: field + "." + name, Problem: "missing"}
			}
			return "", nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", &ConnectionFileError{Field: field + "." + name, Problem: "must be a string"}
		}
		clean[name] = v
		return s, nil
	}

	kty, err := strMember("kty", true)
	if err != nil {
		return nil, "", err
	}
	if kty != "RSA" {
		problem := "unsupported key type; an RSA private key is required"
		if slices.Contains(knownKeyTypes, kty) {
			problem = fmt.Sprintf("key type %q is not supported; an RSA private key is required", kty)
		}
		return nil, "", &ConnectionFileError{Field: field + ".kty", Problem: problem}
	}
	kid, err := strMember("kid", false)
	if err != nil {
		return nil, "", err
	}
	if len(kid) > maxIDLength {
		return nil, "", &ConnectionFileError{Field: field + ".kid", Problem: fmt.Sprintf("longer than %d bytes", maxIDLength)}
	}
	if _, err := strMember("use", false); err != nil {
		return nil, "", err
	}

	if nonNull(m["d"]) == nil {
		return nil, "", &ConnectionFileError{Field: field, Problem: "contains only a public key; the private members d, p, q, dp, dq and qi are required"}
	}
	var modulus []byte
	for _, name := range slices.Concat(jwkRSAPublic, jwkRSAPrivate) {
		s, err := strMember(name, true)
		if err != nil {
			return nil, "", err
		}
		// .NET's Base64UrlEncoder never pads, but tolerate padding added by hand.
		s = strings.TrimRight(s, "=")
		b, decErr := base64.RawURLEncoding.DecodeString(s)
		if decErr != nil || len(b) == 0 {
			return nil, "", &ConnectionFileError{Field: field + "." + name, Problem: "not valid base64url"}
		}
		enc, _ := json.Marshal(s) // marshalling a string cannot fail
		clean[name] = enc
		if name == "n" {
			modulus = b
		}
	}
	// Check the size before go-jose: crypto/rsa refuses keys under 1024 bits with a
	// message that would be misleading ("inconsistent") once mapped below.
	switch bits := new(big.Int).SetBytes(modulus).BitLen(); {
	case bits < MinRSAKeyBits:
		return nil, "", &ConnectionFileError{Field: field + ".n", Problem: fmt.Sprintf("RSA key is %d bits; at least %d bits are required", bits, MinRSAKeyBits)}
	case bits > MaxRSAKeyBits:
		return nil, "", &ConnectionFileError{Field: field + ".n", Problem: fmt.Sprintf("RSA key is %d bits; at most %d bits are supported", bits, MaxRSAKeyBits)}
	}

	sanitised, err := json.Marshal(clean)
	if err != nil {
		return nil, "", &ConnectionFileError{Field: field, Problem: "invalid JSON Web Key"}
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(sanitised); err != nil {
		return nil, "", &ConnectionFileError{Field: field, Problem: "not a valid RSA private key: its parameters are inconsistent (n, e, d, p, q, dp, dq, qi do not belong together)"}
	}
	priv, ok := jwk.Key.(*rsa.PrivateKey)
	if !ok {
		return nil, "", &ConnectionFileError{Field: field, Problem: "not an RSA private key"}
	}
	if len(priv.Primes) != 2 || priv.Precomputed.Dp == nil || priv.Precomputed.Dq == nil || priv.Precomputed.Qinv == nil {
		return nil, "", &ConnectionFileError{Field: field, Problem: "RSA private key lacks CRT parameters"}
	}
	// Precompute caches the validated CRT form inside the key, so every signature
	// afterwards is cheap; Validate then reports any inconsistency it found.
	priv.Precompute()
	if err := priv.Validate(); err != nil {
		return nil, "", &ConnectionFileError{Field: field, Problem: "not a valid RSA private key: its parameters are inconsistent (n, e, d, p, q, dp, dq, qi do not belong together)"}
	}
	return priv, kid, nil
}
