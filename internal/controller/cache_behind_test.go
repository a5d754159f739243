package controller

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"

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
	r := &ClearanceCredentialReconciler{written: map[types.NamespacedName]ownWrite{}}
	if r.cacheBehind(key, secretIssued(issued)) {
		t.Fatal("nothing written yet, but the cache counts as behind")
	}
	r.written[key] = ownWrite{issuedAt: storedPrecision(issued), resourceVersion: "7"} // as writeTarget records it
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

// TestNotOwnEcho: the watch event of our own last target write does not
// bring the credential back; every other event of the Secret does.
func TestNotOwnEcho(t *testing.T) {
	cred := types.NamespacedName{Namespace: "ns", Name: "cred"}
	r := &ClearanceCredentialReconciler{written: map[types.NamespacedName]ownWrite{
		cred:                                  {issuedAt: time.Now(), resourceVersion: "42"},
		{Namespace: "ns", Name: "no-version"}: {issuedAt: time.Now()},
	}}
	secret := func(version, owner, kind string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "token", ResourceVersion: version}}
		if owner != "" {
			s.OwnerReferences = []metav1.OwnerReference{{
				APIVersion: clearancev1alpha1.GroupVersion.String(), Kind: kind, Name: owner, UID: "u", Controller: ptr.To(true),
			}}
		}
		return s
	}
	p := r.notOwnEcho()
	for _, tc := range []struct {
		name   string
		secret *corev1.Secret
		pass   bool
	}{
		{"our last write", secret("42", "cred", "ClearanceCredential"), false},
		{"a later change (an edit)", secret("43", "cred", "ClearanceCredential"), true},
		{"an earlier version", secret("41", "cred", "ClearanceCredential"), true},
		{"a credential this process never wrote for", secret("42", "other", "ClearanceCredential"), true},
		{"a write whose version is unknown", secret("", "no-version", "ClearanceCredential"), true},
		{"controlled by another kind of the same name", secret("42", "cred", "Other"), true},
		{"no controller", secret("42", "", ""), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Create(event.CreateEvent{Object: tc.secret}); got != tc.pass {
				t.Errorf("create passes = %v, want %v", got, tc.pass)
			}
			if got := p.Update(event.UpdateEvent{ObjectOld: secret("1", "cred", "ClearanceCredential"), ObjectNew: tc.secret}); got != tc.pass {
				t.Errorf("update passes = %v, want %v", got, tc.pass)
			}
			if !p.Delete(event.DeleteEvent{Object: tc.secret}) {
				t.Error("a delete must always pass")
			}
		})
	}
}
