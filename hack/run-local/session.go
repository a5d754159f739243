package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// Bounds of the start and stop steps, so neither a slow machine nor a stuck
// component can make the program hang.
const (
	// controlPlaneStartTimeout is per component (etcd, kube-apiserver); the
	// envtest default of 20s is short on a busy two-core machine.
	controlPlaneStartTimeout = time.Minute
	controlPlaneStopTimeout  = 20 * time.Second
	// managerShutdownGrace is passed to the manager; managerStopTimeout is
	// how long to wait for its exit before killing it.
	managerShutdownGrace = 10 * time.Second
	managerStopTimeout   = 20 * time.Second
	// managerLogTail is how many manager log lines are shown on failure.
	managerLogTail = 25
)

// session is everything one run starts; stop undoes it in reverse order.
type session struct {
	opts   options
	out    *printer
	stderr io.Writer

	tmp        string
	assets     string
	kubeconfig string
	env        *envtest.Environment
	client     client.Client
	sts        *clearancetest.Server
	stsLog     *os.File
	manager    *testutil.Process
	connFile   string // connection file written for the emulator's client
}

// start brings everything up and applies the sample.
func (s *session) start(ctx context.Context) error {
	// Read and check CONNECTION_FILE first: a typo should fail in a second,
	// not after the control plane started.
	var connData []byte
	var err error
	if s.opts.connectionFile != "" {
		if connData, err = s.readConnectionFile(); err != nil {
			return err
		}
	}

	if s.assets, err = s.ensureAssets(ctx); err != nil {
		return err
	}

	if s.tmp, err = os.MkdirTemp("", "clearance-run-local-"); err != nil {
		return fmt.Errorf("creating a temporary directory: %w", err)
	}
	s.out.say("working directory %s (removed on exit)", s.tmp)

	// The manager builds while the control plane starts; both take seconds.
	type buildResult struct {
		path string
		err  error
	}
	built := make(chan buildResult, 1)
	buildCtx, cancelBuild := context.WithCancel(ctx)
	waitBuild := true
	defer func() {
		// On an early return, stop the build and let it finish before stop()
		// removes the directory it writes to (bounded by buildManager's WaitDelay).
		cancelBuild()
		if waitBuild {
			<-built
		}
	}()
	go func() {
		path, err := buildManager(buildCtx, s.tmp)
		built <- buildResult{path, err}
	}()

	if err := s.startControlPlane(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	if connData == nil {
		if connData, err = s.startEmulator(); err != nil {
			return err
		}
	}

	s.out.say("building the manager from this checkout (go build .; the first time takes a minute or more)")
	var b buildResult
	select {
	case b = <-built:
		waitBuild = false
	case <-ctx.Done():
		return ctx.Err()
	}
	if b.err != nil {
		return fmt.Errorf("building the manager: %w", b.err)
	}
	if err := s.startManager(b.path); err != nil {
		return err
	}
	return s.applySample(ctx, connData)
}

// buildManager builds the manager (package main at the repository root) into
// dir. It keeps the caller's Go environment (CGO_ENABLED included), so the
// build reuses what `go run ./hack/run-local` has just compiled.
func buildManager(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "manager")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".") //nolint:gosec // fixed tool; the output path is our own temp dir
	cmd.Dir = testutil.RepoRoot()
	// When ctx ends, go is killed; its compiler children may hold the output
	// pipe a moment longer, so the wait for them is bounded.
	cmd.WaitDelay = 5 * time.Second
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, b)
	}
	return out, nil
}

// readConnectionFile reads CONNECTION_FILE and checks it with the operator's
// own parser, whose errors never repeat the file's content.
func (s *session) readConnectionFile() ([]byte, error) {
	path := s.opts.connectionFile
	data, err := os.ReadFile(path) //nolint:gosec // the user names the file to use
	if err != nil {
		return nil, fmt.Errorf("CONNECTION_FILE: %w", err)
	}
	conn, err := clearance.ParseConnectionFile(data)
	if err != nil {
		return nil, fmt.Errorf("CONNECTION_FILE %s is not a usable connection file: %w", path, err)
	}
	s.out.say("using CONNECTION_FILE %s: client %s, STS %s", path, conn.ClientID(), strings.Join(conn.STSBaseAddresses, ", "))
	s.out.say("no STS emulator is started: tokens come from the STS named in that file")
	return data, nil
}

// ensureAssets finds kube-apiserver and etcd, building them from source
// first when they are missing (`make run-local` has already done that; a
// plain `go run ./hack/run-local` on a fresh clone has not).
func (s *session) ensureAssets(ctx context.Context) (string, error) {
	dir, err := testutil.AssetsDir()
	if err == nil {
		return dir, nil
	}
	if v := os.Getenv("KUBEBUILDER_ASSETS"); v != "" {
		// The script builds into bin/k8s/<version>, which would not help here.
		return "", fmt.Errorf("KUBEBUILDER_ASSETS=%s does not hold kube-apiserver and etcd: fix it, or unset it to use (and build) bin/k8s/<version>", v)
	}
	s.out.say("the control plane binaries (kube-apiserver, etcd, kubectl) are not built yet:")
	s.out.say("building them from source first with hack/build-envtest-assets.sh; this takes about 4-5 minutes on 2 cores, once")
	script := filepath.Join(testutil.RepoRoot(), "hack", "build-envtest-assets.sh")
	cmd := exec.CommandContext(ctx, script) //nolint:gosec // fixed script of this repository
	cmd.Dir = testutil.RepoRoot()
	cmd.Stdout = io.Discard // it prints the assets directory, which AssetsDir finds again
	cmd.Stderr = s.stderr   // progress lines, so the wait is not silent
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the control plane binaries (hack/build-envtest-assets.sh): %w", err)
	}
	return testutil.AssetsDir()
}

func (s *session) startControlPlane() error {
	version, err := testutil.KubeVersion()
	if err != nil {
		return err
	}
	s.out.say("starting a throwaway control plane (etcd and kube-apiserver %s from %s)", version, s.assets)
	apiserverDir := filepath.Join(s.tmp, "kube-apiserver")
	etcdDir := filepath.Join(s.tmp, "etcd")
	for _, d := range []string{apiserverDir, etcdDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	s.env = &envtest.Environment{
		// Never a real cluster, whatever USE_EXISTING_CLUSTER says.
		UseExistingCluster:    ptr.To(false),
		BinaryAssetsDirectory: s.assets,
		CRDDirectoryPaths:     []string{testutil.CRDPath()},
		ErrorIfCRDPathMissing: true,
		// Certificates and etcd data live in the session's directory, so
		// removing it removes everything, even after an unclean stop.
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{CertDir: apiserverDir},
			Etcd:      &envtest.Etcd{DataDir: etcdDir},
		},
		ControlPlaneStopTimeout: controlPlaneStopTimeout,
	}
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT") == "" {
		s.env.ControlPlaneStartTimeout = controlPlaneStartTimeout
	}
	cfg, err := s.env.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(clearancev1alpha1.AddToScheme(scheme))
	if s.client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	// The admin user envtest provisions (system:masters): the manager and the
	// printed kubectl commands use it.
	s.kubeconfig = filepath.Join(s.tmp, "kubeconfig")
	if err := testutil.WriteKubeconfig(cfg, s.kubeconfig); err != nil {
		return fmt.Errorf("writing the kubeconfig: %w", err)
	}
	s.out.say("control plane up at %s; kubeconfig: %s", cfg.Host, s.kubeconfig)
	return nil
}

// startEmulator starts the in-process STS emulator and returns a connection
// file for a fresh client it trusts.
func (s *session) startEmulator() ([]byte, error) {
	f, err := os.OpenFile(filepath.Join(s.tmp, "sts-emulator.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600) //nolint:gosec // path inside our own temp dir
	if err != nil {
		return nil, err
	}
	s.stsLog = f
	// One line per request (client id, outcome, status); the emulator never
	// logs assertions, tokens or keys.
	logger := slog.New(slog.NewTextHandler(f, nil))
	s.sts, err = clearancetest.NewServer(
		clearancetest.WithAddress("127.0.0.1:0"),
		clearancetest.WithTokenTTL(emulatorTokenTTL),
		clearancetest.WithLogger(logger),
	)
	if err != nil {
		return nil, fmt.Errorf("starting the STS emulator: %w", err)
	}
	cf, err := s.sts.NewConnectionFile()
	if err != nil {
		return nil, fmt.Errorf("generating a connection file: %w", err)
	}
	s.connFile = filepath.Join(s.tmp, "connection.json")
	if err := cf.WriteFile(s.connFile); err != nil {
		return nil, err
	}
	s.out.say("STS emulator up at %s (tokens live %s; log: %s)", s.sts.BaseURL(), emulatorTokenTTL, f.Name())
	s.out.say("generated a connection file for client %s: %s", cf.ClientID(), s.connFile)
	return cf.Data, nil
}

// startManager runs the manager binary, main.go unchanged, as a subprocess
// with the kubeconfig: the closest thing to a deployment, without copying its
// wiring here.
func (s *session) startManager(bin string) error {
	args := []string{
		// Loopback only, and nothing needs them here: both endpoints off.
		"--metrics-bind-address=0",
		"--health-probe-bind-address=0",
		"--zap-encoder=console",
		"--graceful-shutdown-timeout=" + managerShutdownGrace.String(),
		// Outside a cluster there is no own namespace to default to.
		"--cluster-resource-namespace=" + sampleNamespace,
	}
	if s.sts != nil {
		// The emulator is plain http on loopback, which the operator refuses
		// by default; a CONNECTION_FILE's real STS gets the shipped policy.
		args = append(args, testutil.EmulatorEgressFlags...)
	}
	args = append(args, s.opts.managerArgs...)
	// KUBECONFIG overrides whatever the user has set: never a real cluster.
	p, err := testutil.StartProcess(bin, args, []string{"KUBECONFIG=" + s.kubeconfig}, filepath.Join(s.tmp, "manager.log"))
	if err != nil {
		return fmt.Errorf("starting the manager: %w", err)
	}
	s.manager = p
	s.out.say("manager started (pid %d; log: %s)", p.Pid(), filepath.Join(s.tmp, "manager.log"))
	return nil
}

// applySample creates the sample namespace, connection Secret and
// ClearanceCredential (the names of config/samples).
func (s *session) applySample(ctx context.Context, connData []byte) error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sampleNamespace}},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: sampleConnectionSecret, Namespace: sampleNamespace},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{clearancev1alpha1.DefaultConnectionSecretKey: connData},
		},
		&clearancev1alpha1.ClearanceCredential{
			ObjectMeta: metav1.ObjectMeta{Name: sampleCredential, Namespace: sampleNamespace},
			Spec: clearancev1alpha1.ClearanceCredentialSpec{
				ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{
					Name: sampleConnectionSecret, Key: clearancev1alpha1.DefaultConnectionSecretKey,
				},
				SecretName: sampleTokenSecret,
				// renewBefore is left to its default (a third of the
				// lifetime), so with the emulator's 2-minute tokens a renewal
				// comes after about 80 seconds.
			},
		},
	}
	if s.opts.cluster {
		for _, ns := range sampleClusterNamespaces {
			objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{sampleClusterLabel: "shared"}}})
		}
		objs = append(objs, &clearancev1alpha1.ClusterClearanceCredential{
			ObjectMeta: metav1.ObjectMeta{Name: sampleClusterCredential},
			Spec: clearancev1alpha1.ClusterClearanceCredentialSpec{
				// In the sample namespace, which the manager is told is its cluster resource namespace.
				ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: sampleConnectionSecret},
				SecretName:          sampleClusterSecret,
				NamespaceSelector:   &metav1.LabelSelector{MatchLabels: map[string]string{sampleClusterLabel: "shared"}},
				SecretTemplate: &clearancev1alpha1.SecretTemplate{Data: map[string]string{
					"authorization": "Bearer {{ .Token }}",
				}},
			},
		})
	}
	for _, o := range objs {
		if err := s.client.Create(ctx, o); err != nil {
			return fmt.Errorf("applying the sample: %w", err)
		}
	}
	s.out.say("applied the sample: Namespace %s, Secret %s/%s (connection file under %s), ClearanceCredential %s/%s writing Secret %s",
		sampleNamespace, sampleNamespace, sampleConnectionSecret, clearancev1alpha1.DefaultConnectionSecretKey,
		sampleNamespace, sampleCredential, sampleTokenSecret)
	if s.opts.cluster {
		s.out.say("applied ClusterClearanceCredential %s: the same connection, its token in Secret %s of the namespaces labelled %s=shared (%s)",
			sampleClusterCredential, sampleClusterSecret, sampleClusterLabel, strings.Join(sampleClusterNamespaces, ", "))
	}
	return nil
}

// stop stops what start started, in reverse order, and removes the directory.
func (s *session) stop() {
	if s.tmp == "" {
		return
	}
	var problems []string
	if s.manager != nil {
		s.out.say("stopping the manager")
		if err := s.manager.Stop(managerStopTimeout); err != nil {
			problems = append(problems, "manager: "+err.Error())
		}
	}
	if s.sts != nil {
		s.out.say("stopping the STS emulator")
		s.sts.Close()
	}
	if s.stsLog != nil {
		_ = s.stsLog.Close()
	}
	if s.env != nil {
		s.out.say("stopping the control plane")
		if err := s.env.Stop(); err != nil {
			problems = append(problems, "control plane: "+err.Error())
		}
	}
	if err := os.RemoveAll(s.tmp); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		s.out.say("stopped, with problems: %s", strings.Join(problems, "; "))
		return
	}
	s.out.say("stopped everything and removed %s", s.tmp)
}

// printManagerLogTail shows the end of the manager's log, which says why a
// credential is not Ready or why the manager stopped. The manager never logs
// tokens or key material.
func (s *session) printManagerLogTail() {
	if s.manager == nil {
		return
	}
	out := strings.TrimRight(s.manager.Output(), "\n")
	if out == "" {
		return
	}
	lines := bytes.Split([]byte(out), []byte("\n"))
	if len(lines) > managerLogTail {
		lines = lines[len(lines)-managerLogTail:]
	}
	s.out.say("last %d lines of the manager log:", len(lines))
	for _, l := range lines {
		s.out.detail("%s", l)
	}
}
