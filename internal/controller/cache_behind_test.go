package controller

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestCacheBehind: a cached target that carries our last write must not count
// as stale (that would cost a GET on every reconcile); an older one must.
func TestCacheBehind(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "cred"}
	issued := time.Date(2026, 11, 29, 12, 0, 0, 730_000_000, time.UTC) // sub-second, as the STS client reports it
	secretIssued := func(at time.Time) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{annotationIssuedAt: formatTime(at)}}}
	}
	r := &ClearanceCredentialReconciler{written: map[types.NamespacedName]time.Time{}}
	if r.cacheBehind(key, secretIssued(issued)) {
		t.Fatal("nothing written yet, but the cache counts as behind")
	}
	r.written[key] = writtenMark(issued) // as writeTarget records it
	if r.cacheBehind(key, secretIssued(issued)) {
		t.Error("the cache holds our last write, but counts as behind")
	}
	if !r.cacheBehind(key, secretIssued(issued.Add(-time.Hour))) {
		t.Error("the cache holds an older token, but does not count as behind")
	}
}
