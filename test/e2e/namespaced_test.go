package e2e

import (
	"net/http"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// namespacedSpecs run the manager of the namespaced release: it works in the
// namespaces it has Roles in, leaves the others alone, and reports a missing
// permission clearly instead of crashing.
func namespacedSpecs() {
	Context("operator installed by the chart in namespaced mode", Ordered, func() {
		const unwatched = "e2e-unwatched"
		var mgr *manager

		BeforeAll(func() {
			Expect(scopedDeployment).NotTo(BeNil(), "the namespaced install spec must run first")
			createNamespace(unwatched)

			// Remove one verb from the Role in team A: Secrets can no longer be
			// created there, and a new credential's target Secret is created.
			ctx, cancel := withTimeout(10 * time.Second)
			defer cancel()
			role := &rbacv1.Role{}
			Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: teamA, Name: scopedSA + "-manager"}, role)).To(Succeed())
			removed := false
			for i, r := range role.Rules {
				if slices.Contains(r.Resources, "secrets") {
					role.Rules[i].Verbs = slices.DeleteFunc(r.Verbs, func(v string) bool { return v == "create" })
					removed = len(role.Rules[i].Verbs) < len(r.Verbs)
				}
			}
			Expect(removed).To(BeTrue(), "the Role grants create on Secrets")
			Expect(k8sClient.Update(ctx, role)).To(Succeed())

			mgr = startManager("scoped", scopedDeployment, scopedNamespace, scopedSA)
		})

		AfterAll(func() {
			mgr.stop()
		})

		It("manages credentials in its namespaces and leaves the others alone", func() {
			outside := createCredential(unwatched, "outside")
			inside := createCredential(teamB, "inside")
			inside.expectReady(readyTimeout)
			Expect(inside.mints()).To(BeEquivalentTo(1))

			// By now the manager has long synced its caches.
			Expect(outside.get(Default).Status.Conditions).To(BeEmpty())
			Expect(outside.mints()).To(BeZero())
			// Its caches only list and watch where its Roles allow.
			Expect(mgr.log()).NotTo(ContainSubstring("cannot list resource"))
			Expect(mgr.log()).NotTo(ContainSubstring("cannot watch resource"))
		})

		It("reports a forbidden Secret write clearly and keeps running when the Role lacks a verb", func() {
			denied := createCredential(teamA, "denied")
			Eventually(func(g Gomega) {
				cred := denied.get(g)
				c := meta.FindStatusCondition(cred.Status.Conditions, clearancev1alpha1.ConditionReconciling)
				g.Expect(c).NotTo(BeNil())
				g.Expect(c.Reason).To(Equal(clearancev1alpha1.ReasonTargetWriteFailed))
				g.Expect(meta.IsStatusConditionTrue(cred.Status.Conditions, clearancev1alpha1.ConditionReady)).To(BeFalse())
			}).WithTimeout(readyTimeout).WithPolling(250 * time.Millisecond).Should(Succeed())

			Eventually(mgr.Err).WithTimeout(30 * time.Second).Should(gbytes.Say(`forbidden[^\n]*cannot create resource \\"secrets\\"[^\n]*` + teamA))

			ctx, cancel := withTimeout(10 * time.Second)
			defer cancel()
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: teamA, Name: denied.secretName}, &metav1.PartialObjectMetadata{
				TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			})
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no target Secret without create permission: %v", err)

			// Retried with backoff, not a crash loop: the process stays up and
			// healthy, and never dumps goroutines.
			Consistently(mgr.Exited).WithTimeout(5 * time.Second).ShouldNot(BeClosed())
			status, err := probe(mgr.probeAddr, "/healthz")
			Expect(err).NotTo(HaveOccurred())
			Expect(status).To(Equal(http.StatusOK))
			Expect(mgr.log()).NotTo(ContainSubstring("panic"))
			Expect(mgr.log()).NotTo(ContainSubstring("goroutine "))
			// The retries reuse the token minted first (kept in memory) and
			// back off exponentially: a handful of attempts, one mint.
			Expect(denied.mints()).To(BeEquivalentTo(1))
			attempts := 0
			for _, l := range strings.Split(mgr.log(), "\n") {
				if strings.Contains(l, "cannot create resource") && strings.Contains(l, denied.secretName) {
					attempts++
				}
			}
			Expect(attempts).To(BeNumerically("<=", 25), "write attempts within a few seconds")
		})
	})
}
