package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"k8s.io/utils/clock"

	"github.com/clearance-operator/clearance-operator/internal/clearance"
)

// Claims of an access token that are safe to print: identity and timing, no
// signature and no token material.
var printableClaims = []string{"iss", "sub", "aud", "client_id", "tenant_id", "tid", "scope", "iat", "nbf", "exp", "jti"}

// runMint implements `clearance-operator mint`: one token request with the
// operator's own code path, to validate a connection file before deploying.
// It prints where the token came from, its expiry and its non-secret claims;
// the token itself only with --print-token. Exit status: 0 minted, 1 the file
// or the request failed, 2 usage error.
func runMint(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clearance-operator mint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprintln(stderr, "usage: clearance-operator mint --connection-file FILE [--audience AUD] [--encoding form|json] [--timeout 30s] [--sts-allow-http] [--sts-allow-cidrs CIDRS] [--sts-ca-bundle FILE] [--print-token]")
		_, _ = fmt.Fprintln(stderr, "Requests one token with the operator's own code path and prints its endpoint, expiry and claims (not the token).")
		fs.PrintDefaults()
	}
	file := fs.String("connection-file", "", "Path of the JSON Connection File (required).")
	audience := fs.String("audience", "", "Optional aud claim of the assertion.")
	encoding := fs.String("encoding", "form", "Token request body encoding: form or json.")
	timeout := fs.Duration("timeout", 30*time.Second, "Overall timeout.")
	printToken := fs.Bool("print-token", false, "Also print the access token itself (it is a credential: keep it out of logs).")
	var egress egressFlags
	egress.bind(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case fs.NArg() > 0:
		_, _ = fmt.Fprintf(stderr, "error: unexpected arguments %q (flags only; see --help)\n", fs.Args())
		return 2
	case *file == "":
		_, _ = fmt.Fprintln(stderr, "error: --connection-file is required")
		return 2
	case *timeout <= 0:
		_, _ = fmt.Fprintln(stderr, "error: --timeout must be positive")
		return 2
	}
	var enc clearance.Encoding
	switch strings.ToLower(*encoding) {
	case "form":
		enc = clearance.EncodingForm
	case "json":
		enc = clearance.EncodingJSON
	default:
		_, _ = fmt.Fprintln(stderr, "error: --encoding must be form or json")
		return 2
	}

	data, err := readConnectionFile(*file)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "error: cannot read the connection file: %v\n", err)
		return 1
	}
	egressOpts, err := egress.options()
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "error: %v\n", err)
		return 2
	}
	sts := clearance.NewClient(clearance.WithEgress(egressOpts), clearance.WithClock(clock.RealClock{}), clearance.WithMintTimeout(*timeout))
	conn, err := sts.LoadConnectionFile(data)
	if err != nil {
		// The parser's errors name the field and the problem, never the content
		// (the file holds a private key).
		_, _ = fmt.Fprintf(stderr, "error: invalid %v\nhint: %s\n", err, clearance.HintConnectionFile)
		return 1
	}
	keyID := conn.KeyID
	if keyID == "" {
		keyID = "(none)"
	}
	_, _ = fmt.Fprintf(stdout, "client_id:  %s\nkey id:     %s\nSTS:        %s\n", conn.ClientID(), keyID, strings.Join(conn.STSBaseAddresses, ", "))

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	token, err := sts.Mint(ctx, clearance.MintRequest{Connection: conn, Audience: *audience, Encoding: enc})
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
		return 1
	}
	_, _ = fmt.Fprintf(stdout, "endpoint:   %s\ntoken type: %s\nexpires at: %s (in %s)\n",
		token.Endpoint, token.TokenType, token.ExpiresAt.UTC().Format(time.RFC3339), time.Until(token.ExpiresAt).Round(time.Second))
	if claims := decodeClaims(token.AccessToken); len(claims) > 0 {
		_, _ = fmt.Fprintln(stdout, "claims:")
		for _, line := range claims {
			_, _ = fmt.Fprintf(stdout, "  %s\n", line)
		}
	}
	if *printToken {
		_, _ = fmt.Fprintf(stdout, "token:      %s\n", token.AccessToken)
	} else {
		_, _ = fmt.Fprintln(stdout, "token:      not printed (--print-token prints it)")
	}
	return 0
}

// readConnectionFile reads at most one byte more than the parser accepts, so
// a wrong path to a huge file fails fast instead of filling memory.
func readConnectionFile(path string) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // the user names the file to check
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return io.ReadAll(io.LimitReader(f, clearance.MaxConnectionFileSize+1))
}

// decodeClaims returns the printable claims of a JWT access token, unverified
// (this is a display, not a trust decision); nothing for an opaque token.
func decodeClaims(accessToken string) []string {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(accessToken, claims); err != nil {
		return nil
	}
	var out []string
	for _, name := range printableClaims {
		v, ok := claims[name]
		if !ok {
			continue
		}
		switch name {
		case "iat", "nbf", "exp":
			if f, ok := v.(float64); ok {
				out = append(out, fmt.Sprintf("%s: %s", name, time.Unix(int64(f), 0).UTC().Format(time.RFC3339)))
				continue
			}
		}
		b, err := json.Marshal(v)
		if err != nil {
			continue
		}
		out = append(out, fmt.Sprintf("%s: %s", name, b))
	}
	sort.Strings(out)
	return out
}
