// Package e2e installs the operator the way users do (the Helm chart rendered
// by the pinned Helm, the kustomize configuration built by kubectl), applies
// every object to a real kube-apiserver (envtest's control plane, built from
// source), and runs the manager binary as a separate process authenticated as
// the installed ServiceAccount, so it has exactly the RBAC the manifests grant.
// Tokens come from the STS emulator, also a separate process. Everything runs
// on loopback addresses; nothing is downloaded.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// connectionFiles is how many clients (connection files) the emulator
// generates: one per credential, so its per-client counters tell exactly how
// often each credential was minted.
const connectionFiles = 12

var (
	testEnv   *envtest.Environment
	adminCfg  *rest.Config
	k8sClient client.Client
	clientset kubernetes.Interface
	scheme    = runtime.NewScheme()

	// workDir holds kubeconfigs, rendered manifests, connection files and logs.
	workDir         string
	adminKubeconfig string
	kubectlBin      string
	helmBin         string
	kustomizeBin    string
	managerBin      string

	emulator   *gexec.Session
	stsBaseURL string
	connFiles  []string

	// suiteFailed is set once any spec failed, to print process output.
	suiteFailed bool
)

var _ = AfterEach(func() {
	if CurrentSpecReport().Failed() {
		suiteFailed = true
	}
})

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "e2e: install with Helm and kustomize, operate as the installed ServiceAccount")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(clearancev1alpha1.AddToScheme(scheme))

	var err error
	workDir, err = os.MkdirTemp("", "clearance-e2e-")
	Expect(err).NotTo(HaveOccurred())
	// Logs and rendered manifests stay for a failed run, or with E2E_KEEP=1.
	DeferCleanup(func() {
		if !suiteFailed && os.Getenv("E2E_KEEP") == "" {
			_ = os.RemoveAll(workDir)
			return
		}
		_, _ = fmt.Fprintf(os.Stderr, "e2e: logs and manifests kept in %s\n", workDir)
	})

	assets, err := testutil.AssetsDir()
	Expect(err).NotTo(HaveOccurred())
	kubectlBin, err = testutil.KubectlBinary()
	Expect(err).NotTo(HaveOccurred())
	helmBin, err = testutil.ToolBinary("helm")
	Expect(err).NotTo(HaveOccurred())
	kustomizeBin, err = testutil.ToolBinary("kustomize")
	Expect(err).NotTo(HaveOccurred())

	// Building the two binaries and starting the control plane are the slow
	// parts of the setup; they do not depend on each other.
	var (
		wg                  sync.WaitGroup
		buildErr, buildErr2 error
		emulatorBin         string
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		managerBin, buildErr = testutil.BuildBinary(ctx, ".", workDir, "manager")
	}()
	go func() {
		defer wg.Done()
		emulatorBin, buildErr2 = testutil.BuildBinary(ctx, "./hack/sts-emulator", workDir, "sts-emulator")
	}()

	testEnv = &envtest.Environment{BinaryAssetsDirectory: assets}
	adminCfg, err = testEnv.Start()
	wg.Wait()
	Expect(err).NotTo(HaveOccurred())
	Expect(buildErr).NotTo(HaveOccurred())
	Expect(buildErr2).NotTo(HaveOccurred())

	k8sClient, err = client.New(adminCfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	clientset, err = kubernetes.NewForConfig(adminCfg)
	Expect(err).NotTo(HaveOccurred())
	adminKubeconfig = filepath.Join(workDir, "admin.kubeconfig")
	Expect(testutil.WriteKubeconfig(adminCfg, adminKubeconfig)).To(Succeed())

	// Tokens live an hour, so nothing is renewed during the suite: every
	// successful request the emulator counts is a first mint or a duplicate.
	emulator, err = testutil.StartSession(emulatorBin, []string{
		"--listen", "127.0.0.1:0",
		"--write-connection-file", filepath.Join(workDir, "conn.json"),
		"--count", fmt.Sprint(connectionFiles),
		"--token-ttl", "1h",
	}, nil, filepath.Join(workDir, "sts-emulator.log"))
	Expect(err).NotTo(HaveOccurred())
	ready := regexp.QuoteMeta(testutil.EmulatorReadyLine) + `(\S+)`
	Eventually(emulator.Out).WithTimeout(30*time.Second).Should(gbytes.Say(ready), func() string { return string(emulator.Err.Contents()) })
	stsBaseURL = regexp.MustCompile(ready).FindStringSubmatch(string(emulator.Out.Contents()))[1]
	for i := 1; i <= connectionFiles; i++ {
		connFiles = append(connFiles, filepath.Join(workDir, fmt.Sprintf("conn-%d.json", i)))
	}
}, NodeTimeout(5*time.Minute))

var _ = AfterSuite(func() {
	if emulator != nil {
		Eventually(emulator.Terminate()).WithTimeout(15 * time.Second).Should(gexec.Exit())
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// nextConnFile hands out the emulator's connection files, one per credential.
var nextConnFile = func() func() string {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		Expect(n).To(BeNumerically("<", len(connFiles)), "raise connectionFiles")
		n++
		return connFiles[n-1]
	}
}()

// withTimeout returns a context for one API call or command.
func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
