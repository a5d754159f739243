package kubectlclearance

import (
	"context"
	"encoding/json"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/tokeninfo"
)

func newClusterCredential(name string) *clearancev1alpha1.ClusterClearanceCredential {
	cred := newCredential("", name)
	return &clearancev1alpha1.ClusterClearanceCredential{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: "cluster-uid"},
		Spec: clearancev1alpha1.ClusterClearanceCredentialSpec{
			ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: "conn"},
			SecretName:          "shared-token",
			NamespaceSelector:   &metav1.LabelSelector{MatchLabels: map[string]string{"shared": "yes"}},
		},
		Status: clearancev1alpha1.ClusterClearanceCredentialStatus{ClearanceCredentialStatus: cred.Status, SelectedNamespaces: 2, WrittenNamespaces: 2},
	}
}

func TestStatusOfAClusterCredential(t *testing.T) {
	g := NewWithT(t)
	token := signedToken(t)
	h := newHarness(t, newClusterCredential("shared"),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b", Labels: map[string]string{"shared": "yes"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"shared": "yes"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}},
		targetSecret("team-a", "shared-token", token))

	code, out, errOut := h.run("status", "cccred/shared", "-o", "json")
	g.Expect(code).To(Equal(0), errOut)
	var r Report
	g.Expect(json.Unmarshal([]byte(out), &r)).To(Succeed())
	g.Expect(r.Name).To(Equal("shared"))
	g.Expect(r.Target.TokenSHA256).To(Equal(tokeninfo.Fingerprint([]byte(token))), "the token of the first selected namespace")
	g.Expect(out).NotTo(ContainSubstring(token))

	// Listed with the namespaced credentials of all namespaces.
	code, out, errOut = h.run("status", "-A")
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(out).To(ContainSubstring("shared"))

	// A renewal is requested through its annotation.
	code, out, errOut = h.run("renew", "clusterclearancecredential/shared")
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(out).To(ContainSubstring("clusterclearancecredential shared: renewal requested"))
	cc := &clearancev1alpha1.ClusterClearanceCredential{}
	g.Expect(h.client.Get(context.Background(), client.ObjectKey{Name: "shared"}, cc)).To(Succeed())
	g.Expect(cc.Annotations).To(HaveKey(clearancev1alpha1.RefreshRequestedAtAnnotation))
}
