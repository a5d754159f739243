// Command sts-emulator runs a local emulator of the Clearance security token
// service for local runs, demos, benchmarks and fault tests.
//
//	go run ./hack/sts-emulator --listen 127.0.0.1:8090 --write-connection-file /tmp/clearance.json
//
// Once it accepts connections it prints exactly one line to standard output,
//
//	sts-emulator listening on <base URL>
//
// where the base URL is what connection files list as
// SecurityTokenServiceBaseAddresses (server root + "/connect"). Connection
// files requested with --write-connection-file are written before that line.
// Logs go to standard error and never contain assertions, tokens or keys.
// SIGINT or SIGTERM shut it down gracefully (exit status 0).
//
// Faults, statistics and settings can be changed at run time through the
// loopback-only admin endpoints under /_emulator/ (see package clearancetest),
// for example:
//
//	curl -X POST -H 'Content-Type: application/json' -d '{"count": 3, "status": 503}' http://127.0.0.1:8090/_emulator/faults
//	curl -X POST -H 'Content-Type: application/json' -d '{"status": 429, "header": {"Retry-After": "5"}}' http://127.0.0.1:8090/_emulator/faults
//	curl -X POST -H 'Content-Type: application/json' -d '{"count": 1, "override": {"expires_in": "3600"}}' http://127.0.0.1:8090/_emulator/faults
//	curl -X DELETE http://127.0.0.1:8090/_emulator/faults
//	curl http://127.0.0.1:8090/_emulator/stats
//	curl -X POST -H 'Content-Type: application/json' -d '{"client_id": "151@tenant123"}' http://127.0.0.1:8090/_emulator/revoke
//	curl -X POST -H 'Content-Type: application/json' -d '{"clock_offset": "-10m", "token_ttl": "2m"}' http://127.0.0.1:8090/_emulator/settings
//	curl -X POST -H 'Content-Type: application/json' -d '{"duration": "30s"}' http://127.0.0.1:8090/_emulator/stop-listening
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

// maxGeneratedFiles bounds --count times the number of --write-connection-file paths.
const maxGeneratedFiles = 10_000

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	listen               string
	writeFiles           stringList
	count                int
	trustFiles           stringList
	tokenTTL             time.Duration
	maxAssertionLifetime time.Duration
	clockSkew            time.Duration
	clockOffset          time.Duration
	useTLS               bool
	caFile               string
	requireAudience      bool
	audiences            stringList
	tenant               string
	serviceName          string
	admin                bool
	invalidClientStatus  int
	verbose              bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("sts-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8090", "loopback `address` to listen on (port 0 picks a free port)")
	fs.Var(&o.writeFiles, "write-connection-file", "generate a new client and write its connection file to `PATH` (repeatable)")
	fs.IntVar(&o.count, "count", 1, "write `N` files per --write-connection-file path, suffixed -1 … -N before the extension")
	fs.Var(&o.trustFiles, "trust-connection-file", "trust the key in the connection file at `PATH` (repeatable)")
	fs.DurationVar(&o.tokenTTL, "token-ttl", clearancetest.DefaultTokenTTL, "lifetime of issued access tokens")
	fs.DurationVar(&o.maxAssertionLifetime, "max-assertion-lifetime", clearancetest.DefaultMaxAssertionLifetime, "longest accepted exp - iat of an assertion")
	fs.DurationVar(&o.clockSkew, "clock-skew", clearancetest.DefaultClockSkew, "clock skew allowed when checking exp, nbf and iat")
	fs.DurationVar(&o.clockOffset, "clock-offset", 0, "run the emulator's clock ahead (e.g. 10m) or behind (e.g. -10m)")
	fs.BoolVar(&o.useTLS, "tls", false, "serve HTTPS with a self-signed certificate")
	fs.StringVar(&o.caFile, "ca-file", "", "with --tls, write the certificate clients must trust to `PATH` (PEM)")
	fs.BoolVar(&o.requireAudience, "require-audience", false, "require an aud claim naming the token endpoint URL or the base URL")
	fs.Var(&o.audiences, "audience", "accepted aud `value` (repeatable; implies --require-audience)")
	fs.StringVar(&o.tenant, "tenant", clearancetest.DefaultTenant, "TenantId of generated connection files")
	fs.StringVar(&o.serviceName, "service-name", clearancetest.DefaultServiceName, "service name in generated key ids")
	fs.BoolVar(&o.admin, "admin", true, "serve the loopback-only admin endpoints under /_emulator/")
	fs.IntVar(&o.invalidClientStatus, "invalid-client-status", 400, "HTTP status of invalid_client errors (400 or 401)")
	fs.BoolVar(&o.verbose, "verbose", false, "log one line per token request")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case o.count < 1:
		return nil, errors.New("--count must be at least 1")
	case o.count*len(o.writeFiles) > maxGeneratedFiles:
		return nil, fmt.Errorf("at most %d connection files can be generated", maxGeneratedFiles)
	case o.caFile != "" && !o.useTLS:
		return nil, errors.New("--ca-file requires --tls")
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "sts-emulator:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := start(o, logger)
	if err != nil {
		logger.Error("sts-emulator: start failed", "error", err)
		return 1
	}
	if err := prepare(srv, o, logger); err != nil {
		logger.Error("sts-emulator: start failed", "error", err)
		srv.Close()
		return 1
	}
	if _, err := fmt.Fprintf(stdout, "sts-emulator listening on %s\n", srv.BaseURL()); err != nil {
		srv.Close()
		return 1
	}

	<-ctx.Done()
	stop() // a second signal now kills the process the default way
	logger.Info("sts-emulator: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Error("sts-emulator: shutdown", "error", err)
		return 1
	}
	return 0
}

func start(o *options, logger *slog.Logger) (*clearancetest.Server, error) {
	opts := []clearancetest.Option{
		clearancetest.WithAddress(o.listen),
		clearancetest.WithTokenTTL(o.tokenTTL),
		clearancetest.WithMaxAssertionLifetime(o.maxAssertionLifetime),
		clearancetest.WithClockSkew(o.clockSkew),
		clearancetest.WithClockOffset(o.clockOffset),
		clearancetest.WithTenant(o.tenant),
		clearancetest.WithServiceName(o.serviceName),
		clearancetest.WithInvalidClientStatus(o.invalidClientStatus),
	}
	if o.useTLS {
		opts = append(opts, clearancetest.WithTLS())
	}
	if o.requireAudience || len(o.audiences) > 0 {
		opts = append(opts, clearancetest.WithRequiredAudience(o.audiences...))
	}
	if !o.admin {
		opts = append(opts, clearancetest.WithoutAdmin())
	}
	if o.verbose {
		opts = append(opts, clearancetest.WithLogger(logger))
	}
	return clearancetest.NewServer(opts...)
}

// prepare writes the CA file, trusts and writes connection files.
func prepare(srv *clearancetest.Server, o *options, logger *slog.Logger) error {
	if o.caFile != "" {
		if err := os.WriteFile(o.caFile, srv.CACertPEM(), 0o644); err != nil { //nolint:gosec // a CA certificate is public
			return fmt.Errorf("writing CA file: %w", err)
		}
		logger.Info("sts-emulator: wrote CA certificate", "path", o.caFile)
	}
	for _, path := range o.trustFiles {
		data, err := os.ReadFile(path) //nolint:gosec // the operator names the file on the command line
		if err != nil {
			return fmt.Errorf("reading connection file: %w", err)
		}
		id, err := srv.TrustConnectionFile(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		logger.Info("sts-emulator: trusting connection file", "path", path, "client_id", id)
	}
	var paths []string
	for _, p := range o.writeFiles {
		paths = append(paths, numbered(p, o.count)...)
	}
	keys, err := generateKeys(len(paths))
	if err != nil {
		return err
	}
	for i, p := range paths {
		cf, err := srv.NewConnectionFileWithKey(keys[i])
		if err != nil {
			return err
		}
		if err := cf.WriteFile(p); err != nil {
			return err
		}
		logger.Info("sts-emulator: wrote connection file", "path", p, "client_id", cf.ClientID())
	}
	return nil
}

// numbered returns path itself for n == 1, else path with "-1" … "-n"
// inserted before its extension ("conn.json" → "conn-1.json").
func numbered(path string, n int) []string {
	if n == 1 {
		return []string{path}
	}
	ext := filepath.Ext(path)
	stem := strings.TrimSuffix(path, ext)
	out := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("%s-%d%s", stem, i, ext))
	}
	return out
}

// generateKeys makes n RSA-2048 keys on all CPUs: key generation is slow,
// which adds up for a large --count.
func generateKeys(n int) ([]*rsa.PrivateKey, error) {
	keys := make([]*rsa.PrivateKey, n)
	errs := make([]error, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			for i := range next {
				keys[i], errs[i] = rsa.GenerateKey(rand.Reader, 2048)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("generating client keys: %w", err)
	}
	return keys, nil
}
