package e2e

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// acquiredLease is what client-go's leader election logs on becoming leader.
const acquiredLease = "Successfully acquired lease"

// leaderElectionSpecs run two managers with leader election, as the HA
// overlay deploys them, under the kustomize configuration's ServiceAccount.
func leaderElectionSpecs() {
	Context("two replicas with leader election (kustomize RBAC)", Ordered, func() {
		const haNamespace = "e2e-ha"
		var (
			first, second *manager
			creds         []credential
			tokens        map[string]string
			leaseDuration time.Duration
		)

		lease := func(g Gomega) *coordinationv1.Lease {
			ctx, cancel := withTimeout(10 * time.Second)
			defer cancel()
			l := &coordinationv1.Lease{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: kustomizeNamespace, Name: leaseName}, l)).To(Succeed())
			return l
		}
		successes := func(m *manager, reader string) float64 {
			var v float64
			Eventually(func(g Gomega) {
				status, body, err := scrape(m.metricsAddr, reader)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(status).To(Equal(200))
				v, err = metricValue(body, `clearance_token_requests_total{outcome="success"}`)
				g.Expect(err).NotTo(HaveOccurred())
			}).WithTimeout(10 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
			return v
		}
		var reader string

		BeforeAll(func() {
			Expect(kustomizeDeployment).NotTo(BeNil(), "the kustomize install spec must run first")
			createNamespace(haNamespace)
			reader = serviceAccountToken(haNamespace, "prometheus")
			ctx, cancel := withTimeout(10 * time.Second)
			defer cancel()
			Expect(k8sClient.Create(ctx, clusterRoleBinding("e2e-ha-metrics-reader", "clearance-operator-metrics-reader", haNamespace, "prometheus"))).To(Succeed())

			// Started here so that they outlive the specs below. The first is
			// the leader: the Lease is free (no other manager uses this namespace).
			first = startManager("ha-1", kustomizeDeployment, kustomizeNamespace, kustomizeSA)
			Eventually(first.Err).WithTimeout(30 * time.Second).Should(gbytes.Say(acquiredLease))
			second = startManager("ha-2", kustomizeDeployment, kustomizeNamespace, kustomizeSA)
		})

		It("elects one leader; only the leader mints", func() {

			for i := range 3 {
				creds = append(creds, createCredential(haNamespace, fmt.Sprintf("ha-%d", i)))
			}
			tokens = map[string]string{}
			for _, c := range creds {
				tokens[c.name] = string(c.expectReady(readyTimeout).Data["token"])
				Expect(c.mints()).To(BeEquivalentTo(1), c.name)
			}
			Expect(successes(first, reader)).To(BeNumerically(">=", len(creds)))
			Expect(successes(second, reader)).To(BeZero(), "the follower must not mint")
			Expect(second.log()).NotTo(ContainSubstring(acquiredLease))

			l := lease(Default)
			Expect(l.Spec.HolderIdentity).NotTo(BeNil())
			Expect(l.Spec.LeaseDurationSeconds).NotTo(BeNil())
			leaseDuration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
		})

		It("fails over to the other replica within the lease duration after SIGKILL of the leader", func() {
			holder := *lease(Default).Spec.HolderIdentity
			killed := time.Now()
			first.Kill() // no chance to release the Lease: the follower must wait it out
			Eventually(second.Err).WithTimeout(leaseDuration + 20*time.Second).Should(gbytes.Say(acquiredLease))
			takeover := time.Since(killed)
			AddReportEntry("leader failover after SIGKILL", takeover.Round(100*time.Millisecond).String())
			GinkgoWriter.Printf("failover took %s (lease duration %s)\n", takeover, leaseDuration)
			Expect(*lease(Default).Spec.HolderIdentity).NotTo(Equal(holder))
			// The follower retries every 2s (with jitter), so it acquires at
			// most about one retry period after the lease expired.
			Expect(takeover).To(BeNumerically("<", leaseDuration+5*time.Second))
		})

		It("keeps every token: none expired, none minted twice; the new leader mints new credentials", func() {
			// The new leader has reconciled every credential once its
			// controller has counted a successful reconcile for each (its
			// readiness gauges come from the credentials' status, which the
			// old leader wrote, so they alone do not show it).
			Eventually(func(g Gomega) {
				status, body, err := scrape(second.metricsAddr, reader)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(status).To(Equal(200))
				reconciled := 0.0
				for _, result := range []string{"success", "requeue_after"} { // a reconcile schedules the renewal
					v, err := metricValue(body, fmt.Sprintf(`controller_runtime_reconcile_total{controller="clearancecredential",result=%q}`, result))
					g.Expect(err).NotTo(HaveOccurred())
					reconciled += v
				}
				g.Expect(reconciled).To(BeNumerically(">=", len(creds)))
				for _, c := range creds {
					v, err := metricValue(body, fmt.Sprintf(`clearance_credential_ready{name=%q,namespace=%q}`, c.name, c.namespace))
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(v).To(BeEquivalentTo(1))
				}
			}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

			for _, c := range creds {
				secret := c.expectReady(5 * time.Second)
				Expect(string(secret.Data["token"])).To(Equal(tokens[c.name]), "%s: token rewritten after failover", c.name)
				Expect(c.mints()).To(BeEquivalentTo(1), "%s minted twice", c.name)
			}
			Expect(successes(second, reader)).To(BeZero())

			late := createCredential(haNamespace, "ha-late")
			late.expectReady(readyTimeout)
			Expect(late.mints()).To(BeEquivalentTo(1))
			Expect(successes(second, reader)).To(BeEquivalentTo(1))
		})

		AfterAll(func() {
			if second != nil {
				second.stop()
			}
		})
	})
}
