package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/kubectlclearance"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
	"github.com/clearance-operator/clearance-operator/internal/tokeninfo"
)

// pluginSpecs use the operator the way the README tells people to: through
// the built kubectl-clearance binary run by kubectl as a plugin, kubectl
// wait, and the Argo CD health check on the live object.
func pluginSpecs() {
	Context("kubectl clearance and GitOps health", Ordered, func() {
		const ns = "e2e-plugin"
		var (
			mgr       *manager
			pluginDir string
			cred      credential
			connFile  string
		)

		// plugin runs `kubectl clearance ARGS` with the built plugin on PATH.
		plugin := func(args ...string) (string, string, error) {
			GinkgoHelper()
			return runWith([]string{"PATH=" + pluginDir + string(os.PathListSeparator) + os.Getenv("PATH")},
				kubectlBin, append([]string{"clearance"}, args...)...)
		}
		// noSecrets fails if the output holds the token or connection-file material.
		noSecrets := func(out string, tokens ...string) {
			GinkgoHelper()
			data, err := os.ReadFile(connFile) //nolint:gosec // written by the emulator into the test's directory
			Expect(err).NotTo(HaveOccurred())
			Expect(testutil.FindSecretMaterial(map[string]string{"plugin output": out}, testutil.SecretMaterial(data, tokens...))).To(BeEmpty())
		}

		BeforeAll(func(ctx SpecContext) {
			Expect(chartDeployment).NotTo(BeNil(), "the chart install spec must run first")
			pluginDir = filepath.Join(workDir, "plugin-bin")
			Expect(os.MkdirAll(pluginDir, 0o750)).To(Succeed())
			_, err := testutil.BuildBinary(ctx, "./cmd/kubectl-clearance", pluginDir, "kubectl-clearance")
			Expect(err).NotTo(HaveOccurred())
			createNamespace(ns)
			mgr = startManager("plugin", chartDeployment, chartNamespace, chartSA)
		}, NodeTimeout(5*time.Minute))

		AfterAll(func() {
			mgr.stop()
		})

		It("waits for Ready with kubectl wait, and times out on a credential that cannot be Ready", func() {
			cred = createCredential(ns, "plug")
			connFile = cred.connFile
			out, _, err := kubectl("wait", "--for=condition=Ready", "ccred/plug", "-n", ns, "--timeout=60s")
			Expect(err).NotTo(HaveOccurred())
			Expect(out).To(ContainSubstring("clearancecredential.clearance.dev/plug condition met"))
			cred.expectReady(10 * time.Second)

			// No connection Secret: Stalled, never Ready, so kubectl wait fails.
			ctx, cancel := withTimeout(10 * time.Second)
			defer cancel()
			Expect(k8sClient.Create(ctx, &clearancev1alpha1.ClearanceCredential{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orphan"},
				Spec: clearancev1alpha1.ClearanceCredentialSpec{
					ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: "does-not-exist"}, SecretName: "orphan-token",
				},
			})).To(Succeed())
			_, _, err = kubectl("wait", "--for=condition=Ready", "ccred/orphan", "-n", ns, "--timeout=5s")
			Expect(err).To(HaveOccurred())
		})

		It("shows a credential's status, target Secret and events without the token", func() {
			secret := cred.expectReady(10 * time.Second)
			token := string(secret.Data["token"])
			live := cred.get(Default)

			out, stderr, err := plugin("status", "plug", "-n", ns)
			Expect(err).NotTo(HaveOccurred())
			GinkgoWriter.Printf("kubectl clearance status:\n%s", out)
			writeArtifact("kubectl-clearance-status.txt", out)
			for _, want := range []string{
				"Name:          plug\n",
				"Target Secret: plug-token\n",
				"TokenValid",
				"Expires:       " + live.Status.ExpiresAt.UTC().Format(time.RFC3339) + " (in 59m",
				"Next renewal:  " + live.Status.RenewalTime.UTC().Format(time.RFC3339) + " (in ",
				"STS endpoint:  " + live.Status.TokenEndpoint + "\n",
				"Key id:        " + live.Status.KeyID + "\n",
				"clientId:      " + cred.clientID + "\n",
				"sha256 " + tokeninfo.Fingerprint([]byte(token)) + "... (not printed)",
				"sub: " + cred.clientID + "\n",
				"Minted",
			} {
				Expect(out).To(ContainSubstring(want))
			}
			Expect(live.Status.TokenEndpoint).To(HavePrefix(stsBaseURL))
			noSecrets(out+stderr, token)

			out, _, err = plugin("status", "-A")
			Expect(err).NotTo(HaveOccurred())
			writeArtifact("kubectl-clearance-status-A.txt", out)
			Expect(out).To(MatchRegexp(`(?m)^e2e-plugin\s+plug\s+True\s+TokenValid\s+plug-token\s+in 59m\s+in \d+m\s+0$`))
			Expect(out).To(MatchRegexp(`(?m)^e2e-plugin\s+orphan\s+False\s+ConnectionSecretNotFound\s+orphan-token\s+<none>\s+<none>\s+0$`))

			out, _, err = plugin("status", "plug", "-n", ns, "-o", "json")
			Expect(err).NotTo(HaveOccurred())
			var r kubectlclearance.Report
			Expect(json.Unmarshal([]byte(out), &r)).To(Succeed())
			Expect(r.Target.TokenSHA256).To(Equal(tokeninfo.Fingerprint([]byte(token))))
			Expect(r.ExpiresAt.Time).To(BeTemporally("==", live.Status.ExpiresAt.Time))
			noSecrets(out, token)
		})

		It("renews through the refresh annotation and waits for the new token", func() {
			before := cred.expectReady(10 * time.Second)
			mints := cred.mints()

			out, stderr, err := plugin("renew", "plug", "-n", ns, "--wait", "--timeout", "60s")
			Expect(err).NotTo(HaveOccurred(), stderr)
			GinkgoWriter.Printf("kubectl clearance renew:\n%s", out)

			// The command returned only once the new token was in the Secret.
			after := cred.target(Default)
			Expect(after.Data["token"]).NotTo(Equal(before.Data["token"]))
			Expect(cred.mints()).To(Equal(mints + 1))
			requested := cred.get(Default).Annotations[clearancev1alpha1.RefreshRequestedAtAnnotation]
			Expect(requested).NotTo(BeEmpty())
			Expect(after.Annotations).To(HaveKeyWithValue(clearancev1alpha1.RefreshRequestedAtAnnotation, requested))
			Expect(out).To(ContainSubstring("clearancecredential e2e-plugin/plug: renewal requested\n"))
			Expect(out).To(ContainSubstring("clearancecredential e2e-plugin/plug: new token written, expires at " +
				string(after.Data["expiresAt"]) + ", sha256 " + tokeninfo.Fingerprint(after.Data["token"]) + "..."))
			noSecrets(out+stderr, string(before.Data["token"]), string(after.Data["token"]))

			// A credential that cannot mint: --wait gives up with its reason.
			_, stderr, err = plugin("renew", "orphan", "-n", ns, "--wait", "--timeout", "3s")
			Expect(err).To(HaveOccurred())
			Expect(stderr).To(ContainSubstring("clearancecredential e2e-plugin/orphan: no new token after 3s: Stalled=True (ConnectionSecretNotFound)"))
		})

		It("checks a connection file and a connection Secret by minting once", func() {
			mints := cred.mints()
			out, stderr, err := plugin(append([]string{"check", "--secret", "plug-connection", "-n", ns}, testutil.EmulatorEgressFlags...)...)
			Expect(err).NotTo(HaveOccurred(), stderr)
			Expect(out).To(ContainSubstring("client_id:  " + cred.clientID + "\n"))
			Expect(out).To(ContainSubstring("endpoint:   " + stsBaseURL))
			noSecrets(out + stderr)

			out, stderr, err = plugin(append([]string{"check", "--connection-file", connFile, "--encoding", "json"}, testutil.EmulatorEgressFlags...)...)
			Expect(err).NotTo(HaveOccurred(), stderr)
			Expect(out).To(ContainSubstring("sub: " + cred.clientID + "\n"))
			noSecrets(out + stderr)
			Expect(cred.mints()).To(Equal(mints + 2))

			_, stderr, err = plugin("check", "--secret", "does-not-exist", "-n", ns)
			Expect(err).To(HaveOccurred())
			Expect(stderr).To(ContainSubstring(`secret "does-not-exist" not found in namespace "e2e-plugin"`))
		})

		It("reports Healthy and Degraded through the Argo CD health check on the live objects", func() {
			script, err := testutil.ArgoHealthScript()
			Expect(err).NotTo(HaveOccurred())
			health := func(name string) (string, string) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				u := &unstructured.Unstructured{}
				u.SetGroupVersionKind(clearancev1alpha1.GroupVersion.WithKind("ClearanceCredential"))
				Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u)).To(Succeed())
				status, message, err := testutil.ArgoHealth(script, u.Object)
				Expect(err).NotTo(HaveOccurred())
				return status, message
			}
			status, message := health("plug")
			Expect(status).To(Equal("Healthy"), message)
			status, message = health("orphan")
			Expect(status).To(Equal("Degraded"))
			Expect(message).To(HavePrefix("ConnectionSecretNotFound: "))
		})
	})
}
