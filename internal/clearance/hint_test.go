package clearance

import (
	"errors"
	"fmt"
	"testing"
)

func TestHint(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"unrelated", errors.New("boom"), ""},
		{"expired assertion", &RejectedError{StatusCode: 400, Code: "invalid_grant", Description: "The token is expired"}, HintClockSkew},
		{"nbf", &RejectedError{StatusCode: 400, Code: "invalid_client", Description: "nbf is in the future"}, HintClockSkew},
		{"iat", &RejectedError{StatusCode: 400, Code: "invalid_grant", Description: "bad iat"}, HintClockSkew},
		{"clock", &RejectedError{StatusCode: 401, Code: "", Description: "check your clock"}, HintClockSkew},
		{"invalid_client", &RejectedError{StatusCode: 401, Code: "invalid_client"}, HintRejectedKey},
		{"unauthorized_client", &RejectedError{StatusCode: 400, Code: "unauthorized_client", Description: "disabled"}, HintRejectedKey},
		{"invalid_grant", &RejectedError{StatusCode: 400, Code: "invalid_grant", Description: "signature"}, HintInvalidGrant},
		{"unsupported_grant_type", &RejectedError{StatusCode: 400, Code: "unsupported_grant_type"}, HintUnsupportedType},
		{"invalid_request", &RejectedError{StatusCode: 400, Code: "invalid_request"}, HintInvalidRequest},
		{"403", &RejectedError{StatusCode: 403}, HintRefused},
		{"rate limited", &RateLimitedError{}, HintRateLimited},
		{"network", &TransientError{kind: kindNetwork}, HintUnreachable},
		{"external transient without status", &TransientError{Reason: "x"}, HintUnreachable},
		{"timeout", &TransientError{kind: kindTimeout}, HintTimeout},
		{"canceled", &TransientError{kind: kindCanceled}, ""},
		{"5xx", &TransientError{StatusCode: 502}, HintServerError},
		{"404", &TransientError{StatusCode: 404}, HintWrongAddress},
		{"bad 200", &TransientError{StatusCode: 200, kind: kindInvalidResponse}, HintInvalidResponse},
		{"expired token", &TransientError{StatusCode: 200, kind: kindExpiredToken}, HintExpiredToken},
		{"connection file", &ConnectionFileError{Field: "TenantId", Problem: "missing"}, HintConnectionFile},
		{"wrapped", fmt.Errorf("reconcile: %w", &RejectedError{Code: "invalid_client"}), HintRejectedKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Hint(tt.err); got != tt.want {
				t.Errorf("Hint() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorStrings(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&ConnectionFileError{Field: "TenantId", Problem: "missing"}, "connection file: TenantId: missing"},
		{&ConnectionFileError{Problem: "invalid JSON at byte offset 3"}, "connection file: invalid JSON at byte offset 3"},
		{&RejectedError{Endpoint: "https://sts/connect/token", StatusCode: 400, Code: "invalid_grant", Description: "expired"},
			"STS https://sts/connect/token rejected the token request (HTTP 400): invalid_grant"},
		{&RejectedError{Endpoint: "https://sts/connect/token", StatusCode: 403}, "STS https://sts/connect/token rejected the token request (HTTP 403)"},
		{&RateLimitedError{Endpoint: "https://sts/connect/token", RetryAfter: 30e9}, "STS https://sts/connect/token rate-limited the token request (HTTP 429), retry after 30s"},
		{&RateLimitedError{Endpoint: "https://sts/connect/token"}, "STS https://sts/connect/token rate-limited the token request (HTTP 429)"},
		{&TransientError{Endpoint: "https://sts/connect/token", StatusCode: 503, Reason: "STS server error"}, "token request to STS https://sts/connect/token failed (HTTP 503): STS server error"},
		{&TransientError{Endpoint: "https://sts/connect/token", Reason: "connection refused"}, "token request to STS https://sts/connect/token failed: connection refused"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestSanitizeText(t *testing.T) {
	tests := []struct {
		in, want string
		max      int
		secrets  []string
	}{
		{"plain text", "plain text", 200, nil},
		{"a\r\nb\x00\x7fc  d", "a b c d", 200, nil},
		{"bad utf8 \xff\xfe end", "bad utf8 end", 200, nil},
		{"token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln here", "token [redacted] here", 200, nil},
		{"secret abc123 here", "secret [redacted] here", 200, []string{"abc123"}},
		{"abcdef", "abc...", 3, nil},
	}
	for _, tt := range tests {
		if got := sanitizeText(tt.in, tt.max, tt.secrets...); got != tt.want {
			t.Errorf("sanitizeText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
