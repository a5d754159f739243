package testutil

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// CreateCredential creates, through the API, a connection Secret
// <name>-connection holding connectionFile under the default key and a
// ClearanceCredential <name> writing Secret <name>-token, whose name it
// returns: the credential the e2e and real-node suites run their consumers
// against.
func CreateCredential(ctx context.Context, cl client.Client, namespace, name string, connectionFile []byte) (string, error) {
	conn := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name + "-connection"},
		Data:       map[string][]byte{clearancev1alpha1.DefaultConnectionSecretKey: connectionFile},
	}
	if err := cl.Create(ctx, conn); err != nil {
		return "", err
	}
	target := name + "-token"
	cred := &clearancev1alpha1.ClearanceCredential{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: clearancev1alpha1.ClearanceCredentialSpec{
			ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: conn.Name},
			SecretName:          target,
		},
	}
	return target, cl.Create(ctx, cred)
}
