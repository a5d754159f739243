// Package conncheck checks a JSON Connection File by minting one token with
// the operator's own STS client. It is what `clearance-operator mint` and
// `kubectl clearance check` run, so both report the same thing the same way:
// where the token came from, its expiry and its decoded claims, never the
// token, the assertion or any member of the file's private key.
package conncheck

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"k8s.io/utils/clock"

	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/tokeninfo"
)

// Exit statuses of a check, as the commands return them.
const (
	// ExitOK: a token was minted.
	ExitOK = 0
	// ExitFailed: the connection file or the token request failed.
	ExitFailed = 1
	// ExitUsage: the command line was wrong.
	ExitUsage = 2
)

// Options select what a check sends.
type Options struct {
	// Audience is the assertion's optional aud claim.
	Audience string
	// Encoding of the token request body.
	Encoding clearance.Encoding
	// Timeout bounds the whole token request, failover included.
	Timeout time.Duration
	// PrintToken also prints the access token (mint --print-token only).
	PrintToken bool
	// Egress is where the check may send the request: the operator's
	// destination policy, widened by the same flags.
	Egress clearance.EgressOptions
}

// EgressOptions builds the egress options from the values of the
// --sts-allow-cidrs, --sts-allow-http and --sts-ca-bundle flags that the
// manager, the mint subcommand and the kubectl plugin share.
func EgressOptions(allowCIDRs string, allowHTTP bool, caBundle string) (clearance.EgressOptions, error) {
	prefixes, err := clearance.ParseCIDRs(allowCIDRs)
	if err != nil {
		return clearance.EgressOptions{}, fmt.Errorf("--sts-allow-cidrs: %w", err)
	}
	opts := clearance.EgressOptions{Policy: clearance.DestinationPolicy{AllowHTTP: allowHTTP, AllowedPrefixes: prefixes}}
	if caBundle != "" {
		pem, err := os.ReadFile(caBundle) //nolint:gosec // the user names the bundle
		if err != nil {
			return clearance.EgressOptions{}, fmt.Errorf("--sts-ca-bundle: %w", err)
		}
		opts.RootCAs = x509.NewCertPool()
		if !opts.RootCAs.AppendCertsFromPEM(pem) {
			return clearance.EgressOptions{}, errors.New("--sts-ca-bundle: no PEM certificate found")
		}
	}
	return opts, nil
}

// ParseEncoding reads "form" or "json", case-insensitive (the CRD spells them
// Form and JSON).
func ParseEncoding(s string) (clearance.Encoding, error) {
	switch strings.ToLower(s) {
	case "form":
		return clearance.EncodingForm, nil
	case "json":
		return clearance.EncodingJSON, nil
	}
	return "", fmt.Errorf("--encoding must be form or json")
}

// ReadFile reads at most one byte more than the parser accepts, so a wrong
// path to a huge file fails fast instead of filling memory.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // the user names the file to check
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return io.ReadAll(io.LimitReader(f, clearance.MaxConnectionFileSize+1))
}

// Run parses the connection file in data, mints one token and prints what it
// learned to stdout, errors with a hint to stderr. It returns ExitOK or
// ExitFailed.
func Run(ctx context.Context, data []byte, opts Options, stdout, stderr io.Writer) int {
	clientOpts := []clearance.Option{clearance.WithEgress(opts.Egress), clearance.WithClock(clock.RealClock{})}
	if opts.Timeout > 0 {
		clientOpts = append(clientOpts, clearance.WithMintTimeout(opts.Timeout))
	}
	sts := clearance.NewClient(clientOpts...)
	conn, err := sts.LoadConnectionFile(data)
	if err != nil {
		// The parser's errors name the field and the problem, never the content
		// (the file holds a private key).
		_, _ = fmt.Fprintf(stderr, "error: invalid %v\nhint: %s\n", err, clearance.HintConnectionFile)
		return ExitFailed
	}
	keyID := conn.KeyID
	if keyID == "" {
		keyID = "(none)"
	}
	_, _ = fmt.Fprintf(stdout, "client_id:  %s\nkey id:     %s\nSTS:        %s\n", conn.ClientID(), keyID, strings.Join(conn.STSBaseAddresses, ", "))

	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	enc := opts.Encoding
	if enc == "" {
		enc = clearance.EncodingForm
	}
	token, err := sts.Mint(ctx, clearance.MintRequest{Connection: conn, Audience: opts.Audience, Encoding: enc})
	if err != nil {
		// The client's errors carry no token, assertion or key material.
		_, _ = fmt.Fprintf(stderr, "error: token request failed: %v\n", err)
		// This is the file owner's own terminal: the detail a tenant's
		// status never shows helps here.
		if detail := clearance.Detail(err); detail != "" {
			_, _ = fmt.Fprintf(stderr, "detail: %s\n", detail)
		}
		if hint := clearance.Hint(err); hint != "" {
			_, _ = fmt.Fprintf(stderr, "hint: %s\n", hint)
		}
		return ExitFailed
	}
	_, _ = fmt.Fprintf(stdout, "endpoint:   %s\ntoken type: %s\nexpires at: %s (in %s)\n",
		token.Endpoint, token.TokenType, token.ExpiresAt.UTC().Format(time.RFC3339), time.Until(token.ExpiresAt).Round(time.Second))
	if claims := tokeninfo.Claims(token.AccessToken); len(claims) > 0 {
		_, _ = fmt.Fprintf(stdout, "claims (decoded, not verified):\n  %s\n", tokeninfo.Join(claims, ": ", "\n  "))
	}
	if opts.PrintToken {
		_, _ = fmt.Fprintf(stdout, "token:      %s\n", token.AccessToken)
	} else {
		_, _ = fmt.Fprintf(stdout, "token:      sha256 %s..., not printed\n", tokeninfo.Fingerprint([]byte(token.AccessToken)))
	}
	return ExitOK
}
