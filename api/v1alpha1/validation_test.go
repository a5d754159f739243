package v1alpha1_test

import (
	"context"
	"encoding/json"
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

func validCredential(ns string) *clearancev1alpha1.ClearanceCredential {
	return &clearancev1alpha1.ClearanceCredential{
		ObjectMeta: metav1.ObjectMeta{Name: "cred-" + rand.String(6), Namespace: ns},
		Spec: clearancev1alpha1.ClearanceCredentialSpec{
			ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: "clearance-connection"},
			SecretName:          "clearance-token",
		},
	}
}

var _ = Describe("ClearanceCredential validation", func() {
	var ns string

	BeforeEach(func(ctx context.Context) {
		ns = "validation-" + rand.String(6)
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	})

	It("accepts a valid credential, applies defaults and serves the printer columns", func(ctx context.Context) {
		cred := validCredential(ns)
		cred.Spec.RenewBefore = &metav1.Duration{Duration: 900_000_000_000} // 15m
		cred.Spec.Audience = "https://clearance.example/api"
		Expect(k8sClient.Create(ctx, cred)).To(Succeed())

		got := &clearancev1alpha1.ClearanceCredential{}
		Expect(k8sClient.Get(ctx, objectKey(cred), got)).To(Succeed())
		Expect(got.Spec.ConnectionSecretRef.Key).To(Equal(clearancev1alpha1.DefaultConnectionSecretKey))
		Expect(got.Spec.TokenRequestEncoding).To(Equal(clearancev1alpha1.TokenRequestEncodingForm))

		// The status subresource is on: a main-resource update ignores status...
		got.Status.KeyID = "ignored"
		Expect(k8sClient.Update(ctx, got)).To(Succeed())
		Expect(k8sClient.Get(ctx, objectKey(cred), got)).To(Succeed())
		Expect(got.Status.KeyID).To(BeEmpty())
		// ...and the status endpoint accepts it.
		expires := metav1.Now()
		got.Status.ExpiresAt = &expires
		got.Status.Conditions = []metav1.Condition{{
			Type: clearancev1alpha1.ConditionReady, Status: metav1.ConditionTrue,
			Reason: clearancev1alpha1.ReasonTokenValid, Message: "token valid", LastTransitionTime: expires,
		}}
		Expect(k8sClient.Status().Update(ctx, got)).To(Succeed())

		table := getTable(ctx, ns, cred.Name)
		var names []string
		for _, c := range table.ColumnDefinitions {
			names = append(names, c.Name)
		}
		Expect(names).To(Equal([]string{"Name", "Ready", "Secret", "Expires", "Age"}))
		Expect(table.Rows).To(HaveLen(1))
		Expect(table.Rows[0].Cells[1]).To(Equal("True"))
		Expect(table.Rows[0].Cells[2]).To(Equal("clearance-token"))
		Expect(table.Rows[0].Cells[3]).NotTo(BeEmpty())
	})

	It("is found by its short name and category", func() {
		dc, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		list, err := dc.Discovery().ServerResourcesForGroupVersion(clearancev1alpha1.GroupVersion.String())
		Expect(err).NotTo(HaveOccurred())
		var found *metav1.APIResource
		for i := range list.APIResources {
			if list.APIResources[i].Name == "clearancecredentials" {
				found = &list.APIResources[i]
			}
		}
		Expect(found).NotTo(BeNil())
		Expect(found.Namespaced).To(BeTrue())
		Expect(found.ShortNames).To(ConsistOf("ccred"))
		Expect(found.Categories).To(ConsistOf("clearance"))
	})

	DescribeTable("rejects an invalid spec with a clear message",
		func(ctx context.Context, mutate func(*clearancev1alpha1.ClearanceCredential), wantField, wantMessage string) {
			cred := validCredential(ns)
			mutate(cred)
			err := k8sClient.Create(ctx, cred)
			Expect(err).To(HaveOccurred())
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(wantField))
			Expect(err.Error()).To(ContainSubstring(wantMessage))
		},
		Entry("secretName not a DNS-1123 subdomain", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.SecretName = "Bad_Name"
		}, "spec.secretName", "must be a DNS-1123 subdomain"),
		Entry("secretName empty", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.SecretName = ""
		}, "spec.secretName", "should be at least 1 chars long"),
		Entry("connectionSecretRef.name not a DNS-1123 subdomain", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.ConnectionSecretRef.Name = "-starts-with-dash"
		}, "spec.connectionSecretRef.name", "must be a DNS-1123 subdomain"),
		Entry("connectionSecretRef.name too long", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.ConnectionSecretRef.Name = fmt.Sprintf("%0254d", 0)
		}, "spec.connectionSecretRef.name", "may not be more than 253"),
		Entry("key with a slash", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.ConnectionSecretRef.Key = "dir/config.json"
		}, "spec.connectionSecretRef.key", "should match"),
		Entry("key '..'", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.ConnectionSecretRef.Key = ".."
		}, "spec.connectionSecretRef.key", "must be a valid Secret data key"),
		Entry("renewBefore zero", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.RenewBefore = &metav1.Duration{}
		}, "spec.renewBefore", "renewBefore must be a positive duration"),
		Entry("renewBefore negative", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.RenewBefore = &metav1.Duration{Duration: -60_000_000_000}
		}, "spec.renewBefore", "renewBefore must be a positive duration"),
		Entry("tokenRequestEncoding unknown", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.TokenRequestEncoding = "XML"
		}, "spec.tokenRequestEncoding", `supported values: "Form", "JSON"`),
		Entry("target and source Secret are the same", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.SecretName = c.Spec.ConnectionSecretRef.Name
		}, "spec", "secretName must differ from connectionSecretRef.name"),
		Entry("a data template replacing the token", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.SecretTemplate = &clearancev1alpha1.SecretTemplate{Data: map[string]string{"token": "{{ .Token }}"}}
		}, "spec.secretTemplate.data", "cannot be templated"),
		Entry("a data template under an invalid key", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.SecretTemplate = &clearancev1alpha1.SecretTemplate{Data: map[string]string{"dir/file": "x"}}
		}, "spec.secretTemplate.data", "must be valid Secret data keys"),
		Entry("a data template too long", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.SecretTemplate = &clearancev1alpha1.SecretTemplate{Data: map[string]string{"k": fmt.Sprintf("%08193d", 0)}}
		}, "spec.secretTemplate.data", "at most 8192 characters"),
	)

	It("rejects a renewBefore that is not a duration", func(ctx context.Context) {
		raw := map[string]any{
			"apiVersion": clearancev1alpha1.GroupVersion.String(), "kind": "ClearanceCredential",
			"metadata": map[string]any{"name": "bad-duration", "namespace": ns},
			"spec": map[string]any{
				"connectionSecretRef": map[string]any{"name": "conn"},
				"secretName":          "tok",
				"renewBefore":         "soon",
			},
		}
		body, err := json.Marshal(raw)
		Expect(err).NotTo(HaveOccurred())
		cs, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		res := cs.RESTClient().Post().AbsPath("/apis/clearance.dev/v1alpha1/namespaces", ns, "clearancecredentials").
			Body(body).SetHeader("Content-Type", "application/json").Do(ctx)
		err = res.Error()
		Expect(err).To(HaveOccurred())
		Expect(apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("renewBefore"))
	})

	It("has no namespace field on either Secret reference", func(ctx context.Context) {
		raw := fmt.Sprintf(`{"apiVersion":%q,"kind":"ClearanceCredential","metadata":{"name":"cross-ns","namespace":%q},
			"spec":{"connectionSecretRef":{"name":"conn","namespace":"other"},"secretName":"tok"}}`,
			clearancev1alpha1.GroupVersion.String(), ns)
		cs, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		// fieldValidation=Strict makes the apiserver refuse unknown fields instead of dropping them.
		err = cs.RESTClient().Post().AbsPath("/apis/clearance.dev/v1alpha1/namespaces", ns, "clearancecredentials").
			Param("fieldValidation", "Strict").Body([]byte(raw)).SetHeader("Content-Type", "application/json").Do(ctx).Error()
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring(`unknown field "spec.connectionSecretRef.namespace"`))
	})
})

func objectKey(obj *clearancev1alpha1.ClearanceCredential) types.NamespacedName {
	return types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}
}

// getTable asks the apiserver for the server-side table rendering that
// `kubectl get` prints, so the printer columns are checked as users see them.
func getTable(ctx context.Context, ns, name string) *metav1.Table {
	cs, err := kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	raw, err := cs.RESTClient().Get().AbsPath("/apis/clearance.dev/v1alpha1/namespaces", ns, "clearancecredentials", name).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	Expect(err).NotTo(HaveOccurred())
	table := &metav1.Table{}
	Expect(json.Unmarshal(raw, table)).To(Succeed())
	return table
}
