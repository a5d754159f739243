package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	crzap "sigs.k8s.io/controller-runtime/pkg/log/zap"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// bench is one run of the harness: binaries, keys and results shared by the
// measurements, each of which starts its own environment.
type bench struct {
	cfg     *config
	scheme  *runtime.Scheme
	tmp     string // binaries, kubeconfigs
	logs    string // component logs and profiles, kept with the results
	stamp   string
	manager string // manager binary
	emuBin  string // sts-emulator binary
	keys    []*rsa.PrivateKey
	res     *Results
	envSeq  int
	// harnessLog receives controller-runtime's logs from the trackers.
	harnessLog *os.File
}

func newBench(ctx context.Context, cfg *config) (*bench, error) {
	b := &bench{cfg: cfg, scheme: runtime.NewScheme(), stamp: time.Now().UTC().Format("20060102T150405Z")}
	utilruntime.Must(clientgoscheme.AddToScheme(b.scheme))
	utilruntime.Must(clearancev1alpha1.AddToScheme(b.scheme))
	if cfg.Out == "" {
		cfg.Out = filepath.Join(testutil.RepoRoot(), "bench", "results")
	}
	b.logs = filepath.Join(cfg.Out, b.stamp+"-logs")
	if err := os.MkdirAll(b.logs, 0o750); err != nil { //nolint:gosec // the results directory the user chose
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "clearance-bench-")
	if err != nil {
		return nil, err
	}
	b.tmp = tmp
	b.res = newResults(cfg)
	b.logf("results and logs: %s", b.logs)
	// The trackers' informers log through controller-runtime; keep that out
	// of the table's way, in the logs directory.
	if f, err := os.Create(filepath.Join(b.logs, "harness.log")); err == nil { //nolint:gosec // the run's logs directory
		b.harnessLog = f
		ctrllog.SetLogger(crzap.New(crzap.WriteTo(f)))
	}

	if cfg.wantsEnv() {
		if _, err := testutil.AssetsDir(); err != nil {
			b.close()
			return nil, err
		}
		b.logf("building the manager and the STS emulator")
		if err := b.build(ctx); err != nil {
			b.close()
			return nil, err
		}
		start := time.Now()
		if b.keys, err = generateKeys(cfg.KeyPool); err != nil {
			b.close()
			return nil, err
		}
		b.logf("generated %d RSA-2048 client keys in %s", len(b.keys), time.Since(start).Round(time.Millisecond))
	}
	b.res.Versions = collectVersions(ctx)
	return b, nil
}

// wantsEnv reports whether any selected measurement needs a control plane.
func (c *config) wantsEnv() bool {
	return c.want(phaseReady) || c.want(phaseMemory) || c.want(phaseSoak) || c.want(phaseRestart) || c.want(phaseCluster)
}

func (b *bench) close() {
	if b.tmp != "" {
		_ = os.RemoveAll(b.tmp) //nolint:gosec // our own temporary directory
	}
	if b.harnessLog != nil {
		_ = b.harnessLog.Close()
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (b *bench) build(ctx context.Context) error {
	var err error
	if b.cfg.Profile {
		b.manager, err = buildProfilingManager(ctx, b.tmp)
	} else {
		b.manager, err = testutil.BuildBinary(ctx, ".", b.tmp, "manager")
	}
	if err != nil {
		return err
	}
	b.emuBin, err = testutil.BuildBinary(ctx, "./hack/sts-emulator", b.tmp, emulatorComponent)
	return err
}

// profileOverlay is added to the manager's main package at build time (go
// build -overlay), so profiles can be taken without changing the source. It
// listens only when the variable names a loopback address.
const profileOverlay = `package main

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on the default mux
	"os"
	"time"
)

func init() {
	addr := os.Getenv("CLEARANCE_BENCH_PPROF_ADDR")
	if addr == "" {
		return
	}
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.ListenAndServe() }()
}
`

const pprofAddrEnv = "CLEARANCE_BENCH_PPROF_ADDR"

func buildProfilingManager(ctx context.Context, dir string) (string, error) {
	src := filepath.Join(dir, "zz_bench_pprof.go")
	if err := os.WriteFile(src, []byte(profileOverlay), 0o600); err != nil {
		return "", err
	}
	overlay := filepath.Join(dir, "overlay.json")
	target := filepath.Join(testutil.RepoRoot(), "zz_bench_pprof.go")
	if err := os.WriteFile(overlay, []byte(fmt.Sprintf(`{"Replace":{%q:%q}}`, target, src)), 0o600); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "manager")
	cmd := exec.CommandContext(ctx, "go", "build", "-overlay", overlay, "-o", out, ".") //nolint:gosec // fixed tool, harness-controlled arguments
	cmd.Dir = testutil.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build (profiling manager): %w\n%s", err, b)
	}
	return out, nil
}

// generateKeys makes n RSA-2048 keys on all CPUs. Connection files share
// them (each file still has its own ServicePrincipalId): RSA key generation
// is too slow to do once per credential at the bench's counts.
func generateKeys(n int) ([]*rsa.PrivateKey, error) {
	keys := make([]*rsa.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = rsa.GenerateKey(rand.Reader, 2048) })
	}
	wg.Wait()
	return keys, errors.Join(errs...)
}

// env is one hermetic environment: control plane, STS emulator, manager.
type env struct {
	b          *bench
	name       string
	testEnv    *envtest.Environment
	rest       *rest.Config
	kubeconfig string
	client     client.Client
	emu        *emulator
	emuProc    *testutil.Process
	mgr        *manager
	mgrSeq     int
	etcdDir    string
}

// manager is a running manager process.
type manager struct {
	proc      *testutil.Process
	started   time.Time
	pprofAddr string
	logPath   string
}

// startEnv starts a control plane and an emulator issuing tokens of tokenTTL.
func (b *bench) startEnv(ctx context.Context, name string, tokenTTL time.Duration) (*env, error) {
	b.envSeq++
	e := &env{b: b, name: fmt.Sprintf("%02d-%s", b.envSeq, name)}
	ok := false
	defer func() {
		if !ok {
			e.stop()
		}
	}()
	assets, err := testutil.AssetsDir()
	if err != nil {
		return nil, err
	}
	e.testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{testutil.CRDPath()},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	// The apiserver's watch-cache consistency check (beta, on by default)
	// periodically lists every object of a resource from etcd, landing at
	// random in a floor or an operator run. It is neither's work, only noise
	// between them.
	e.testEnv.ControlPlane.GetAPIServer().Configure().Set("feature-gates", "DetectCacheInconsistency=false")
	if b.cfg.EtcdDir != "" {
		if e.etcdDir, err = os.MkdirTemp(b.cfg.EtcdDir, "bench-etcd-"); err != nil {
			return nil, err
		}
		e.testEnv.ControlPlane.Etcd = &envtest.Etcd{DataDir: e.etcdDir}
	}
	b.logf("[%s] starting the control plane", e.name)
	if e.rest, err = e.testEnv.Start(); err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	// The load driver is not throttled on the client side (like the manager,
	// whose --kube-api-qps defaults to -1); the apiserver's API Priority and
	// Fairness is the only limit.
	e.rest.QPS, e.rest.Burst = -1, 1000
	e.kubeconfig = filepath.Join(b.tmp, e.name+".kubeconfig")
	if err := testutil.WriteKubeconfig(e.rest, e.kubeconfig); err != nil {
		return nil, err
	}
	if e.client, err = client.New(e.rest, client.Options{Scheme: b.scheme}); err != nil {
		return nil, err
	}
	var base string
	e.emuProc, base, err = testutil.StartEmulator(b.emuBin, []string{"--listen", "127.0.0.1:0", "--token-ttl", tokenTTL.String()},
		filepath.Join(b.logs, e.name+"-sts-emulator.log"), 30*time.Second)
	if err != nil {
		return nil, err
	}
	e.emu = newEmulator(base)
	if err := e.warmUp(ctx); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// warmUp makes the first (slow: discovery, CRD storage) requests outside any measurement.
func (e *env) warmUp(ctx context.Context) error {
	ns := "warm-up"
	if err := e.createNamespace(ctx, ns); err != nil {
		return err
	}
	for i := range 20 {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "warm-up-" + strconv.Itoa(i)}}
		if err := e.client.Create(ctx, s); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		c := &clearancev1alpha1.ClearanceCredential{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "warm-up-" + strconv.Itoa(i)},
			Spec: clearancev1alpha1.ClearanceCredentialSpec{
				ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: "warm-up-conn"}, SecretName: "warm-up-token",
			},
		}
		if err := e.client.Create(ctx, c); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return e.deleteAll(ctx, ns)
}

func (e *env) createNamespace(ctx context.Context, ns string) error {
	err := e.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if err != nil {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	return nil
}

// deleteAll removes the credentials and Secrets of a namespace (envtest has
// no namespace controller, so deleting the namespace would not).
func (e *env) deleteAll(ctx context.Context, ns string) error {
	if err := e.client.DeleteAllOf(ctx, &clearancev1alpha1.ClearanceCredential{}, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("deleting credentials in %s: %w", ns, err)
	}
	if err := e.client.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("deleting Secrets in %s: %w", ns, err)
	}
	return nil
}

// startManager starts a manager process watching all namespaces, with the
// run's concurrency, and waits until its workers run.
func (e *env) startManager(extraArgs ...string) (*manager, error) {
	if e.mgr != nil {
		return nil, errors.New("a manager is already running")
	}
	e.mgrSeq++
	m := &manager{logPath: filepath.Join(e.b.logs, fmt.Sprintf("%s-manager-%d.log", e.name, e.mgrSeq))}
	args := []string{
		"--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--max-concurrent-reconciles=" + strconv.Itoa(e.b.cfg.Concurrency),
		"--zap-encoder=json", "--zap-time-encoding=rfc3339nano",
		// The floor has no token-request rate limit and no per-namespace
		// bound on concurrent token requests: with every credential in one
		// namespace, the shipped ones would measure those limits (tenant
		// fairness), not the operator.
		"--sts-requests-per-second=0",
		"--max-concurrent-mints-per-namespace=" + strconv.Itoa(e.b.cfg.Concurrency),
	}
	args = append(args, testutil.EmulatorEgressFlags...)
	args = append(args, e.b.cfg.ManagerArgs...)
	args = append(args, extraArgs...)
	procEnv := []string{"KUBECONFIG=" + e.kubeconfig}
	if e.b.cfg.memoryLimit > 0 {
		procEnv = append(procEnv, "MEMORY_LIMIT_BYTES="+strconv.FormatInt(e.b.cfg.memoryLimit, 10))
	}
	if e.b.cfg.Profile {
		addr, err := testutil.FreeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		m.pprofAddr = addr
		procEnv = append(procEnv, pprofAddrEnv+"="+m.pprofAddr)
	}
	m.started = time.Now()
	proc, err := testutil.StartProcess(e.b.manager, args, procEnv, m.logPath)
	if err != nil {
		return nil, err
	}
	m.proc = proc
	if _, err := proc.WaitForLine("Starting workers", 2*time.Minute); err != nil {
		proc.Kill()
		return nil, fmt.Errorf("manager: %w (log: %s)", err, m.logPath)
	}
	e.mgr = m
	return m, nil
}

// stopManager stops the running manager gracefully.
func (e *env) stopManager() error {
	if e.mgr == nil {
		return nil
	}
	err := e.mgr.proc.Stop(45 * time.Second)
	e.mgr = nil
	return err
}

func (e *env) stop() {
	if e.mgr != nil {
		_ = e.stopManager()
	}
	if e.emuProc != nil {
		_ = e.emuProc.Stop(15 * time.Second)
	}
	if e.testEnv != nil && e.rest != nil {
		if err := e.testEnv.Stop(); err != nil {
			e.b.logf("[%s] stopping the control plane: %v", e.name, err)
		}
	}
	if e.etcdDir != "" {
		_ = os.RemoveAll(e.etcdDir) //nolint:gosec // our own temporary directory
	}
}
