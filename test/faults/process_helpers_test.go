//go:build faults

package faults

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

var (
	managerBinOnce sync.Once
	managerBin     string
	managerBinErr  error
)

// managerBinary builds the shipped manager (the repository's main package)
// once per suite run.
func managerBinary(ctx context.Context) string {
	GinkgoHelper()
	managerBinOnce.Do(func() {
		managerBin, managerBinErr = testutil.BuildBinary(ctx, ".", suiteDir, "manager")
	})
	Expect(managerBinErr).NotTo(HaveOccurred())
	return managerBin
}

// writeKubeconfig writes a kubeconfig for c into the suite directory.
func writeKubeconfig(c *rest.Config) string {
	GinkgoHelper()
	path := filepath.Join(suiteDir, "kubeconfig-"+rand.String(6))
	Expect(testutil.WriteKubeconfig(c, path)).To(Succeed())
	return path
}

// startManagerProcess runs the shipped manager binary against the apiserver
// of kubeconfig, confined to namespace ns (so it never competes with another
// manager of this suite), at the highest log verbosity, with its output kept
// for the secrecy checks and in the suite directory. env adds environment
// variables, args flags. The first renewal is not spread (--renewal-spread=0,
// as in the in-process managers): these tests time faults against renewals
// at renewBefore with the 10% jitter.
func startManagerProcess(ctx context.Context, kubeconfig, ns string, env []string, args ...string) *managerProcess {
	GinkgoHelper()
	bin := managerBinary(ctx)
	logPath := filepath.Join(suiteDir, fmt.Sprintf("manager-%s-%s.log", ns, rand.String(4)))
	s, err := testutil.StartSession(bin, append([]string{
		"--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--zap-log-level=10", "--zap-devel",
		"--namespaces=" + ns, "--renewal-spread=0",
	}, slices.Concat(testutil.EmulatorEgressFlags, args)...), append([]string{"KUBECONFIG=" + kubeconfig}, env...), logPath)
	Expect(err).NotTo(HaveOccurred())
	p := &managerProcess{s}
	DeferCleanup(func() { Eventually(s.Terminate()).WithTimeout(40 * time.Second).Should(gexec.Exit()) })
	Eventually(s.Err).WithTimeout(90*time.Second).Should(gbytes.Say("Starting workers"), "manager log: %s", logPath)
	GinkgoWriter.Printf("manager process %d for namespace %s, log %s\n", p.pid(), ns, logPath)
	return p
}

// managerProcess is a manager run as a separate process.
type managerProcess struct{ *gexec.Session }

func (p *managerProcess) pid() int { return p.Command.Process.Pid }

// log returns everything the manager has logged so far (to stderr).
func (p *managerProcess) log() string { return string(p.Err.Contents()) }

// kill sends SIGKILL and waits for the exit.
func (p *managerProcess) kill() { Eventually(p.Kill()).Should(gexec.Exit()) }

// createProcessCredential creates a credential for a manager process (no
// in-process label).
func createProcessCredential(ctx context.Context, cl client.Client, ns, name, source, target string,
	mutate ...func(*clearancev1alpha1.ClearanceCredential)) *clearancev1alpha1.ClearanceCredential {
	GinkgoHelper()
	c := newCredential(ns, name, source, target, mutate...)
	Expect(cl.Create(ctx, c)).To(Succeed())
	return c
}

// secretPatch matches the server-side apply (PATCH) of one Secret.
func secretPatch(ns, name string) func(*http.Request) bool {
	path := "/api/v1/namespaces/" + ns + "/secrets/" + name
	return func(r *http.Request) bool { return r.Method == http.MethodPatch && r.URL.Path == path }
}

// expectAlive fails if a manager process exited.
func expectAlive(p *managerProcess) {
	GinkgoHelper()
	select {
	case <-p.Exited:
		lines := strings.Split(strings.TrimSpace(p.log()), "\n")
		Fail(fmt.Sprintf("manager process %d exited (status %d); its last lines:\n%s", p.pid(), p.ExitCode(),
			strings.Join(lines[max(0, len(lines)-3):], "\n")))
	default:
	}
}
