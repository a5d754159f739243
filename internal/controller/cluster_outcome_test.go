package controller

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
)

func TestClusterOutcome(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	valid := &StoredToken{HasToken: true, Intact: true, IssuedAt: now.Add(-10 * time.Minute), ExpiresAt: now.Add(50 * time.Minute), RenewAt: now.Add(30 * time.Minute)}
	minted := &mintedToken{token: &clearance.Token{IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, renewAt: now.Add(40 * time.Minute)}
	transient := &mintFailure{reason: clearancev1alpha1.ReasonSTSUnavailable, message: "unreachable", wait: 4 * time.Second}
	many := make([]string, 30)
	for i := range many {
		many[i] = fmt.Sprintf("ns-%02d", i)
	}
	conflictOnRecord := func(cc *clearancev1alpha1.ClusterClearanceCredential) {
		cc.Status.Conditions = []metav1.Condition{{Type: clearancev1alpha1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: clearancev1alpha1.ReasonTargetConflict}}
	}

	cases := []struct {
		name     string
		cc       func(*clearancev1alpha1.ClusterClearanceCredential)
		found    clusterFindings
		ready    wantCondition
		degraded wantCondition
		stalled  wantCondition
		requeue  time.Duration
		check    func(t *testing.T, st clearancev1alpha1.ClusterClearanceCredentialStatus)
	}{
		{
			name:  "a token written to every selected namespace",
			found: clusterFindings{findings: findings{requested: true, written: minted}, selected: []string{"a", "b"}, current: 2},
			ready: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid}, requeue: 40 * time.Minute,
			check: func(t *testing.T, st clearancev1alpha1.ClusterClearanceCredentialStatus) {
				if st.SelectedNamespaces != 2 || st.WrittenNamespaces != 2 || st.ConflictingNamespaceCount != 0 || st.ConflictingNamespaces != nil {
					t.Errorf("counts %+v", st)
				}
			},
		},
		{
			name:     "conflicts degrade without stopping the others, listed up to the bound",
			found:    clusterFindings{findings: findings{target: targetFound{stored: valid}, decision: MintDecision{RenewAt: valid.RenewAt}}, selected: append([]string{"x"}, many...), conflicts: many, current: 1},
			ready:    wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid},
			degraded: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonTargetConflict}, requeue: 30 * time.Minute,
			check: func(t *testing.T, st clearancev1alpha1.ClusterClearanceCredentialStatus) {
				if st.ConflictingNamespaceCount != 30 || len(st.ConflictingNamespaces) != clearancev1alpha1.MaxListedConflicts || st.ConflictingNamespaces[0] != "ns-00" {
					t.Errorf("conflicts %d %v", st.ConflictingNamespaceCount, st.ConflictingNamespaces)
				}
				if msg := meta.FindStatusCondition(st.Conditions, clearancev1alpha1.ConditionDegraded).Message; len(msg) > maxMessageBytes {
					t.Errorf("message not capped: %d bytes", len(msg))
				}
			},
		},
		{
			name:     "a failing renewal's Degraded wins over conflicts",
			found:    clusterFindings{findings: findings{target: targetFound{stored: valid}, requested: true, failure: transient, inputs: "in"}, selected: []string{"a", "b"}, conflicts: []string{"b"}, current: 1},
			ready:    wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid},
			degraded: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonSTSUnavailable}, requeue: 4 * time.Second,
		},
		{
			name:    "resolved conflicts clear Degraded even where the token steps leave it",
			cc:      conflictOnRecord,
			found:   clusterFindings{findings: findings{target: targetFound{stored: valid}, backoffUntil: now.Add(time.Minute)}, selected: []string{"a"}, current: 1},
			requeue: time.Minute,
		},
		{
			name:  "no namespace selected: not ready, nothing scheduled",
			cc:    conflictOnRecord,
			found: clusterFindings{},
			ready: wantCondition{metav1.ConditionFalse, clearancev1alpha1.ReasonNoNamespacesSelected},
			check: func(t *testing.T, st clearancev1alpha1.ClusterClearanceCredentialStatus) {
				if st.RenewalTime != nil || st.SelectedNamespaces != 0 {
					t.Errorf("status %+v", st)
				}
			},
		},
		{
			name:    "every selected namespace conflicts: stalled, nothing minted or scheduled",
			found:   clusterFindings{selected: []string{"a", "b"}, conflicts: []string{"a", "b"}},
			ready:   wantCondition{metav1.ConditionFalse, clearancev1alpha1.ReasonTargetConflict},
			stalled: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonTargetConflict},
		},
		{
			name:    "an invalid selector stalls",
			found:   clusterFindings{selectorProblem: "spec.namespaceSelector: bad operator"},
			ready:   wantCondition{metav1.ConditionFalse, clearancev1alpha1.ReasonNoNamespacesSelected},
			stalled: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonNoNamespacesSelected},
		},
		{
			name:    "a template problem stalls as for a ClearanceCredential",
			found:   clusterFindings{findings: findings{target: targetFound{stored: valid}, problem: templateProblem(&templateError{"k", "bad"})}, selected: []string{"a"}, current: 1},
			ready:   wantCondition{metav1.ConditionFalse, clearancev1alpha1.ReasonTemplateInvalid},
			stalled: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonTemplateInvalid}, requeue: 50 * time.Minute,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cc := &clearancev1alpha1.ClusterClearanceCredential{ObjectMeta: metav1.ObjectMeta{Name: "cc", Generation: 3}}
			cc.Spec.SecretName = "token"
			if tc.cc != nil {
				tc.cc(cc)
			}
			before := cc.DeepCopy()
			st, requeue := clusterOutcome(cc, tc.found, now, 0)
			if requeue != tc.requeue {
				t.Errorf("requeue %v, want %v", requeue, tc.requeue)
			}
			for condType, want := range map[string]wantCondition{
				clearancev1alpha1.ConditionReady: tc.ready, clearancev1alpha1.ConditionDegraded: tc.degraded, clearancev1alpha1.ConditionStalled: tc.stalled,
			} {
				got := meta.FindStatusCondition(st.Conditions, condType)
				switch {
				case want.status == "" && got != nil:
					t.Errorf("%s = %s/%s, want absent", condType, got.Status, got.Reason)
				case want.status != "" && (got == nil || got.Status != want.status || got.Reason != want.reason):
					t.Errorf("%s = %+v, want %s/%s", condType, got, want.status, want.reason)
				}
			}
			if st.ObservedGeneration != 3 {
				t.Errorf("observedGeneration %d", st.ObservedGeneration)
			}
			if tc.check != nil {
				tc.check(t, st)
			}
			if cc.Status.ConflictingNamespaceCount != before.Status.ConflictingNamespaceCount || len(cc.Status.Conditions) != len(before.Status.Conditions) {
				t.Error("clusterOutcome modified the credential")
			}
		})
	}
}

func TestPickReference(t *testing.T) {
	secret := func(state, issued string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{annotationIssuedAt: issued}},
			Data:       map[string][]byte{dataTokenState: []byte(state), clearancev1alpha1.SecretKeyExpiresAt: []byte("2026-12-07T11:00:00Z")},
		}
	}
	if got := pickReference(map[string]*corev1.Secret{"a": nil}); got.secret != nil || got.stored != nil {
		t.Fatalf("none held: %+v", got)
	}
	newest := secret(tokenStateIntact, "2026-12-07T10:00:00Z")
	got := pickReference(map[string]*corev1.Secret{
		"a": secret(tokenStateEdited, "2026-12-07T10:30:00Z"),
		"b": secret(tokenStateIntact, "2026-12-07T09:00:00Z"),
		"c": newest,
		"d": nil,
	})
	if got.secret != newest || !got.stored.Intact || !got.fromCache {
		t.Fatalf("picked %+v, want the newest intact Secret", got.secret)
	}
	if got := pickReference(map[string]*corev1.Secret{"a": secret(tokenStateMissing, "")}); got.stored == nil || got.stored.HasToken {
		t.Fatalf("a Secret without a token must stand for a missing token: %+v", got.stored)
	}
}
