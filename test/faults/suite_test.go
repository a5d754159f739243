package faults

import (
	"os"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/logsafe"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

var (
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
	scheme    = runtime.NewScheme()
	// logSink receives every log line of the in-process managers at the
	// highest verbosity, for the secrecy checks.
	logSink = &testutil.LogBuffer{}
	// suiteDir holds kubeconfigs, binaries and process logs of this run.
	suiteDir string
)

func TestFaults(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Reliability and security (faults)")
}

var _ = BeforeSuite(func() {
	// Capped as main.go caps the manager's logger, so the secrecy checks see
	// what the shipped manager would log at --zap-log-level=10.
	logf.SetLogger(zap.New(zap.WriteTo(logSink), zap.UseDevMode(true), zap.Level(zapcore.Level(-10)), logsafe.CapLevel))
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(clearancev1alpha1.AddToScheme(scheme))

	var err error
	suiteDir, err = os.MkdirTemp("", "clearance-faults-")
	Expect(err).NotTo(HaveOccurred())
	testEnv, cfg, k8sClient = startEnv("")
})

var _ = AfterSuite(func() {
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
	if suiteDir != "" {
		Expect(os.RemoveAll(suiteDir)).To(Succeed())
	}
})

// startEnv starts a control plane with the CRD installed. With certDir set,
// the apiserver keeps its serving certificate there, so it can be stopped and
// started again (same address, same certificates) under running clients.
func startEnv(certDir string) (*envtest.Environment, *rest.Config, client.Client) {
	GinkgoHelper()
	assets, err := testutil.AssetsDir()
	Expect(err).NotTo(HaveOccurred())
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{testutil.CRDPath()},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	if certDir != "" {
		env.ControlPlane.APIServer = &envtest.APIServer{CertDir: certDir}
		// kube-apiserver takes longer than envtest's default 20 s to drain on
		// SIGTERM; after this it is killed, which is a stop all the same.
		env.ControlPlaneStopTimeout = 3 * time.Second
	}
	c, err := env.Start()
	Expect(err).NotTo(HaveOccurred())
	cl, err := client.New(c, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return env, c, cl
}
