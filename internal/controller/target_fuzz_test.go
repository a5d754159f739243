package controller

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
)

// FuzzTargetSecret checks that nothing a user can put in the spec (the
// secretTemplate's labels and annotations, the names) or in a stored Secret's
// annotations changes what makes the target Secret safe: it is always type
// Opaque, has exactly one owner reference (the credential, as controller),
// keeps the managed-by label and the operator's own annotations, and holds
// only the documented data keys. The template must not set the operator's
// bookkeeping annotations either.
//
// The committed input
// testdata/fuzz/FuzzTargetSecret/regression_template_sets_refresh_annotation
// is the case it found: applySecret let a secretTemplate annotation named
// clearance.dev/refresh-requested-at through whenever the credential had no
// refresh request of its own, so DecideMint saw a refresh request on every
// reconcile and minted again after each write (test/faults "does not mint
// in a loop when the secretTemplate carries the refresh annotation" checks
// the end-to-end behaviour).
func FuzzTargetSecret(f *testing.F) {
	f.Add("team", "evidence", "note", "hello")
	f.Add(clearancev1alpha1.ManagedByLabel, "someone-else", clearancev1alpha1.ExpiresAtAnnotation, "2999-01-01T00:00:00Z")
	f.Add("kubernetes.io/service-account.name", "default", "kubernetes.io/service-account.name", "default")
	f.Add("type", "kubernetes.io/service-account-token", annotationTokenHash, "forged")
	f.Add("", "", annotationConnectionHash, "")
	f.Add("ownerReferences", `[{"kind":"Node"}]`, "metadata.ownerReferences", `[{"kind":"Node"}]`)

	f.Fuzz(func(t *testing.T, labelKey, labelValue, annotationKey, annotationValue string) {
		cred := &clearancev1alpha1.ClearanceCredential{
			ObjectMeta: metav1.ObjectMeta{Name: "cred", Namespace: "ns", UID: types.UID("uid-1")},
			Spec: clearancev1alpha1.ClearanceCredentialSpec{
				ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: "conn"},
				SecretName:          "token",
				SecretTemplate: &clearancev1alpha1.SecretTemplate{
					Labels:      map[string]string{labelKey: labelValue},
					Annotations: map[string]string{annotationKey: annotationValue},
				},
			},
		}
		issued := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
		m := &mintedToken{
			token: &clearance.Token{AccessToken: "access-token-value", TokenType: "Bearer", IssuedAt: issued,
				ExpiresAt: issued.Add(time.Hour), Endpoint: "http://127.0.0.1:1/connect/token", KeyID: "kid"},
			connection: &clearance.ConnectionFile{ServicePrincipalID: "151", TenantID: "tenant",
				FirstAddresses: map[string]string{"SecurityTokenServiceBaseAddresses": "http://127.0.0.1:1/connect"}},
			connectionHash: "c", specHash: "s", renewAt: issued.Add(40 * time.Minute),
		}
		minted := targetSecret(cred, m, nil, "")
		checkTargetSecret(t, cred, minted, true)
		checkSameAsCreated(t, minted, newTargetSecret(cred, m, nil))
		plain := cred.DeepCopy()
		plain.Spec.SecretTemplate = nil
		checkBookkeeping(t, operatorAnnotations(targetSecret(plain, m, nil, "").Annotations), operatorAnnotations(minted.Annotations))

		// Re-applying a stored Secret carrying arbitrary annotations and a
		// foreign owner reference keeps the same guarantees.
		stored := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: "token", Namespace: "ns",
				Annotations:     map[string]string{annotationKey: annotationValue, annotationTokenHash: "h"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "n", UID: "other"}},
			},
			Type: corev1.SecretTypeServiceAccountToken,
			Data: map[string][]byte{clearancev1alpha1.SecretKeyToken: []byte("t")},
		}
		reapplied := reapplySecret(cred, stored, m.connection, nil)
		checkTargetSecret(t, cred, reapplied, false)
		checkBookkeeping(t, operatorAnnotations(stored.Annotations), operatorAnnotations(reapplied.Annotations))
	})
}

// bookkeepingAnnotations are the operator's own annotations on the target
// Secret: the schedule, and the inputs DecideMint compares on every reconcile.
var bookkeepingAnnotations = []string{
	clearancev1alpha1.ExpiresAtAnnotation, annotationIssuedAt, annotationRenewalTime, annotationConnectionHash,
	annotationSpecHash, annotationTokenHash, annotationRefresh, annotationTokenEndpoint, annotationKeyID,
}

// operatorAnnotations returns the bookkeeping annotations present in all.
func operatorAnnotations(all map[string]string) map[string]string {
	out := map[string]string{}
	for _, k := range bookkeepingAnnotations {
		if v, ok := all[k]; ok {
			out[k] = v
		}
	}
	return out
}

// checkBookkeeping fails when the secretTemplate added or changed one of the
// operator's own annotations. They feed DecideMint on the next reconcile, so
// a template value there (for example clearance.dev/refresh-requested-at)
// would make every reconcile see a pending refresh request and mint again.
func checkBookkeeping(t *testing.T, want, got map[string]string) {
	t.Helper()
	for k, v := range got {
		if w, ok := want[k]; !ok || w != v {
			t.Fatalf("the secretTemplate set the operator's annotation %q (to %q; without the template: %q, present %v)", k, v, w, ok)
		}
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Fatalf("the secretTemplate removed the operator's annotation %q", k)
		}
	}
}

func checkTargetSecret(t *testing.T, cred *clearancev1alpha1.ClearanceCredential, s *corev1ac.SecretApplyConfiguration, minted bool) {
	t.Helper()
	if s.Type == nil || *s.Type != corev1.SecretTypeOpaque {
		t.Fatalf("type = %v, want Opaque", s.Type)
	}
	if *s.Name != cred.Spec.SecretName || *s.Namespace != cred.Namespace {
		t.Fatalf("writes %s/%s, want %s/%s", *s.Namespace, *s.Name, cred.Namespace, cred.Spec.SecretName)
	}
	if len(s.OwnerReferences) != 1 {
		t.Fatalf("%d owner references, want exactly the credential", len(s.OwnerReferences))
	}
	ref := s.OwnerReferences[0]
	if *ref.UID != cred.UID || *ref.Kind != "ClearanceCredential" || *ref.APIVersion != clearancev1alpha1.GroupVersion.String() ||
		*ref.Name != cred.Name || ref.Controller == nil || !*ref.Controller {
		t.Fatalf("owner reference %+v does not point at the credential as controller", ref)
	}
	if s.Labels[clearancev1alpha1.ManagedByLabel] != clearancev1alpha1.ManagedByValue {
		t.Fatalf("managed-by label overridden: %q", s.Labels[clearancev1alpha1.ManagedByLabel])
	}
	if !minted {
		return
	}
	if s.Annotations[annotationTokenHash] != tokenDataHash("access-token-value", "2026-11-29T13:00:00Z", "Bearer") ||
		s.Annotations[clearancev1alpha1.ExpiresAtAnnotation] != "2026-11-29T13:00:00Z" {
		t.Fatalf("the template overrode the operator's annotations: %v", s.Annotations)
	}
	allowed := map[string]bool{
		clearancev1alpha1.SecretKeyToken: true, clearancev1alpha1.SecretKeyExpiresAt: true, clearancev1alpha1.SecretKeyTokenType: true,
		clearancev1alpha1.SecretKeyTenantID: true, clearancev1alpha1.SecretKeyClientID: true,
	}
	for k := range s.Data {
		if !allowed[k] && !strings.HasSuffix(k, "Address") {
			t.Fatalf("unexpected data key %q", k)
		}
	}
}

// checkSameAsCreated fails when the Secret created for a new credential
// differs from the one applied for it later: the first write is a create.
func checkSameAsCreated(t *testing.T, applied *corev1ac.SecretApplyConfiguration, created *corev1.Secret) {
	t.Helper()
	if !reflect.DeepEqual(applied.Labels, created.Labels) || !reflect.DeepEqual(applied.Annotations, created.Annotations) ||
		!reflect.DeepEqual(applied.Data, created.Data) || *applied.Type != created.Type ||
		*applied.Name != created.Name || *applied.Namespace != created.Namespace {
		t.Fatalf("created Secret differs from the applied one:\ncreated %+v\napplied %+v", created, applied)
	}
	if len(created.OwnerReferences) != 1 {
		t.Fatalf("created Secret has %d owner references", len(created.OwnerReferences))
	}
	a, c := applied.OwnerReferences[0], created.OwnerReferences[0]
	if *a.APIVersion != c.APIVersion || *a.Kind != c.Kind || *a.Name != c.Name || *a.UID != c.UID ||
		!reflect.DeepEqual(a.Controller, c.Controller) || !reflect.DeepEqual(a.BlockOwnerDeletion, c.BlockOwnerDeletion) {
		t.Fatalf("owner references differ: created %+v, applied %+v", c, a)
	}
}
