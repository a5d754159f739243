package controller

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

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
			}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: FieldOwner}}},
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

// The verdict is trusted because no Secret from the apiserver can carry its
// data key: the key is not a valid Secret data key.
func TestTokenStateKeyCannotBeStored(t *testing.T) {
	g := NewWithT(t)
	g.Expect(validation.IsConfigMapKey(dataTokenState)).NotTo(BeEmpty())
}
