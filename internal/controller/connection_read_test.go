package controller

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// recordingReader answers GETs from a list of canned results and records
// the resourceVersion each one asked for.
type recordingReader struct {
	client.Reader
	answers []error
	asked   []string
}

func (r *recordingReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	o := &client.GetOptions{}
	o.ApplyOptions(opts)
	rv := "<quorum>"
	if o.Raw != nil && o.Raw.ResourceVersion != "" {
		rv = o.Raw.ResourceVersion
	}
	r.asked = append(r.asked, rv)
	err := r.answers[0]
	r.answers = r.answers[1:]
	if err == nil {
		obj.(*corev1.Secret).ObjectMeta = metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, ResourceVersion: "42"}
	}
	return err
}

func TestReadConnectionSecret(t *testing.T) {
	gr := schema.GroupResource{Resource: "secrets"}
	tooLarge := apierrors.NewTimeoutError("Too large resource version: 12, current: 11", 1)
	cases := []struct {
		name    string
		seen    string
		answers []error
		asked   []string
		wantErr func(error) bool
	}{
		{name: "a version seen by the watch is read from the watch cache", seen: "12",
			answers: []error{nil}, asked: []string{"12"}},
		{name: "nothing seen: quorum read", seen: "",
			answers: []error{nil}, asked: []string{"<quorum>"}},
		{name: "a watch cache that has not caught up: quorum read", seen: "12",
			answers: []error{tooLarge, nil}, asked: []string{"12", "<quorum>"}},
		{name: "not found at the seen version is final", seen: "12",
			answers: []error{apierrors.NewNotFound(gr, "conn")}, asked: []string{"12"}, wantErr: apierrors.IsNotFound},
		{name: "forbidden is final", seen: "12",
			answers: []error{apierrors.NewForbidden(gr, "conn", nil)}, asked: []string{"12"}, wantErr: apierrors.IsForbidden},
		{name: "the quorum read's error is returned", seen: "12",
			answers: []error{tooLarge, apierrors.NewNotFound(gr, "conn")}, asked: []string{"12", "<quorum>"}, wantErr: apierrors.IsNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			reader := &recordingReader{answers: tc.answers}
			r := &ClearanceCredentialReconciler{apiReader: reader}
			secret, err := r.readConnectionSecret(context.Background(), types.NamespacedName{Namespace: "ns", Name: "conn"}, tc.seen)
			g.Expect(reader.asked).To(Equal(tc.asked))
			g.Expect(reader.answers).To(BeEmpty(), "every canned answer used")
			if tc.wantErr != nil {
				g.Expect(tc.wantErr(err)).To(BeTrue(), "error %v", err)
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(secret.Name).To(Equal("conn"))
			g.Expect(secret.ResourceVersion).To(Equal("42"))
		})
	}
}
