package v1alpha1_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

var _ = Describe("ClusterClearanceCredential validation", func() {
	valid := func() *clearancev1alpha1.ClusterClearanceCredential {
		return &clearancev1alpha1.ClusterClearanceCredential{
			ObjectMeta: metav1.ObjectMeta{Name: "cc-" + rand.String(6)},
			Spec: clearancev1alpha1.ClusterClearanceCredentialSpec{
				ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: "clearance-connection"},
				SecretName:          "clearance-token",
				Namespaces:          []string{"apps"},
			},
		}
	}

	It("is cluster-scoped, found by its short name, and defaults like ClearanceCredential", func(ctx context.Context) {
		cc := valid()
		Expect(k8sClient.Create(ctx, cc)).To(Succeed())
		DeferCleanup(func(ctx context.Context) { _ = k8sClient.Delete(ctx, cc) })
		Expect(cc.Spec.ConnectionSecretRef.Key).To(Equal(clearancev1alpha1.DefaultConnectionSecretKey))
		Expect(cc.Spec.TokenRequestEncoding).To(Equal(clearancev1alpha1.TokenRequestEncodingForm))

		dc, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		list, err := dc.Discovery().ServerResourcesForGroupVersion(clearancev1alpha1.GroupVersion.String())
		Expect(err).NotTo(HaveOccurred())
		var found *metav1.APIResource
		for i := range list.APIResources {
			if list.APIResources[i].Name == "clusterclearancecredentials" {
				found = &list.APIResources[i]
			}
		}
		Expect(found).NotTo(BeNil())
		Expect(found.Namespaced).To(BeFalse())
		Expect(found.ShortNames).To(ConsistOf("cccred"))
		Expect(found.Categories).To(ConsistOf("clearance"))
	})

	DescribeTable("rejects an invalid spec with a clear message",
		func(ctx context.Context, mutate func(*clearancev1alpha1.ClusterClearanceCredential), wantMessage string) {
			cc := valid()
			mutate(cc)
			err := k8sClient.Create(ctx, cc)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(wantMessage))
		},
		Entry("no namespaces selected", func(cc *clearancev1alpha1.ClusterClearanceCredential) {
			cc.Spec.Namespaces = nil
		}, "select the target namespaces"),
		Entry("a namespace name that is none", func(cc *clearancev1alpha1.ClusterClearanceCredential) {
			cc.Spec.Namespaces = []string{"Not_A_Namespace"}
		}, "must be a namespace name"),
		Entry("a data template replacing the token", func(cc *clearancev1alpha1.ClusterClearanceCredential) {
			cc.Spec.SecretTemplate = &clearancev1alpha1.SecretTemplate{Data: map[string]string{"expiresAt": "x"}}
		}, "cannot be templated"),
	)
})
