package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/clearance-operator/clearance-operator/internal/clearance"
)

// egressFlags are the flags that widen the STS destination policy, shared
// by the manager and the mint subcommand so both reach the same addresses.
type egressFlags struct {
	allowCIDRs string
	allowHTTP  bool
	caBundle   string
}

func (e *egressFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&e.allowCIDRs, "sts-allow-cidrs", "",
		"Comma-separated CIDRs whose addresses may be dialled as STS addresses although they are not public (loopback, private, link-local), e.g. 127.0.0.0/8 for a local emulator.")
	fs.BoolVar(&e.allowHTTP, "sts-allow-http", false,
		"Accept plain http:// STS addresses (the assertion and the token then travel in clear text): for tests and local emulators only.")
	fs.StringVar(&e.caBundle, "sts-ca-bundle", "",
		"PEM file of CA certificates trusted for STS addresses instead of the system roots, for a private STS.")
}

// options turns the flags into the client's egress options.
func (e *egressFlags) options() (clearance.EgressOptions, error) {
	prefixes, err := clearance.ParseCIDRs(e.allowCIDRs)
	if err != nil {
		return clearance.EgressOptions{}, fmt.Errorf("--sts-allow-cidrs: %w", err)
	}
	opts := clearance.EgressOptions{Policy: clearance.DestinationPolicy{AllowHTTP: e.allowHTTP, AllowedPrefixes: prefixes}}
	if e.caBundle != "" {
		pem, err := os.ReadFile(e.caBundle)
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
