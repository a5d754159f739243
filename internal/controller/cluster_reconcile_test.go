package controller

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// clusterTestNamespaces are the namespaces the test cluster credential selects.
var clusterTestNamespaces = []string{"team-a", "team-b"}

// newClusterHarness adds to the harness the selected namespaces, a
// ClusterClearanceCredential "shared" naming them, whose connection Secret
// is the harness's (the cluster resource namespace is testNamespace), and
// a reconciler for it.
func newClusterHarness(t *testing.T) (*harness, *ClusterClearanceCredentialReconciler) {
	t.Helper()
	h := newHarness(t)
	for _, ns := range clusterTestNamespaces {
		h.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	h.create(&clearancev1alpha1.ClusterClearanceCredential{
		ObjectMeta: metav1.ObjectMeta{Name: "shared", UID: "shared-uid", Generation: 1},
		Spec: clearancev1alpha1.ClusterClearanceCredentialSpec{
			ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: testConnection, Key: clearancev1alpha1.DefaultConnectionSecretKey},
			SecretName:          testTarget,
			Namespaces:          clusterTestNamespaces,
		},
	})
	r := newClusterReconciler(h.cached, h.apiserver, h.metadata, h.recorder, Options{
		Minter: h.minter, Clock: h.clock, MinForcedMintInterval: testMinForcedMintInterval,
		ClusterResourceNamespace: testNamespace,
	}.withDefaults())
	return h, r
}

// clusterTokens is the token in each selected namespace's target Secret ("" where there is none).
func clusterTokens(g Gomega, h *harness) []string {
	var out []string
	for _, ns := range clusterTestNamespaces {
		s := &corev1.Secret{}
		if err := h.store.Get(h.ctx, types.NamespacedName{Namespace: ns, Name: testTarget}, s); !apierrors.IsNotFound(err) {
			g.Expect(err).NotTo(HaveOccurred(), "reading Secret in %s", ns)
		}
		out = append(out, string(s.Data[clearancev1alpha1.SecretKeyToken]))
	}
	return out
}

// TestClusterReconcileCacheBehindOwnWrite: a reconcile whose cache has seen
// none of the Secrets the previous one created does not request a second
// token, and still counts both namespaces as written; Secrets really gone
// are minted again.
func TestClusterReconcileCacheBehindOwnWrite(t *testing.T) {
	g := NewWithT(t)
	h, r := newClusterHarness(t)
	reconcile := func() {
		t.Helper()
		_, err := r.Reconcile(h.ctx, ctrl.Request{NamespacedName: types.NamespacedName{Name: "shared"}})
		g.Expect(err).NotTo(HaveOccurred())
	}
	status := func() clearancev1alpha1.ClusterClearanceCredentialStatus {
		cc := &clearancev1alpha1.ClusterClearanceCredential{}
		g.Expect(h.store.Get(h.ctx, types.NamespacedName{Name: "shared"}, cc)).To(Succeed())
		return cc.Status
	}

	reconcile()
	g.Expect(h.minter.calls).To(Equal(1))
	g.Expect(clusterTokens(g, h)).To(Equal([]string{"token-1", "token-1"}))

	h.targetNotCached = true
	h.advanceTo(testStart.Add(time.Second))
	reconcile()
	g.Expect(h.minter.calls).To(Equal(1), "no second token request")
	g.Expect(clusterTokens(g, h)).To(Equal([]string{"token-1", "token-1"}))
	g.Expect(status().WrittenNamespaces).To(BeEquivalentTo(2))
	g.Expect(status().Conditions).To(ContainElement(And(HaveField("Type", "Ready"), HaveField("Status", metav1.ConditionTrue))))

	for _, ns := range clusterTestNamespaces {
		g.Expect(h.store.Delete(h.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: testTarget}})).To(Succeed())
	}
	reconcile()
	g.Expect(h.minter.calls).To(Equal(2), "Secrets that are gone are minted again")
	g.Expect(clusterTokens(g, h)).To(Equal([]string{"token-2", "token-2"}))
}
