package e2e

import (
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// readyTimeout bounds the wait for a first token: cache sync, one mint, one
// Secret write and one status patch on a busy two-core machine.
const readyTimeout = 60 * time.Second

// operateSpecs run the manager as the chart's ServiceAccount (cluster-wide
// release) and use it only through the API, kubectl and its metrics endpoint.
func operateSpecs() {
	Context("operator installed by the chart, cluster-wide", Ordered, func() {
		const appNamespace = "e2e-apps"
		var (
			mgr  *manager
			cred credential
		)

		BeforeAll(func() {
			Expect(chartDeployment).NotTo(BeNil(), "the chart install spec must run first")
			createNamespace(appNamespace)
			mgr = startManager("chart", chartDeployment, chartNamespace, chartSA)
		})

		AfterAll(func() {
			// SIGTERM: a clean shutdown within the graceful-shutdown timeout,
			// exit status 0, and the Lease released for the next manager.
			mgr.stop()
		})

		It("mints a token from the emulator into the target Secret and reports Ready=True", func() {
			cred = createCredential(appNamespace, "app")
			secret := cred.expectReady(readyTimeout)
			Expect(cred.mints()).To(BeEquivalentTo(1), "one token issued by the emulator to this client")
			Expect(string(secret.Data["clientId"])).To(Equal(cred.clientID))
			Expect(secret.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "clearance-operator"))
			Expect(secret.OwnerReferences).To(ConsistOf(HaveField("Name", "app")))

			// Neither the token nor the connection file's key reach the logs.
			Expect(mgr.log()).NotTo(ContainSubstring(string(secret.Data["token"])))
			Expect(mgr.log()).To(ContainSubstring("token written"))
			status, err := probe(mgr.probeAddr, "/readyz")
			Expect(err).NotTo(HaveOccurred())
			Expect(status).To(Equal(http.StatusOK))
		})

		It("shows the printer columns in kubectl get ccred", func() {
			out, _, err := kubectl("get", "ccred", "-n", appNamespace)
			Expect(err).NotTo(HaveOccurred())
			GinkgoWriter.Printf("kubectl get ccred:\n%s", out)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			Expect(lines).To(HaveLen(2), out)
			Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "READY", "SECRET", "EXPIRES", "AGE"}))
			row := strings.Fields(lines[1])
			Expect(row).To(HaveLen(5), out)
			Expect(row[:3]).To(Equal([]string{"app", "True", "app-token"}))
			// A future time in a column of type date prints as "<invalid>"
			// (kubectl shows the age of a date column).
			Expect(row[3]).NotTo(BeElementOf("<none>", "<invalid>"), "the Expires column shows the token's expiry")

			out, _, err = kubectl("get", "clearancecredentials.clearance.dev", "-A", "-o", "wide")
			Expect(err).NotTo(HaveOccurred())
			Expect(out).To(ContainSubstring("app-token"))
		})

		It("serves clearance_* metrics to an authorised caller only", func() {
			// Prometheus' identity: a ServiceAccount bound to the chart's
			// metrics-reader ClusterRole; its token is checked with a TokenReview.
			reader := serviceAccountToken(appNamespace, "prometheus")
			ctx, cancel := withTimeout(10 * time.Second)
			defer cancel()
			Expect(k8sClient.Create(ctx, clusterRoleBinding("e2e-prometheus-metrics-reader", chartSA+"-metrics-reader", appNamespace, "prometheus"))).To(Succeed())
			stranger := serviceAccountToken(appNamespace, "stranger")

			Eventually(func(g Gomega) {
				status, body, err := scrape(mgr.metricsAddr, reader)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(status).To(Equal(http.StatusOK), body)
				v, err := metricValue(body, `clearance_credential_ready{name="app",namespace="e2e-apps"}`)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(v).To(BeEquivalentTo(1))
				v, err = metricValue(body, `clearance_token_requests_total{outcome="success"}`)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(v).To(BeEquivalentTo(1))
				g.Expect(body).To(ContainSubstring("clearance_token_expiration_timestamp_seconds"))
			}).WithTimeout(20 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())

			status, body, err := scrape(mgr.metricsAddr, stranger)
			Expect(err).NotTo(HaveOccurred())
			Expect(status).To(Equal(http.StatusForbidden), "a ServiceAccount without the metrics-reader role")
			Expect(body).NotTo(ContainSubstring("clearance_"))

			status, body, err = scrape(mgr.metricsAddr, "")
			Expect(err).NotTo(HaveOccurred())
			Expect(status).To(Equal(http.StatusUnauthorized), "no token")
			Expect(body).NotTo(ContainSubstring("clearance_"))

			// controller-runtime's filter answers a token the TokenReview
			// rejects with 500 rather than 401; what matters is the refusal.
			status, body, err = scrape(mgr.metricsAddr, "not-a-token")
			Expect(err).NotTo(HaveOccurred())
			Expect(status).To(BeElementOf(http.StatusUnauthorized, http.StatusInternalServerError), "a token the apiserver does not know")
			Expect(body).NotTo(ContainSubstring("clearance_"))
		})
	})
}
