package controller

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/logsafe"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

var (
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
	scheme    = runtime.NewScheme()
	// logSink captures every manager log line (at the highest verbosity) so
	// tests can check that no secret material is ever logged.
	logSink = &testutil.LogBuffer{}
)

func TestController(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ClearanceCredential controller (envtest + STS emulator)")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(logSink), zap.UseDevMode(true), zap.Level(zapcore.Level(-10)), logsafe.CapLevel))
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(clearancev1alpha1.AddToScheme(scheme))

	assets, err := testutil.AssetsDir()
	Expect(err).NotTo(HaveOccurred())
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{testutil.CRDPath()},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// runningManager is a manager started for a test, wired exactly like main.go.
type runningManager struct {
	mgr    ctrl.Manager
	cancel context.CancelFunc
	done   chan struct{}
}

func (m *runningManager) stop() {
	m.cancel()
	Eventually(m.done, 30*time.Second).Should(BeClosed())
}

// managerSetup is what a spec may change in the manager startManager runs.
type managerSetup struct {
	opts Options
	// wrapClient, when set, wraps the manager's client (to count its writes).
	wrapClient func(client.Client) client.Client
}

// startManager starts the controller against the envtest apiserver, wired
// by Setup as main.go wires it. Without changes the first renewal is not
// spread (RenewalSpread 0), so specs can time renewals at renewBefore with
// the 10% jitter.
func startManager(changes ...func(*managerSetup)) *runningManager {
	setup := managerSetup{opts: Options{
		Minter:                  clearance.NewClient(clearance.WithEgress(testutil.LoopbackEgress), clearance.WithClock(clock.RealClock{}), clearance.WithAttemptTimeout(2*time.Second)),
		MaxConcurrentReconciles: 4,
	}}
	for _, change := range changes {
		change(&setup)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  ManagedSecretsCacheOptions(cache.Options{}),
		// Several managers run one after another in this process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		NewClient: func(cfg *rest.Config, o client.Options) (client.Client, error) {
			c, err := client.New(cfg, o)
			if err != nil || setup.wrapClient == nil {
				return c, err
			}
			return setup.wrapClient(c), nil
		},
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(Setup(mgr, setup.opts)).To(Succeed())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	return &runningManager{mgr: mgr, cancel: cancel, done: done}
}
