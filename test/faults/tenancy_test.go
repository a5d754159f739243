package faults

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

// unstructuredCredential is a credential as a user could submit it, with
// whatever extra fields they like.
func unstructuredCredential(ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": clearancev1alpha1.GroupVersion.String(),
		"kind":       "ClearanceCredential",
		"metadata": map[string]any{
			"name": name, "namespace": ns,
			"labels": map[string]any{inProcLabel: inProcValue},
		},
		"spec": spec,
	}}
	return u
}

var _ = Describe("Secrecy and tenancy", Ordered, ContinueOnFailure, func() {
	var (
		mgr *inProcManager
		srv *clearancetest.Server
	)
	BeforeAll(func() {
		mgr = startInProcManager(inProcOptions{})
		DeferCleanup(mgr.stop)
		srv = newEmulator(clearancetest.WithTokenTTL(time.Hour))
	})

	It("a credential in namespace A neither reads a connection Secret nor writes a target Secret in namespace B", func(ctx context.Context) {
		nsA, nsB := newNamespace(ctx, k8sClient), newNamespace(ctx, k8sClient)
		fileB := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, nsB, "conn", fileB.Data)
		foreign := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "token", Namespace: nsB},
			Data:       map[string][]byte{"token": []byte("b's own")},
		}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())

		By("no API field names another namespace: strict validation refuses such fields")
		spec := map[string]any{
			"connectionSecretRef": map[string]any{"name": "conn", "namespace": nsB},
			"secretName":          "token",
			"secretNamespace":     nsB,
			"targetNamespace":     nsB,
		}
		err := k8sClient.Create(ctx, unstructuredCredential(nsA, "cred", spec), client.FieldValidation("Strict"))
		Expect(err).To(MatchError(And(
			ContainSubstring(`unknown field "spec.connectionSecretRef.namespace"`),
			ContainSubstring(`unknown field "spec.secretNamespace"`),
			ContainSubstring(`unknown field "spec.targetNamespace"`))))

		By("and drops them otherwise: the reference resolves in the credential's own namespace")
		Expect(k8sClient.Create(ctx, unstructuredCredential(nsA, "cred", spec))).To(Succeed())
		stored := getCredential(ctx, k8sClient, nsA, "cred")
		Expect(stored.Spec.ConnectionSecretRef).To(Equal(clearancev1alpha1.SecretKeyRef{Name: "conn", Key: clearancev1alpha1.DefaultConnectionSecretKey}))
		ready := eventuallyCondition(ctx, k8sClient, nsA, "cred", clearancev1alpha1.ConditionReady, 15*time.Second,
			haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonConnectionSecretNotFound))
		Expect(ready.Message).To(ContainSubstring(`not found in namespace "` + nsA + `"`))
		Expect(requests(srv, fileB.ClientID())).To(BeZero(), "B's connection file was not used")

		By("with a connection Secret of its own, the token lands in A; B's Secret of that name is untouched")
		fileA := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, nsA, "conn", fileA.Data)
		tokenA := eventuallyReady(ctx, k8sClient, nsA, "cred", "token", 15*time.Second)
		Expect(successes(srv, fileA.ClientID())).To(BeEquivalentTo(1))
		Expect(requests(srv, fileB.ClientID())).To(BeZero())
		s, err := getSecret(ctx, k8sClient, nsB, "token")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Data).To(Equal(map[string][]byte{"token": []byte("b's own")}))
		Expect(s.OwnerReferences).To(BeEmpty())
		secretsB := &corev1.SecretList{}
		Expect(k8sClient.List(ctx, secretsB, client.InNamespace(nsB))).To(Succeed())
		Expect(secretsB.Items).To(HaveLen(2), "nothing new in B")
		expectNoSecretMaterial(ctx, k8sClient, nsA, logSink.String(), [][]byte{fileA.Data, fileB.Data}, tokenA)
		expectNoSecretMaterial(ctx, k8sClient, nsB, logSink.String(), [][]byte{fileA.Data, fileB.Data}, tokenA)
	})

	It("writes only Opaque Secrets controlled by the credential, whatever the spec says", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		spec := map[string]any{
			"connectionSecretRef": map[string]any{"name": "conn"},
			"secretName":          "token",
			"type":                string(corev1.SecretTypeServiceAccountToken),
			"secretType":          string(corev1.SecretTypeServiceAccountToken),
			"ownerReferences":     []any{map[string]any{"apiVersion": "v1", "kind": "Namespace", "name": ns, "uid": "x"}},
			"secretTemplate": map[string]any{
				"type": string(corev1.SecretTypeServiceAccountToken),
				"labels": map[string]any{
					clearancev1alpha1.ManagedByLabel: "someone-else",
					"team":                           "evidence",
				},
				"annotations": map[string]any{
					corev1.ServiceAccountNameKey:          "default",
					corev1.ServiceAccountUIDKey:           "123",
					clearancev1alpha1.ExpiresAtAnnotation: "2999-01-01T00:00:00Z",
				},
				"ownerReferences": []any{map[string]any{"apiVersion": "v1", "kind": "Namespace", "name": ns, "uid": "x"}},
			},
		}
		err := k8sClient.Create(ctx, unstructuredCredential(ns, "cred", spec), client.FieldValidation("Strict"))
		Expect(err).To(MatchError(And(ContainSubstring(`unknown field "spec.type"`), ContainSubstring(`unknown field "spec.secretTemplate.ownerReferences"`))))
		Expect(k8sClient.Create(ctx, unstructuredCredential(ns, "cred", spec))).To(Succeed())
		token := eventuallyReady(ctx, k8sClient, ns, "cred", "token", 15*time.Second)

		cred := getCredential(ctx, k8sClient, ns, "cred")
		s, err := getSecret(ctx, k8sClient, ns, "token")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Type).To(Equal(corev1.SecretTypeOpaque))
		Expect(s.OwnerReferences).To(ConsistOf(And(
			HaveField("UID", cred.UID), HaveField("Kind", "ClearanceCredential"), HaveField("Name", "cred"),
			HaveField("Controller", HaveValue(BeTrue())))))
		Expect(s.Labels).To(HaveKeyWithValue(clearancev1alpha1.ManagedByLabel, clearancev1alpha1.ManagedByValue))
		Expect(s.Labels).To(HaveKeyWithValue("team", "evidence"))
		Expect(s.Annotations[clearancev1alpha1.ExpiresAtAnnotation]).To(Equal(string(s.Data[clearancev1alpha1.SecretKeyExpiresAt])))

		By("a service-account-token Secret already holding the name is a conflict, never converted")
		saToken := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "sa-token", Namespace: ns, Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}},
			Type:       corev1.SecretTypeServiceAccountToken,
		}
		Expect(k8sClient.Create(ctx, saToken)).To(Succeed())
		createCredential(ctx, ns, "other", "conn", "sa-token")
		eventuallyCondition(ctx, k8sClient, ns, "other", clearancev1alpha1.ConditionReady, 15*time.Second,
			haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonTargetConflict))
		s, err = getSecret(ctx, k8sClient, ns, "sa-token")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Type).To(Equal(corev1.SecretTypeServiceAccountToken))
		Expect(s.OwnerReferences).To(BeEmpty())
		Expect(s.Data).NotTo(HaveKey(clearancev1alpha1.SecretKeyToken))
		Expect(successes(srv, cf.ClientID())).To(BeEquivalentTo(1))
		expectNoSecretMaterial(ctx, k8sClient, ns, logSink.String(), [][]byte{cf.Data}, token)
	})

	// Template annotations under clearance.dev/ are the operator's own: were
	// clearance.dev/refresh-requested-at copied from the template, every
	// reconcile would see a refresh request and each write would cause
	// another mint.
	It("does not mint in a loop when the secretTemplate carries the refresh annotation", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		createCredential(ctx, ns, "cred", "conn", "token", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.SecretTemplate = &clearancev1alpha1.SecretTemplate{
				Annotations: map[string]string{clearancev1alpha1.RefreshRequestedAtAnnotation: "2026-11-29T00:00:00Z"},
			}
		})
		eventuallyReady(ctx, k8sClient, ns, "cred", "token", 15*time.Second)
		Consistently(func() int64 { return successes(srv, cf.ClientID()) }).WithTimeout(4*time.Second).
			Should(BeNumerically("<=", 1), "one token, not one per reconcile")
	})
})
