package controller

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

func TestSlimTargetSecret(t *testing.T) {
	const (
		token     = "eyJhbGciOiJSUzI1NiJ9.payload.signature"
		expiresAt = "2026-11-29T13:00:00Z"
	)
	written := func() *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "token", Namespace: "ns", Annotations: map[string]string{
				annotationTokenHash:      tokenDataHash(token, expiresAt, "Bearer"),
				annotationConnectionHash: "c",
				annotationIssuedAt:       "2026-11-29T12:00:00Z",
			}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: FieldOwner}},
				OwnerReferences: []metav1.OwnerReference{credentialRef("cred", "uid-1")}},
			Data: map[string][]byte{
				clearancev1alpha1.SecretKeyToken:     []byte(token),
				clearancev1alpha1.SecretKeyExpiresAt: []byte(expiresAt),
				clearancev1alpha1.SecretKeyTokenType: []byte("Bearer"),
				clearancev1alpha1.SecretKeyTenantID:  []byte("tenant"),
				clearancev1alpha1.SecretKeyClientID:  []byte("151@tenant"),
			},
		}
	}
	cases := []struct {
		name             string
		edit             func(*corev1.Secret)
		hasToken, intact bool
		// wantExpires is the expiry read back; "" for none
		wantExpires string
	}{
		{name: "as written", edit: func(*corev1.Secret) {}, hasToken: true, intact: true, wantExpires: expiresAt},
		{name: "token edited", edit: func(s *corev1.Secret) { s.Data[clearancev1alpha1.SecretKeyToken] = []byte("other") }, hasToken: true, wantExpires: expiresAt},
		{name: "expiresAt edited", edit: func(s *corev1.Secret) { s.Data[clearancev1alpha1.SecretKeyExpiresAt] = []byte("2999-01-01T00:00:00Z") }, hasToken: true, wantExpires: "2999-01-01T00:00:00Z"},
		{name: "token emptied", edit: func(s *corev1.Secret) { s.Data[clearancev1alpha1.SecretKeyToken] = nil }, wantExpires: expiresAt},
		{name: "token removed", edit: func(s *corev1.Secret) { delete(s.Data, clearancev1alpha1.SecretKeyToken) }, wantExpires: expiresAt},
		{name: "tokenType removed", edit: func(s *corev1.Secret) { delete(s.Data, clearancev1alpha1.SecretKeyTokenType) }, wantExpires: expiresAt},
		{name: "expiresAt removed", edit: func(s *corev1.Secret) { delete(s.Data, clearancev1alpha1.SecretKeyExpiresAt) }},
		{name: "no data", edit: func(s *corev1.Secret) { s.Data = nil }},
		{
			name:     "no annotations",
			edit:     func(s *corev1.Secret) { s.Annotations = nil },
			hasToken: true, wantExpires: expiresAt,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			s := written()
			tc.edit(s)
			slim := slimTargetSecret(s)

			g.Expect(slim.Data).NotTo(HaveKey(clearancev1alpha1.SecretKeyToken), "no token held")
			g.Expect(slim.Annotations).NotTo(HaveKey(annotationTokenHash))
			g.Expect(slim.Data).NotTo(HaveKey(clearancev1alpha1.SecretKeyTenantID))
			g.Expect(slim.ManagedFields).To(BeNil())
			for _, v := range slim.Annotations {
				g.Expect(v).NotTo(ContainSubstring(token))
			}
			st := storedTokenFrom(slim)
			g.Expect(st.HasToken).To(Equal(tc.hasToken), "HasToken")
			g.Expect(st.Intact).To(Equal(tc.intact), "Intact")
			if tc.wantExpires == "" {
				g.Expect(st.ExpiresAt.IsZero()).To(BeTrue())
			} else {
				g.Expect(formatTime(st.ExpiresAt)).To(Equal(tc.wantExpires))
			}
			// client-go may pass an object through the transform twice.
			g.Expect(storedTokenFrom(slimTargetSecret(slim.DeepCopy()))).To(Equal(st), "slimming is idempotent")
		})
	}
}

// credentialRef is the controller reference a ClearanceCredential puts on its target.
func credentialRef(name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: clearancev1alpha1.GroupVersion.String(), Kind: "ClearanceCredential",
		Name: name, UID: uid, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
}

func TestSlimTargetSecretKeepsBoundedState(t *testing.T) {
	big := strings.Repeat("x", 512<<10)
	t.Run("a Secret no credential controls keeps its name only", func(t *testing.T) {
		g := NewWithT(t)
		foreign := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", UID: "u", ResourceVersion: "7",
				Labels:      map[string]string{clearancev1alpha1.ManagedByLabel: clearancev1alpha1.ManagedByValue, "big": "v"},
				Annotations: map[string]string{annotationIssuedAt: big, "other": big}},
			Data: map[string][]byte{clearancev1alpha1.SecretKeyExpiresAt: []byte(big), clearancev1alpha1.SecretKeyTokenType: []byte(big)},
		}
		slim := slimTargetSecret(foreign)
		g.Expect(slim.ObjectMeta).To(Equal(metav1.ObjectMeta{Name: "s", Namespace: "ns", UID: "u", ResourceVersion: "7"}))
		g.Expect(slim.Data).To(Equal(map[string][]byte{dataTokenState: []byte(tokenStateMissing)}))
		g.Expect(slimTargetSecret(slim.DeepCopy())).To(Equal(slim), "idempotent")
	})
	t.Run("a controlled Secret keeps the operator's bookkeeping, capped", func(t *testing.T) {
		g := NewWithT(t)
		owned := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns",
				Labels:      map[string]string{clearancev1alpha1.ManagedByLabel: clearancev1alpha1.ManagedByValue, "team": big[:63]},
				Annotations: map[string]string{annotationIssuedAt: "2026-11-29T12:00:00Z", annotationKeyID: big, "tenant-note": big},
				OwnerReferences: []metav1.OwnerReference{
					{APIVersion: "v1", Kind: "ConfigMap", Name: "other", UID: "cm"}, credentialRef("cred", "uid-1")}},
			Data: map[string][]byte{clearancev1alpha1.SecretKeyExpiresAt: []byte(big), clearancev1alpha1.SecretKeyTokenType: []byte("Bearer")},
		}
		slim := slimTargetSecret(owned)
		g.Expect(slim.Annotations).To(Equal(map[string]string{annotationIssuedAt: "2026-11-29T12:00:00Z"}))
		g.Expect(slim.Labels).To(BeEmpty())
		g.Expect(slim.OwnerReferences).To(Equal([]metav1.OwnerReference{credentialRef("cred", "uid-1")}))
		g.Expect(slim.Data).NotTo(HaveKey(clearancev1alpha1.SecretKeyExpiresAt), "an oversized value is not what the operator wrote")
		g.Expect(storedTokenFrom(slim).Intact).To(BeFalse())
	})
}

// The verdict is trusted because no Secret from the apiserver can carry its
// data key: the key is not a valid Secret data key.
func TestTokenStateKeyCannotBeStored(t *testing.T) {
	g := NewWithT(t)
	g.Expect(validation.IsConfigMapKey(dataTokenState)).NotTo(BeEmpty())
}
