package e2e

import (
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

// clusterSpecs run a ClusterClearanceCredential with the manager of the
// chart's cluster-wide release and of the kustomize configuration, each
// with its shipped RBAC: one token, written into two namespaces.
func clusterSpecs() {
	for _, install := range []struct {
		name             string
		deploy           func() *unstructured.Unstructured
		namespace, sa    string
		credentialSuffix string
	}{
		{"chart", func() *unstructured.Unstructured { return chartDeployment }, chartNamespace, chartSA, "chart"},
		{"kustomize", func() *unstructured.Unstructured { return kustomizeDeployment }, kustomizeNamespace, kustomizeSA, "kustomize"},
	} {
		Context("a ClusterClearanceCredential with the operator installed by "+install.name, Ordered, func() {
			var mgr *manager
			BeforeAll(func() {
				Expect(install.deploy()).NotTo(BeNil(), "the install spec must run first")
				mgr = startManager("cluster-"+install.name, install.deploy(), install.namespace, install.sa)
			})
			AfterAll(func() {
				mgr.stop()
			})

			It("writes one token into the target Secret of each selected namespace", func() {
				ctx, cancel := withTimeout(time.Minute)
				defer cancel()
				label := map[string]string{"clearance-e2e": install.credentialSuffix}
				namespaces := []string{"e2e-shared-a-" + install.credentialSuffix, "e2e-shared-b-" + install.credentialSuffix}
				for _, ns := range namespaces {
					Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: label}})).To(Succeed())
				}
				data, err := os.ReadFile(nextConnFile())
				Expect(err).NotTo(HaveOccurred())
				cf, err := clearance.ParseConnectionFile(data)
				Expect(err).NotTo(HaveOccurred())
				// The connection Secret lives in the operator's namespace, the cluster resource namespace.
				Expect(k8sClient.Create(ctx, &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Name: "shared-connection", Namespace: install.namespace},
					Data:       map[string][]byte{clearancev1alpha1.DefaultConnectionSecretKey: data},
				})).To(Succeed())
				cc := &clearancev1alpha1.ClusterClearanceCredential{
					ObjectMeta: metav1.ObjectMeta{Name: "shared-" + install.credentialSuffix},
					Spec: clearancev1alpha1.ClusterClearanceCredentialSpec{
						ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: "shared-connection"},
						SecretName:          "shared-token",
						NamespaceSelector:   &metav1.LabelSelector{MatchLabels: label},
						SecretTemplate:      &clearancev1alpha1.SecretTemplate{Data: map[string]string{"authorization": "Bearer {{ .Token }}"}},
					},
				}
				Expect(k8sClient.Create(ctx, cc)).To(Succeed())

				var token string
				Eventually(func(g Gomega) {
					got := &clearancev1alpha1.ClusterClearanceCredential{}
					g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(cc), got)).To(Succeed())
					g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, clearancev1alpha1.ConditionReady)).To(BeTrue(), "%+v", got.Status.Conditions)
					g.Expect(got.Status.WrittenNamespaces).To(BeEquivalentTo(2))
					for _, ns := range namespaces {
						s := &corev1.Secret{}
						g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shared-token"}, s)).To(Succeed())
						g.Expect(s.Data).To(HaveKey("token"))
						if token == "" {
							token = string(s.Data["token"])
						}
						g.Expect(string(s.Data["token"])).To(Equal(token))
						g.Expect(string(s.Data["authorization"])).To(Equal("Bearer " + token))
						g.Expect(metav1.GetControllerOf(s)).To(HaveField("Kind", "ClusterClearanceCredential"))
					}
				}).WithTimeout(readyTimeout).WithPolling(250 * time.Millisecond).Should(Succeed())
				Expect(emulatorStats().Client(cf.ClientID(), clearancetest.OutcomeSuccess)).To(BeEquivalentTo(1))
				Expect(mgr.log()).NotTo(ContainSubstring(token))
				Expect(mgr.log()).NotTo(ContainSubstring("is forbidden"))

				out, _, err := run(kubectlBin, "--kubeconfig", adminKubeconfig, "get", "cccred", cc.Name)
				Expect(err).NotTo(HaveOccurred())
				Expect(out).To(MatchRegexp(`shared-token\s+2\s+2\s+0\s`))
				Expect(k8sClient.Delete(ctx, cc)).To(Succeed())
			})
		})
	}
}
