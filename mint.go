package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/clearance-operator/clearance-operator/internal/conncheck"
)

// runMint implements `clearance-operator mint`: one token request with the
// operator's own code path, to validate a connection file before deploying.
// It prints where the token came from, its expiry and its non-secret claims;
// the token itself only with --print-token. Exit status: 0 minted, 1 the file
// or the request failed, 2 usage error. `kubectl clearance check` runs the
// same check (internal/conncheck).
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
			return conncheck.ExitOK
		}
		return conncheck.ExitUsage
	}
	enc, encErr := conncheck.ParseEncoding(*encoding)
	switch {
	case fs.NArg() > 0:
		_, _ = fmt.Fprintf(stderr, "error: unexpected arguments %q (flags only; see --help)\n", fs.Args())
		return conncheck.ExitUsage
	case *file == "":
		_, _ = fmt.Fprintln(stderr, "error: --connection-file is required")
		return conncheck.ExitUsage
	case *timeout <= 0:
		_, _ = fmt.Fprintln(stderr, "error: --timeout must be positive")
		return conncheck.ExitUsage
	case encErr != nil:
		_, _ = fmt.Fprintf(stderr, "error: %v\n", encErr)
		return conncheck.ExitUsage
	}

	data, err := conncheck.ReadFile(*file)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "error: cannot read the connection file: %v\n", err)
		return conncheck.ExitFailed
	}
	egressOpts, err := conncheck.EgressOptions(egress.allowCIDRs, egress.allowHTTP, egress.caBundle)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "error: %v\n", err)
		return conncheck.ExitUsage
	}
	return conncheck.Run(context.Background(), data, conncheck.Options{
		Audience: *audience, Encoding: enc, Timeout: *timeout, PrintToken: *printToken, Egress: egressOpts,
	}, stdout, stderr)
}
