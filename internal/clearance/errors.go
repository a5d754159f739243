package clearance

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ConnectionFileError reports why a JSON Connection File was refused.
//
// Field names the offending member using the file's own spelling (for example
// "ServicePrincipalKey.kty" or "SecurityTokenServiceBaseAddresses[1]"); it is empty
// when the problem concerns the whole document (size, JSON syntax). Problem is
// written by this package and never quotes the file's content, because the file
// holds a private key and the APIKey and error strings end up in logs and status
// conditions.
type ConnectionFileError struct {
	Field   string
	Problem string
}

// Error implements error: "connection file: <Field>: <Problem>" (or
// "connection file: <Problem>" when Field is empty).
func (e *ConnectionFileError) Error() string {
	if e.Field == "" {
		return "connection file: " + e.Problem
	}
	return "connection file: " + e.Field + ": " + e.Problem
}

// RejectedError means the STS understood the token request and refused it
// (HTTP 400/401/403). Retrying with the same connection file will not help: it is
// permanent until the input (key, clock, tenant registration) changes.
//
// Code is the RFC 6749 §5.2 "error" code (empty when the STS sent none) and
// Description the STS's error_description, sanitised to printable characters,
// with anything that looks like a JWT redacted, and capped at 200 characters.
// Error() carries the code only: the description is response text from an
// address a tenant chose, for the operator's log (see Hint for what it tells).
type RejectedError struct {
	Endpoint    string
	StatusCode  int
	Code        string
	Description string
}

// Error implements error.
func (e *RejectedError) Error() string {
	var b strings.Builder
	b.WriteString("STS ")
	b.WriteString(e.Endpoint)
	b.WriteString(" rejected the token request (HTTP ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	b.WriteString(")")
	if e.Code != "" {
		b.WriteString(": ")
		b.WriteString(e.Code)
	}
	return b.String()
}

// RateLimitedError means the STS answered 429 Too Many Requests. Mint does not
// fail over to another address in that case: the addresses front the same
// service and hammering the next one would only make things worse.
//
// RetryAfter is the server's Retry-After (delta-seconds or HTTP-date, computed
// against the client's clock), clamped to [0, 24h]; 0 when absent or unparsable.
type RateLimitedError struct {
	Endpoint   string
	RetryAfter time.Duration
}

// Error implements error.
func (e *RateLimitedError) Error() string {
	s := "STS " + e.Endpoint + " rate-limited the token request (HTTP 429)"
	if e.RetryAfter > 0 {
		s += ", retry after " + e.RetryAfter.String()
	}
	return s
}

// TransientError means the token request may succeed later or against another
// address: HTTP 5xx, an unexpected status, a network error or timeout, or a 2xx
// whose body is not a usable token response.
//
// StatusCode is 0 when no HTTP response was received. When every STS address
// failed, Mint returns the last attempt's TransientError with a Reason that lists
// all attempts briefly. Unwrap exposes the underlying context error or a
// classified network error (DNS, connection refused/reset, TLS) so that
// errors.Is(err, context.Canceled) works; unclassified transport errors are not
// exposed because their text may quote bytes the server sent.
type TransientError struct {
	Endpoint   string
	StatusCode int
	// Reason is the class of the failure (unreachable, timed out, TLS
	// failure, an HTTP status's meaning), safe to show the credential's owner.
	Reason string
	// Detail says more (connection refused, the certificate problem), for
	// the operator's own log only: shown to a tenant it would turn the
	// operator into a network scanner. Never part of Error().
	Detail string

	kind  transientKind
	cause error
}

// transientKind lets Hint give a precise hint without parsing Reason.
type transientKind int

const (
	kindUnknown         transientKind = iota
	kindNetwork                       // no HTTP response: DNS, connect, TLS, reset
	kindTimeout                       // the per-attempt timeout fired
	kindCanceled                      // the caller's context ended
	kindStatus                        // unexpected HTTP status (5xx, 404, redirect, ...)
	kindInvalidResponse               // 2xx with a body that is not a usable token response
	kindExpiredToken                  // the issued token is already expired by our clock
)

// Error implements error.
func (e *TransientError) Error() string {
	s := "token request to STS " + e.Endpoint + " failed"
	if e.StatusCode != 0 {
		s += " (HTTP " + strconv.Itoa(e.StatusCode) + ")"
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Detail returns what err says beyond its Error() for the operator's own log:
// the network detail of a TransientError, the error_description of a
// RejectedError; "" for anything else.
func Detail(err error) string {
	var (
		te *TransientError
		re *RejectedError
	)
	switch {
	case errors.As(err, &te):
		return te.Detail
	case errors.As(err, &re):
		return re.Description
	}
	return ""
}

// Unwrap returns the underlying network or context error, if any.
func (e *TransientError) Unwrap() error { return e.cause }

// Timeout reports whether the attempt failed because the per-attempt timeout fired.
func (e *TransientError) Timeout() bool { return e.kind == kindTimeout }

// maxDescriptionLen caps how much of an STS-supplied error_description is kept.
const maxDescriptionLen = 200

// jwtLike matches compact JWS/JWE serialisations (base64url JSON header starting
// with "eyJ"), so that an STS echoing the assertion or a token back in an error
// description cannot smuggle a credential into our error strings.
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*`)

// sanitizeText makes server- or transport-supplied text safe to embed in an error:
// it removes every occurrence of the given secrets, redacts JWT-like strings,
// replaces invalid UTF-8 and non-printable characters with spaces, collapses
// runs of spaces and caps the result at maxRunes runes.
func sanitizeText(s string, maxRunes int, secrets ...string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	s = jwtLike.ReplaceAllString(s, "[redacted]")
	var b strings.Builder
	n := 0
	lastSpace := true
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == utf8.RuneError || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			r = ' '
		}
		if r == ' ' {
			if lastSpace {
				continue
			}
			lastSpace = true
		} else {
			lastSpace = false
		}
		if n == maxRunes {
			b.WriteString("...")
			break
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}

// sanitizeErrorCode keeps an RFC 6749 "error" code only if it is made of the
// characters the RFC allows (%x20-21 / %x23-5B / %x5D-7E) and is reasonably
// short; anything else is not a real error code and is dropped.
func sanitizeErrorCode(code string) string {
	if code == "" || len(code) > 64 {
		return ""
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return ""
		}
	}
	return sanitizeText(code, 64)
}
