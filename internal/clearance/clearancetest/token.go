package clearancetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// allowedAlgs are the assertion algorithms accepted: the vendor samples use
// RS256; the others are what a .NET RSA key can also produce.
var allowedAlgs = []string{"RS256", "RS384", "RS512", "PS256"}

// assertionParser is shared: with claims validation skipped (done here, with
// clock-aware messages) a jwt.Parser is never mutated and is safe for
// concurrent use.
var assertionParser = jwt.NewParser(jwt.WithValidMethods(allowedAlgs), jwt.WithoutClaimsValidation(), jwt.WithJSONNumber())

// jtiMaxLen bounds jti values kept in the replay cache.
const jtiMaxLen = 256

// roundingTolerance absorbs float64 rounding of fractional NumericDates: a
// Node client computing exp = now + 3600 in floating point can land a few
// hundred nanoseconds past exactly one hour.
const roundingTolerance = time.Millisecond

// maxNumericDate rejects absurd NumericDates (after year 9999) before they
// overflow time arithmetic.
const maxNumericDate = 253402300799

type oauthError struct {
	status int
	code   string
	desc   string
}

type tokenParams struct {
	clientID  string
	grantType string
	assertion string
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	TokenType   string `json:"token_type"`
	Scope       string `json:"scope"`
}

// accessTokenClaims are the claims of issued access tokens.
type accessTokenClaims struct {
	jwt.RegisteredClaims
	ClientID string `json:"client_id"`
	TenantID string `json:"tenant_id"`
	Scope    string `json:"scope,omitempty"`
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := Request{Time: s.Now()}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.finish(w, r, &rec, start, nil, &oauthError{status: http.StatusMethodNotAllowed, code: ErrInvalidRequest, desc: "the token endpoint only accepts POST"})
		return
	}
	params, oerr := decodeTokenRequest(w, r, &rec)

	// Faults that pre-empt processing. The body has been read, so the request
	// can still be attributed to its client in the counters.
	if f, ok := s.faults.take(func(k faultKind) bool { return k != faultMutate }); ok {
		rec.Latency = f.Latency
		if !s.delay(r.Context(), f.Latency) {
			s.finishAborted(&rec, start)
			return
		}
		if f.kind() != faultDelay {
			s.applyReplaceOrDrop(w, r, &rec, start, f, params.assertion)
			return
		}
	}

	var resp *tokenResponse
	if oerr == nil {
		resp, oerr = s.issue(params, &rec)
	}
	s.finish(w, r, &rec, start, resp, oerr)
}

// decodeTokenRequest reads the body as a form (RFC 6749 §4.5 / RFC 7523 §2.1)
// or as JSON (the vendor's Node and Python samples).
func decodeTokenRequest(w http.ResponseWriter, r *http.Request, rec *Request) (tokenParams, *oauthError) {
	var p tokenParams
	// MaxBytesReader bounds io.ReadAll, so the read loop inside it is bounded too.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBodyBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return p, &oauthError{status: http.StatusRequestEntityTooLarge, code: ErrInvalidRequest,
				desc: fmt.Sprintf("request body exceeds %d bytes", MaxRequestBodyBytes)}
		}
		return p, &oauthError{status: http.StatusBadRequest, code: ErrInvalidRequest, desc: "could not read the request body"}
	}

	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return p, &oauthError{status: http.StatusBadRequest, code: ErrInvalidRequest,
			desc: "Content-Type must be application/x-www-form-urlencoded or application/json"}
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		rec.Encoding = "form"
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return p, &oauthError{status: http.StatusBadRequest, code: ErrInvalidRequest, desc: "malformed form body"}
		}
		for _, k := range []string{"client_id", "grant_type", "assertion"} {
			if len(vals[k]) > 1 {
				// RFC 6749 §3.2: parameters must not be repeated.
				return p, &oauthError{status: http.StatusBadRequest, code: ErrInvalidRequest, desc: k + " must not be repeated"}
			}
		}
		p = tokenParams{clientID: vals.Get("client_id"), grantType: vals.Get("grant_type"), assertion: vals.Get("assertion")}
	case "application/json":
		rec.Encoding = "json"
		var j struct {
			ClientID  string `json:"client_id"`
			GrantType string `json:"grant_type"`
			Assertion string `json:"assertion"`
		}
		if err := json.Unmarshal(body, &j); err != nil {
			desc := "malformed JSON body"
			if ute := (*json.UnmarshalTypeError)(nil); errors.As(err, &ute) && ute.Field != "" {
				desc = ute.Field + " must be a string"
			}
			return p, &oauthError{status: http.StatusBadRequest, code: ErrInvalidRequest, desc: desc}
		}
		p = tokenParams{clientID: j.ClientID, grantType: j.GrantType, assertion: j.Assertion}
	default:
		return p, &oauthError{status: http.StatusBadRequest, code: ErrInvalidRequest,
			desc: "Content-Type must be application/x-www-form-urlencoded or application/json"}
	}
	rec.ClientID, rec.GrantType = p.clientID, p.grantType
	return p, nil
}

// issue validates a decoded request and mints an access token.
func (s *Server) issue(p tokenParams, rec *Request) (*tokenResponse, *oauthError) {
	switch {
	case p.grantType == "":
		return nil, &oauthError{status: http.StatusBadRequest, code: ErrInvalidRequest, desc: "grant_type is required"}
	case p.grantType != GrantTypeJWTBearer:
		return nil, &oauthError{status: http.StatusBadRequest, code: ErrUnsupportedGrantType,
			desc: "grant_type must be " + GrantTypeJWTBearer}
	case p.clientID == "":
		return nil, s.invalidClient("client_id is required")
	}
	c := s.lookupClient(p.clientID)
	switch {
	case c == nil:
		return nil, s.invalidClient("unknown client; client_id must be <ServicePrincipalId>@<TenantId> of a registered service principal")
	case c.revoked:
		return nil, s.invalidClient("the client's key has been revoked")
	case p.assertion == "":
		return nil, &oauthError{status: http.StatusBadRequest, code: ErrInvalidRequest, desc: "assertion is required"}
	}

	now := rec.Time
	exp, oerr := s.verifyAssertion(p, c, now, rec)
	if oerr != nil {
		return nil, oerr
	}
	if rec.JTI != "" && !s.replay.add(p.clientID+"\x00"+rec.JTI, exp.Add(s.cfg.skew), now) {
		return nil, invalidGrant("assertion replayed (jti already used)")
	}
	return s.mint(p.clientID, now)
}

func (s *Server) invalidClient(desc string) *oauthError {
	return &oauthError{status: s.cfg.invalidClientStatus, code: ErrInvalidClient, desc: desc}
}

func invalidGrant(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: ErrInvalidGrant, desc: desc}
}

var (
	errKidNotString = errors.New("kid is not a string")
	errKidMismatch  = errors.New("kid mismatch")
)

// verifyAssertion checks the assertion per RFC 7523 §3 and returns its exp.
// All problems are invalid_grant (RFC 7523 §3.1); descriptions never contain
// the assertion.
func (s *Server) verifyAssertion(p tokenParams, c *trustedClient, now time.Time, rec *Request) (time.Time, *oauthError) {
	claims := jwt.MapClaims{}
	tok, err := assertionParser.ParseWithClaims(p.assertion, claims, func(t *jwt.Token) (any, error) {
		if kid, ok := t.Header["kid"]; ok && kid != nil {
			ks, isStr := kid.(string)
			if !isStr {
				return nil, errKidNotString
			}
			if c.kid != "" && ks != c.kid {
				return nil, errKidMismatch
			}
		}
		return c.pub, nil
	})
	if tok != nil {
		recordAssertion(tok, claims, rec)
	}
	if err != nil {
		return time.Time{}, mapParseError(err, tok)
	}

	// Identity: iss (required) and sub (optional) must both be the client id.
	iss, ok := claims["iss"].(string)
	switch {
	case !ok || iss == "":
		return time.Time{}, invalidGrant("assertion has no iss claim; it must be the client_id")
	case iss != p.clientID:
		return time.Time{}, invalidGrant("iss claim does not match client_id")
	}
	if v, present := claims["sub"]; present {
		if sub, ok := v.(string); !ok || sub != p.clientID {
			return time.Time{}, invalidGrant("sub claim does not match client_id")
		}
	}
	if v, present := claims["jti"]; present {
		jti, ok := v.(string)
		switch {
		case !ok || jti == "":
			return time.Time{}, invalidGrant("jti claim must be a non-empty string")
		case len(jti) > jtiMaxLen:
			return time.Time{}, invalidGrant(fmt.Sprintf("jti claim must not exceed %d characters", jtiMaxLen))
		}
	}
	if oerr := s.checkAudience(claims); oerr != nil {
		return time.Time{}, oerr
	}
	return s.checkTimes(claims, now)
}

func mapParseError(err error, tok *jwt.Token) *oauthError {
	switch {
	case errors.Is(err, errKidNotString):
		return invalidGrant("kid header must be a string")
	case errors.Is(err, errKidMismatch):
		return invalidGrant("kid header does not match the client's key")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalidGrant("assertion is not a well-formed JWT (JWS compact serialization)")
	}
	if tok != nil {
		alg, _ := tok.Header["alg"].(string)
		if !slices.Contains(allowedAlgs, alg) {
			return invalidGrant("assertion alg must be one of RS256, RS384, RS512, PS256")
		}
	}
	if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		return invalidGrant("assertion signature is invalid (not signed by the client's key)")
	}
	return invalidGrant("assertion could not be verified")
}

func (s *Server) checkAudience(claims jwt.MapClaims) *oauthError {
	raw, present := claims["aud"]
	auds, ok := claimStrings(raw)
	if present && !ok {
		return invalidGrant("aud claim must be a string or an array of strings")
	}
	if !s.cfg.requireAudience {
		return nil
	}
	if len(auds) == 0 {
		return invalidGrant("assertion has no aud claim; this server requires one (its token endpoint URL)")
	}
	accepted := s.cfg.audiences
	if len(accepted) == 0 {
		accepted = []string{s.tokenEP, s.base}
	}
	for _, a := range auds {
		if slices.Contains(accepted, a) {
			return nil
		}
	}
	return invalidGrant("aud claim does not identify this token service")
}

func claimStrings(v any) ([]string, bool) {
	switch a := v.(type) {
	case nil:
		return nil, true
	case string:
		return []string{a}, true
	case []any:
		out := make([]string, 0, len(a))
		for _, e := range a {
			str, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, str)
		}
		return out, true
	default:
		return nil, false
	}
}

// checkTimes validates exp, nbf and iat against the emulator clock, with the
// configured skew allowance, and bounds the assertion's lifetime.
func (s *Server) checkTimes(claims jwt.MapClaims, now time.Time) (time.Time, *oauthError) {
	exp, hasExp, err := numericDate(claims, "exp")
	if err != nil {
		return time.Time{}, err
	}
	nbf, hasNbf, err := numericDate(claims, "nbf")
	if err != nil {
		return time.Time{}, err
	}
	iat, hasIat, err := numericDate(claims, "iat")
	if err != nil {
		return time.Time{}, err
	}
	skew := s.cfg.skew
	switch {
	case !hasExp:
		return time.Time{}, invalidGrant("assertion has no exp claim")
	case !exp.After(now.Add(-skew)):
		return time.Time{}, invalidGrant("assertion expired (exp is in the past); check the client's clock")
	case hasNbf && nbf.After(now.Add(skew)):
		return time.Time{}, invalidGrant("assertion not yet valid (nbf is in the future); check the client's clock")
	case hasIat && iat.After(now.Add(skew)):
		return time.Time{}, invalidGrant("assertion issued in the future (iat is in the future); check the client's clock")
	}
	// The lifetime is measured from iat (or nbf) because both come from the
	// client's own clock, so skew does not distort it. Without either, it is
	// measured from the emulator's clock and skew is allowed for.
	maxLife := s.MaxAssertionLifetime()
	switch {
	case hasIat:
		if exp.Sub(iat) > maxLife+roundingTolerance {
			return time.Time{}, invalidGrant(fmt.Sprintf("assertion lifetime too long (exp is more than %s after iat)", maxLife))
		}
	case hasNbf:
		if exp.Sub(nbf) > maxLife+roundingTolerance {
			return time.Time{}, invalidGrant(fmt.Sprintf("assertion lifetime too long (exp is more than %s after nbf)", maxLife))
		}
	default:
		if exp.Sub(now) > maxLife+skew {
			return time.Time{}, invalidGrant(fmt.Sprintf("assertion lifetime too long (exp is more than %s from now); check the client's clock", maxLife))
		}
	}
	return exp, nil
}

// numericDate reads an RFC 7519 NumericDate, keeping fractional seconds.
func numericDate(claims jwt.MapClaims, name string) (time.Time, bool, *oauthError) {
	v, ok := claims[name]
	if !ok || v == nil {
		return time.Time{}, false, nil
	}
	t, ok := toTime(v)
	if !ok {
		return time.Time{}, true, invalidGrant(name + " claim must be a NumericDate (seconds since the epoch)")
	}
	return t, true, nil
}

func toTime(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))), true
}

// recordAssertion copies the decodable parts of an assertion into rec.
func recordAssertion(tok *jwt.Token, claims jwt.MapClaims, rec *Request) {
	rec.Algorithm, _ = tok.Header["alg"].(string)
	rec.KeyID, _ = tok.Header["kid"].(string)
	rec.Issuer, _ = claims["iss"].(string)
	rec.Subject, _ = claims["sub"].(string)
	rec.JTI, _ = claims["jti"].(string)
	if len(rec.JTI) > jtiMaxLen {
		rec.JTI = rec.JTI[:jtiMaxLen]
	}
	rec.Audience, _ = claimStrings(claims["aud"])
	for name, dst := range map[string]**time.Time{"iat": &rec.IssuedAt, "nbf": &rec.NotBefore, "exp": &rec.Expiry} {
		if v, ok := claims[name]; ok {
			if t, ok := toTime(v); ok {
				*dst = &t
			}
		}
	}
}

// mint signs an access token for clientID.
func (s *Server) mint(clientID string, now time.Time) (*tokenResponse, *oauthError) {
	ttl := s.TokenTTL()
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return nil, &oauthError{status: http.StatusInternalServerError, code: "server_error", desc: "could not generate a token id"}
	}
	iat := jwt.NewNumericDate(now)
	claims := accessTokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.base,
			Subject:   clientID,
			Audience:  jwt.ClaimStrings{s.cfg.accessAudience},
			IssuedAt:  iat,
			NotBefore: iat,
			ExpiresAt: jwt.NewNumericDate(iat.Add(ttl)),
			ID:        hex.EncodeToString(jti[:]),
		},
		ClientID: clientID,
		TenantID: tenantOf(clientID),
		Scope:    s.cfg.scope,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = s.signKID
	tok.Header["typ"] = "at+jwt"
	signed, err := tok.SignedString(s.signKey)
	if err != nil {
		return nil, &oauthError{status: http.StatusInternalServerError, code: "server_error", desc: "could not sign the access token"}
	}
	return &tokenResponse{
		AccessToken: signed,
		ExpiresIn:   int64(ttl / time.Second),
		TokenType:   "Bearer",
		Scope:       s.cfg.scope,
	}, nil
}

func tenantOf(clientID string) string {
	for i := len(clientID) - 1; i >= 0; i-- {
		if clientID[i] == '@' {
			return clientID[i+1:]
		}
	}
	return ""
}

// delay waits d in real time; it reports false if the request or the server
// ended first.
func (s *Server) delay(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	s.stats.delayed.Add(1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

func (s *Server) clientKey(clientID string) string {
	if clientID != "" && s.lookupClient(clientID) != nil {
		return clientID
	}
	return UnknownClient
}

func (s *Server) applyReplaceOrDrop(w http.ResponseWriter, r *http.Request, rec *Request, start time.Time, f Fault, assertion string) {
	// The request is not processed, but tests still get to see what was sent.
	if assertion != "" {
		claims := jwt.MapClaims{}
		if tok, _, err := assertionParser.ParseUnverified(assertion, claims); tok != nil && err == nil {
			recordAssertion(tok, claims, rec)
		}
	}
	rec.Fault, rec.Outcome = true, OutcomeFault
	if f.kind() == faultDrop {
		rec.Status = 0
		s.record(rec, start)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close() // dropping the connection is the point; its close error is irrelevant
				return
			}
		}
		// Hijacking failed (not HTTP/1.x): the closest approximation is aborting the handler.
		panic(http.ErrAbortHandler)
	}
	rec.Status = f.Status
	s.record(rec, start)
	h := w.Header()
	for k, v := range f.Header {
		h.Set(k, v)
	}
	w.WriteHeader(f.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(f.Body))
	}
}

// finish writes a success or error response, applying a mutate fault to
// successes, and records the request.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, rec *Request, start time.Time, resp *tokenResponse, oerr *oauthError) {
	if oerr != nil {
		rec.Status, rec.Outcome, rec.Description = oerr.status, oerr.code, oerr.desc
		s.record(rec, start)
		writeOAuthError(w, oerr)
		return
	}
	var body []byte
	var err error
	if f, ok := s.faults.take(func(k faultKind) bool { return k == faultMutate }); ok {
		rec.Fault, rec.Outcome, rec.Latency = true, OutcomeFault, f.Latency
		if !s.delay(r.Context(), f.Latency) {
			s.finishAborted(rec, start)
			return
		}
		body, err = mutateResponse(resp, f)
	} else {
		rec.Outcome = OutcomeSuccess
		body, err = json.Marshal(resp) //nolint:gosec // G117: a token endpoint must send the access token
	}
	if err != nil {
		oerr := &oauthError{status: http.StatusInternalServerError, code: "server_error", desc: "could not encode the response"}
		rec.Status, rec.Outcome, rec.Description = oerr.status, oerr.code, oerr.desc
		s.record(rec, start)
		writeOAuthError(w, oerr)
		return
	}
	rec.Status = http.StatusOK
	s.record(rec, start)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	// RFC 6749 §5.1: token responses must not be cached.
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // a failed write means the client went away
}

func (s *Server) finishAborted(rec *Request, start time.Time) {
	rec.Fault, rec.Outcome, rec.Status = true, OutcomeFault, 0
	s.record(rec, start)
}

func mutateResponse(resp *tokenResponse, f Fault) ([]byte, error) {
	m := map[string]any{
		"access_token": resp.AccessToken,
		"expires_in":   resp.ExpiresIn,
		"token_type":   resp.TokenType,
		"scope":        resp.Scope,
	}
	for k, v := range f.Override {
		m[k] = v
	}
	for _, k := range f.Remove {
		delete(m, k)
	}
	return json.Marshal(m)
}

// record counts the request, keeps it in the history and calls the hook.
func (s *Server) record(rec *Request, start time.Time) {
	s.stats.count(s.clientKey(rec.ClientID), rec.Outcome)
	s.history.add(*rec)
	if s.cfg.hook != nil {
		s.cfg.hook(*rec)
	}
	if l := s.cfg.logger; l != nil {
		l.Info("token request", "client_id", rec.ClientID, "encoding", rec.Encoding, "outcome", rec.Outcome,
			"status", rec.Status, "fault", rec.Fault, "duration", time.Since(start).Round(time.Microsecond))
	}
}

func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	body, err := json.Marshal(map[string]string{"error": e.code, "error_description": e.desc})
	if err != nil {
		body = []byte(`{"error":"server_error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.status)
	_, _ = w.Write(body) // a failed write means the client went away
}

// AccessToken is what VerifyAccessToken learned from a valid access token.
type AccessToken struct {
	ClientID  string
	TenantID  string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// VerifyAccessToken checks an access token the way a resource server trusting
// this emulator would: signed with its key, issued by it, for its audience,
// and not expired on the emulator's clock. Errors never contain the token.
func (s *Server) VerifyAccessToken(token string) (AccessToken, error) {
	claims := &accessTokenClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return &s.signKey.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(s.base), jwt.WithAudience(s.cfg.accessAudience),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.Now))
	if err != nil {
		return AccessToken{}, fmt.Errorf("clearancetest: invalid access token: %w", err)
	}
	return AccessToken{
		ClientID:  claims.ClientID,
		TenantID:  claims.TenantID,
		IssuedAt:  claims.IssuedAt.Time,
		ExpiresAt: claims.ExpiresAt.Time,
	}, nil
}
