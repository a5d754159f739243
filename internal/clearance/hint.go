package clearance

import (
	"errors"
	"regexp"
)

// Hints returned by Hint. They are exported so callers (and tests) can match
// them, but their wording may change.
//
//nolint:gosec // G101 mistakes the word "token" in these messages for credentials.
const (
	HintClockSkew       = "the STS rejected the assertion's timestamps: check that this node's clock is synchronised (NTP)"
	HintRejectedKey     = "the STS rejected the service principal key: it may have been revoked or the connection file is outdated"
	HintInvalidGrant    = "the STS rejected the signed assertion: the connection file's key may not match the integration account, or the clock may be wrong"
	HintUnsupportedType = "the STS does not accept the JWT-bearer grant at this address: check SecurityTokenServiceBaseAddresses"
	HintInvalidRequest  = "the STS rejected the request format: try the other request encoding (Form/JSON)"
	HintRefused         = "the STS refused the request: check the connection file and the STS address"
	HintRateLimited     = "the STS is rate-limiting token requests: requests are retried after the Retry-After delay"
	HintUnreachable     = "could not reach the STS: check network/DNS/egress"
	HintTimeout         = "the STS did not answer in time: check network/egress and the STS's health"
	HintServerError     = "the STS is failing (HTTP 5xx): this is usually a temporary outage on the STS side"
	HintWrongAddress    = "the STS address does not serve a token endpoint: check SecurityTokenServiceBaseAddresses"
	HintInvalidResponse = "the STS returned something that is not a token response: check that the address points at the token service, not a proxy or login page"
	HintExpiredToken    = "the STS issued a token that is already expired by this node's clock: check that the clock is synchronised (NTP)"
	HintConnectionFile  = "the JSON Connection File is invalid: download a new one from Clearance for this integration account"
)

// timeWords detects rejections caused by clock skew in an error_description,
// e.g. "IDX10223: Lifetime validation failed. The token is expired." or
// "The token is not yet valid" or "nbf is in the future".
var timeWords = regexp.MustCompile(`(?i)\b(exp|nbf|iat|expired|expiry|expiration|lifetime|not yet valid|clock|skew|time|timestamp|in the future)\b`)

// Hint returns a short human hint for an error returned by this package (clock
// skew, rejected key, unreachable STS, ...), or "" when it has none.
func Hint(err error) string {
	if err == nil {
		return ""
	}
	var (
		rejected *RejectedError
		limited  *RateLimitedError
		trans    *TransientError
		cfErr    *ConnectionFileError
	)
	switch {
	case errors.As(err, &rejected):
		if timeWords.MatchString(rejected.Description) {
			return HintClockSkew
		}
		switch rejected.Code {
		case "invalid_client", "unauthorized_client":
			return HintRejectedKey
		case "invalid_grant":
			return HintInvalidGrant
		case "unsupported_grant_type":
			return HintUnsupportedType
		case "invalid_request":
			return HintInvalidRequest
		}
		return HintRefused
	case errors.As(err, &limited):
		return HintRateLimited
	case errors.As(err, &trans):
		return transientHint(trans)
	case errors.As(err, &cfErr):
		return HintConnectionFile
	}
	return ""
}

func transientHint(e *TransientError) string {
	switch e.kind {
	case kindCanceled:
		return ""
	case kindTimeout:
		return HintTimeout
	case kindNetwork:
		return HintUnreachable
	case kindInvalidResponse:
		return HintInvalidResponse
	case kindExpiredToken:
		return HintExpiredToken
	}
	// kindStatus, or a TransientError built outside this package: go by status.
	switch {
	case e.StatusCode == 0:
		return HintUnreachable
	case e.StatusCode >= 500:
		return HintServerError
	case e.StatusCode == 404 || e.StatusCode == 405 || (e.StatusCode >= 300 && e.StatusCode < 400):
		return HintWrongAddress
	case e.StatusCode >= 200 && e.StatusCode < 300:
		return HintInvalidResponse
	}
	return ""
}
