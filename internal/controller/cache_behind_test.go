package controller

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
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
	r.written[key] = storedPrecision(issued) // as writeTarget records it
	if r.cacheBehind(key, secretIssued(issued)) {
		t.Error("the cache holds our last write, but counts as behind")
	}
	if !r.cacheBehind(key, secretIssued(issued.Add(-time.Hour))) {
		t.Error("the cache holds an older token, but does not count as behind")
	}
}

// TestStatusCacheBehind: after a status patch, a reconcile that still sees
// the version the patch was computed from waits for the cache; any other
// version (ours or someone else's write), a patch the server did not apply
// as a change, or a wait past statusCacheMaxWait lets it run.
func TestStatusCacheBehind(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "cred"}
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	cred := func(rv string) *clearancev1alpha1.ClearanceCredential {
		return &clearancev1alpha1.ClearanceCredential{ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv}}
	}
	cases := []struct {
		name          string
		base, result  string // the patch; "" = none
		cached        string
		after         time.Duration
		behind        bool
		recordRemains bool
	}{
		{name: "no patch recorded", cached: "10"},
		{name: "cache still at the patch's base", base: "10", result: "11", cached: "10", after: time.Second, behind: true, recordRemains: true},
		{name: "cache shows the patch", base: "10", result: "11", cached: "11", after: time.Second},
		{name: "cache shows a later write", base: "10", result: "11", cached: "12", after: time.Second},
		{name: "the patch changed nothing on the server", base: "10", result: "10", cached: "10", after: time.Second},
		{name: "waited too long", base: "10", result: "11", cached: "10", after: statusCacheMaxWait},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &ClearanceCredentialReconciler{statusWrites: map[types.NamespacedName]statusWrite{}}
			if tc.base != "" {
				r.statusPatched(key, tc.base, tc.result, at)
			}
			if got := r.statusCacheBehind(key, cred(tc.cached), at.Add(tc.after)); got != tc.behind {
				t.Errorf("statusCacheBehind = %v, want %v", got, tc.behind)
			}
			if _, ok := r.statusWrites[key]; ok != tc.recordRemains {
				t.Errorf("record kept = %v, want %v", ok, tc.recordRemains)
			}
		})
	}
}
