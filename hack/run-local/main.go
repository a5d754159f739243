// Command run-local runs the operator on this machine in one command, for a
// first look and for demos:
//
//	make run-local              # or: go run ./hack/run-local
//
// It starts, on loopback addresses only and inside a fresh temporary
// directory: a throwaway Kubernetes control plane (etcd and kube-apiserver via
// envtest, with the ClearanceCredential CRD installed), an in-process STS
// emulator issuing two-minute tokens (so a renewal shows up within the
// session), and the manager built from this checkout, which runs as a
// subprocess against a kubeconfig exactly as it would against a real cluster.
// It then applies a sample (a namespace, a connection Secret holding a fresh
// connection file, a ClearanceCredential) and prints, as they happen, the
// credential's conditions, the token Secret's expiry and decoded non-secret
// claims, and every renewal. The token itself is never printed.
//
// Ctrl-C (SIGINT) or SIGTERM stops everything it started and removes the
// temporary directory.
//
// Environment:
//
//	RUN_LOCAL_ONCE=1        exit 0 as soon as the sample credential is Ready and
//	                        its Secret holds a token; non-zero on failure or timeout
//	RUN_LOCAL_TIMEOUT=3m    how long to wait for Ready (default 3m)
//	CONNECTION_FILE=path    use this JSON Connection File instead of the emulator:
//	                        no emulator is started, tokens come from the STS it names
//	RUN_LOCAL_CLUSTER=1     also apply a ClusterClearanceCredential that shares the
//	                        sample connection (the sample namespace is the cluster
//	                        resource namespace) with two labelled namespaces, and
//	                        print how many of them hold its token
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Settings of a run-local session.
const (
	// emulatorTokenTTL is short so that a renewal (at about two thirds of the
	// lifetime) happens while a person is still watching.
	emulatorTokenTTL = 2 * time.Minute
	// defaultTimeout bounds the wait for the sample credential to become Ready.
	defaultTimeout = 3 * time.Minute
	// pollInterval is how often the credential and its Secret are read.
	pollInterval = time.Second
)

// Names of the sample objects, the same as in config/samples.
const (
	sampleNamespace        = "clearance-demo"
	sampleConnectionSecret = "clearance-connection"
	sampleCredential       = "clearance"
	sampleTokenSecret      = "clearance-token"

	// With RUN_LOCAL_CLUSTER: the cluster credential, its Secret, the label
	// selecting its namespaces, and those namespaces.
	sampleClusterCredential = "clearance-shared"
	sampleClusterSecret     = "clearance-shared-token"
	sampleClusterLabel      = "clearance.dev/demo"
)

// sampleClusterNamespaces are the namespaces the sample cluster credential selects.
var sampleClusterNamespaces = []string{"clearance-demo-a", "clearance-demo-b"}

// options are read from the environment, so that `make run-local` needs no
// arguments and `RUN_LOCAL_ONCE=1 make run-local` works in CI.
type options struct {
	once bool
	// cluster: also run the ClusterClearanceCredential sample.
	cluster        bool
	connectionFile string
	timeout        time.Duration
	// managerArgs are extra manager flags (MANAGER_ARGS, split on spaces),
	// e.g. the egress flags a CONNECTION_FILE naming a private STS needs.
	managerArgs []string
}

func loadOptions(getenv func(string) string) (options, error) {
	o := options{timeout: defaultTimeout, connectionFile: strings.TrimSpace(getenv("CONNECTION_FILE"))}
	if args := strings.Fields(getenv("MANAGER_ARGS")); len(args) > 0 {
		o.managerArgs = args
	}
	if v := strings.TrimSpace(getenv("RUN_LOCAL_ONCE")); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("RUN_LOCAL_ONCE=%q: want 1/true or 0/false", v)
		}
		o.once = b
	}
	if v := strings.TrimSpace(getenv("RUN_LOCAL_CLUSTER")); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("RUN_LOCAL_CLUSTER=%q: want 1/true or 0/false", v)
		}
		o.cluster = b
	}
	if v := strings.TrimSpace(getenv("RUN_LOCAL_TIMEOUT")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("RUN_LOCAL_TIMEOUT=%q: want a positive duration such as 3m", v)
		}
		o.timeout = d
	}
	return o, nil
}

func main() {
	// Only the first signal cancels the context; while the NotifyContext stays
	// registered, further Ctrl-Cs are swallowed instead of killing this
	// process halfway through its (time-bounded) cleanup, which would leave
	// etcd and kube-apiserver running.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) int {
	// envtest logs through controller-runtime's logger; without one it warns
	// on stderr. This program's output is its own lines only.
	log.SetLogger(zap.New(zap.WriteTo(io.Discard)))

	p := newPrinter(stdout)
	opts, err := loadOptions(getenv)
	if err != nil {
		p.say("error: %v", err)
		return 2
	}
	s := &session{opts: opts, out: p, stderr: stderr}
	defer s.stop()

	if err := s.start(ctx); err != nil {
		if errors.Is(err, context.Canceled) || ctx.Err() != nil {
			p.say("interrupted while starting; stopping")
			// An interrupted CI check has not shown that the operator works.
			if opts.once {
				return 1
			}
			return 0
		}
		p.say("error: %v", err)
		s.printManagerLogTail()
		return 1
	}
	return s.watch(ctx)
}
