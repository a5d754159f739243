//go:build cluster

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// tokenTTL is the emulator's token lifetime: short, so that renewals happen
// within minutes, yet well above the kubelet's Secret refresh delay.
const tokenTTL = 2 * time.Minute

var (
	adminCfg  *rest.Config
	k8sClient client.Client
	clientset kubernetes.Interface
	scheme    = runtime.NewScheme()

	workDir      string
	kubectlBin   string
	helmBin      string
	hostIP       string
	podCIDR      string
	managerImage string
	busyboxImage string

	// emulator runs in this process; pods reach it on the cluster bridge.
	emulator   *clearancetest.Server
	stsBaseURL string
)

func TestCluster(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "cluster: the operator as a pod on a real node")
}

// mustEnv returns an environment variable hack/cluster/run.sh sets.
func mustEnv(name string) string {
	v := os.Getenv(name)
	Expect(v).NotTo(BeEmpty(), "%s is unset: run this suite with `make test-cluster`", name)
	return v
}

var _ = BeforeSuite(func() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(clearancev1alpha1.AddToScheme(scheme))

	kubeconfig := mustEnv("KUBECONFIG")
	hostIP = mustEnv("CLUSTER_HOST_IP")
	podCIDR = mustEnv("CLUSTER_POD_CIDR")
	managerImage = mustEnv("CLUSTER_MANAGER_IMAGE")
	busyboxImage = mustEnv("CLUSTER_BUSYBOX_IMAGE")
	workDir = filepath.Join(mustEnv("CLUSTER_DIR"), "suite")
	Expect(os.MkdirAll(workDir, 0o700)).To(Succeed())

	var err error
	kubectlBin, err = testutil.KubectlBinary()
	Expect(err).NotTo(HaveOccurred())
	helmBin, err = testutil.ToolBinary("helm")
	Expect(err).NotTo(HaveOccurred())
	adminCfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(adminCfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	clientset, err = kubernetes.NewForConfig(adminCfg)
	Expect(err).NotTo(HaveOccurred())

	// The emulator's own listener (and its admin endpoints) stay on loopback;
	// the token endpoint is also served on the bridge, the one address of
	// this machine that pods can reach.
	emulator, err = clearancetest.NewServer(clearancetest.WithTokenTTL(tokenTTL))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(emulator.Close)
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort(hostIP, "0"))
	Expect(err).NotTo(HaveOccurred())
	srv := &http.Server{Handler: emulator, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			GinkgoWriter.Printf("emulator on the bridge: %v\n", err)
		}
	}()
	DeferCleanup(func() { _ = srv.Close() })
	stsBaseURL = fmt.Sprintf("http://%s%s", ln.Addr(), clearancetest.BasePath)
	GinkgoWriter.Printf("STS emulator for pods at %s\n", stsBaseURL)
})

// withTimeout returns a context for one API call or command.
func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
