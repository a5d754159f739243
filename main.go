// Command clearance-operator is the manager of the ClearanceCredential
// controller. `clearance-operator mint` checks a connection file by minting
// one token with the operator's own code path.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/controller"
	"github.com/clearance-operator/clearance-operator/internal/logsafe"
)

// LeaderElectionID is the fixed name of the leader election Lease.
const LeaderElectionID = "clearance-operator.clearance.dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "mint" {
		os.Exit(runMint(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(runManager(os.Args[1:]))
}

func runManager(args []string) int {
	var (
		metricsAddr             string
		metricsCertDir          string
		probeAddr               string
		leaderElect             bool
		leaderElectionNamespace string
		leaseDuration           time.Duration
		renewDeadline           time.Duration
		retryPeriod             time.Duration
		namespaces              string
		maxConcurrentReconciles int
		kubeAPIQPS              float64
		kubeAPIBurst            int
		gracefulShutdown        time.Duration
		renewalSpread           float64
		egress                  egressFlags
		stsRequestsPerSecond    float64
		stsRequestBurst         int
		mintsPerNamespace       int
		minForcedMintInterval   time.Duration
		clusterResourceNS       string
	)
	fs := flag.NewFlagSet("clearance-operator", flag.ContinueOnError)
	fs.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address of the secure (HTTPS, authenticated and authorized) metrics endpoint; 0 disables it.")
	fs.StringVar(&metricsCertDir, "metrics-cert-dir", "", "Directory holding tls.crt and tls.key for the metrics endpoint (a mounted kubernetes.io/tls Secret); empty serves a self-signed certificate.")
	fs.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the health probe endpoint; 0 disables it.")
	fs.BoolVar(&leaderElect, "leader-elect", false, "Enable leader election, for running more than one replica.")
	// In a cluster the Lease goes to the pod's own namespace; outside one
	// (local runs, e2e tests) there is no namespace to default to.
	fs.StringVar(&leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease; defaults to the pod's namespace when running in a cluster.")
	// Longer than client-go's 15s/10s/2s: with those, an apiserver outage of
	// ~10 s (an upgrade, an etcd hiccup) makes the leader give up its lease and
	// exit, restarting the pod and dropping any minted-but-unwritten token. A
	// 45 s renew deadline rides out such outages; the price is a failover of up
	// to a minute after a leader dies without releasing the lease, which stored
	// tokens (renewed a third of their lifetime early) absorb easily.
	fs.DurationVar(&leaseDuration, "leader-elect-lease-duration", 60*time.Second, "How long a non-leader waits before taking over an unrenewed lease.")
	fs.DurationVar(&renewDeadline, "leader-elect-renew-deadline", 45*time.Second, "How long the leader keeps retrying to renew before giving up leadership.")
	fs.DurationVar(&retryPeriod, "leader-elect-retry-period", 5*time.Second, "How often leader election clients retry.")
	fs.StringVar(&namespaces, "namespaces", "", "Comma-separated namespaces to watch; empty watches all namespaces.")
	// Reconciles spend their time waiting on the STS and the apiserver, not on
	// CPU, so many more workers than cores pay off.
	fs.IntVar(&maxConcurrentReconciles, "max-concurrent-reconciles", 16, "How many ClearanceCredentials are reconciled in parallel.")
	// Client-side rate limiting is off by default (-1): the apiserver's API
	// Priority and Fairness already protects it and shares capacity fairly,
	// while client-go's default of 5 QPS would cap a mass renewal at a couple of
	// credentials per second. Set a positive value to throttle on the client.
	fs.Float64Var(&kubeAPIQPS, "kube-api-qps", -1, "Client-side QPS limit towards the apiserver; negative disables it (rely on API Priority and Fairness).")
	fs.IntVar(&kubeAPIBurst, "kube-api-burst", 400, "Client-side burst towards the apiserver, when --kube-api-qps is positive.")
	fs.Float64Var(&renewalSpread, "renewal-spread", controller.DefaultRenewalSpread,
		"Share (0 to 1) of the time to renewal over which the first renewal after a new credential, a connection or spec change or a refresh is spread at random, so credentials minted together do not renew together ever after; 0 keeps only the 10% jitter.")
	fs.DurationVar(&gracefulShutdown, "graceful-shutdown-timeout", 30*time.Second, "How long to wait for in-flight work (a Secret write) on shutdown.")
	egress.bind(fs)
	// Every tenant's requests leave through this one process, so the STS sees
	// them together as one client: the cap keeps a storm (a mass creation, a
	// tenant forcing mints) below what it would throttle for everybody, while
	// staying far above what renewals need (a renewal per token lifetime).
	fs.Float64Var(&stsRequestsPerSecond, "sts-requests-per-second", 50, "Token requests per second to the STS, all credentials together; 0 removes the limit.")
	fs.IntVar(&stsRequestBurst, "sts-request-burst", 100, "Token requests allowed at once above --sts-requests-per-second.")
	fs.IntVar(&mintsPerNamespace, "max-concurrent-mints-per-namespace", 0,
		"Token requests of one namespace in flight at once, so a namespace whose STS hangs holds at most that many workers; 0 means a quarter of --max-concurrent-reconciles (at least 1).")
	fs.DurationVar(&minForcedMintInterval, "min-forced-mint-interval", 30*time.Second,
		"Least time between token requests of a credential for mints a user forces while its token is valid (refresh annotation, connection, spec or token edits); 0 removes the minimum.")
	// The chart and the kustomize Deployment pass the pod's namespace in
	// POD_NAMESPACE (the downward API).
	fs.StringVar(&clusterResourceNS, "cluster-resource-namespace", defaultClusterResourceNamespace(),
		"Namespace holding the connection Secrets of ClusterClearanceCredentials; defaults to the operator's own namespace. Empty serves no ClusterClearanceCredentials.")
	// Retried reconcile errors are expected (apiserver hiccups, missing RBAC)
	// and already backed off; a stack trace on each would bury the message.
	// --zap-stacktrace-level can lower this again.
	zapOpts := zap.Options{StacktraceLevel: zapcore.PanicLevel}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if renewalSpread < 0 || renewalSpread >= 1 {
		fmt.Fprintf(os.Stderr, "--renewal-spread must be in [0, 1), got %v\n", renewalSpread)
		return 2
	}
	egressOpts, err := egress.options()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if mintsPerNamespace <= 0 {
		mintsPerNamespace = controller.DefaultMintsPerNamespace(maxConcurrentReconciles)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts), logsafe.CapLevel))
	setupLog := ctrl.Log.WithName("setup")
	memLimit := setMemoryLimit()

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(clearancev1alpha1.AddToScheme(scheme))

	cfg, err := ctrl.GetConfig()
	if err != nil {
		setupLog.Error(err, "no Kubernetes configuration found")
		return 1
	}
	cfg.QPS = float32(kubeAPIQPS)
	cfg.Burst = kubeAPIBurst
	cfg.UserAgent = "clearance-operator"
	// The apiserver gzips watch streams for clients that accept it, flushing
	// per event: CPU on both ends for small events, on what is normally a
	// cluster-local link.
	cfg.DisableCompression = true

	watched := splitNamespaces(namespaces)
	// HTTP/2 stays off on the metrics endpoint (HTTP/2 Rapid Reset, CVE-2023-44487).
	disableHTTP2 := func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		Metrics: metricsserver.Options{
			BindAddress:    metricsAddr,
			SecureServing:  true,
			FilterProvider: filters.WithAuthenticationAndAuthorization,
			TLSOpts:        []func(*tls.Config){disableHTTP2},
			CertDir:        metricsCertDir,
		},
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renewDeadline,
		RetryPeriod:                   &retryPeriod,
		GracefulShutdownTimeout:       &gracefulShutdown,
		Cache:                         controller.ManagedSecretsCacheOptions(cache.Options{DefaultNamespaces: controller.CacheNamespaces(watched)}),
	})
	if err != nil {
		setupLog.Error(err, "unable to create the manager")
		return 1
	}

	stsOpts := []clearance.Option{clearance.WithEgress(egressOpts), clearance.WithClock(clock.RealClock{})}
	if stsRequestsPerSecond > 0 {
		stsOpts = append(stsOpts, clearance.WithRequestLimiter(rate.NewLimiter(rate.Limit(stsRequestsPerSecond), max(1, stsRequestBurst))))
	}
	if err := controller.Setup(mgr, controller.Options{
		Minter:                         clearance.NewClient(stsOpts...),
		Namespaces:                     watched,
		MaxConcurrentReconciles:        maxConcurrentReconciles,
		RenewalSpread:                  renewalSpread,
		MinForcedMintInterval:          minForcedMintInterval,
		MaxConcurrentMintsPerNamespace: mintsPerNamespace,
		ClusterResourceNamespace:       clusterResourceNS,
	}); err != nil {
		setupLog.Error(err, "unable to set up the controller")
		return 1
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		setupLog.Error(err, "unable to set up the health check")
		return 1
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		setupLog.Error(err, "unable to set up the ready check")
		return 1
	}

	setupLog.Info("starting manager", "memoryLimit", memLimit, "namespaces", namespaces, "leaderElection", leaderElect, "maxConcurrentReconciles", maxConcurrentReconciles,
		"maxConcurrentMintsPerNamespace", mintsPerNamespace, "clusterResourceNamespace", clusterResourceNS, "stsAllowHTTP", egress.allowHTTP, "stsAllowCIDRs", egress.allowCIDRs)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "manager stopped with an error")
		return 1
	}
	return 0
}

// serviceAccountNamespaceFile holds the pod's namespace in a cluster.
const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// defaultClusterResourceNamespace is the operator's own namespace:
// POD_NAMESPACE, else the service account's namespace when running in a
// cluster, else none (a local run names it with the flag).
func defaultClusterResourceNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile(serviceAccountNamespaceFile); err == nil {
		return strings.TrimSpace(string(b))
	}
	return ""
}

func splitNamespaces(v string) []string {
	var out []string
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// setMemoryLimit sets the Go runtime's soft memory limit to 90% of
// MEMORY_LIMIT_BYTES (the chart and the kustomize Deployment pass the
// container's memory limit there), so the heap is collected harder before
// the kernel would kill the process; the rest leaves room for memory the Go
// runtime does not count. GOMEMLIMIT, when set, wins. It returns the limit
// in force, for the log.
func setMemoryLimit() string {
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		return v
	}
	limit, err := strconv.ParseInt(os.Getenv("MEMORY_LIMIT_BYTES"), 10, 64)
	if err != nil || limit <= 0 {
		return "none"
	}
	debug.SetMemoryLimit(limit / 10 * 9)
	return strconv.FormatInt(limit/10*9, 10)
}
