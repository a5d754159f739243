// Package argocd tests the Argo CD health check shipped in config/argocd by
// running it with a Lua interpreter against ClearanceCredentials in each of
// the states the operator reports.
package argocd

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

func cond(t, status, reason, message string) metav1.Condition {
	return metav1.Condition{Type: t, Status: metav1.ConditionStatus(status), Reason: reason, Message: message}
}

func TestHealth(t *testing.T) {
	script, err := testutil.ArgoHealthScript()
	if err != nil {
		t.Fatal(err)
	}
	ready := cond("Ready", "True", "TokenValid", "the token is valid until 2030-01-01T00:00:00Z")
	tests := []struct {
		name        string
		generation  int64
		observed    int64
		suspend     bool
		conditions  []metav1.Condition
		wantStatus  string
		wantMessage string
	}{
		{name: "new, no status", generation: 1, wantStatus: "Progressing", wantMessage: "Waiting for the operator to report a status"},
		{name: "ready", generation: 1, observed: 1, conditions: []metav1.Condition{ready},
			wantStatus: "Healthy", wantMessage: "TokenValid: the token is valid until 2030-01-01T00:00:00Z"},
		{name: "ready, renewal failing but token valid", generation: 1, observed: 1, conditions: []metav1.Condition{
			ready, cond("Degraded", "True", "STSUnavailable", "renewal failing"), cond("Reconciling", "True", "STSUnavailable", "retrying"),
		}, wantStatus: "Healthy", wantMessage: "TokenValid: the token is valid until 2030-01-01T00:00:00Z"},
		{name: "first mint under way", generation: 1, observed: 1, conditions: []metav1.Condition{
			cond("Ready", "False", "Minting", "requesting a token"), cond("Reconciling", "True", "Minting", "requesting a token"),
		}, wantStatus: "Progressing", wantMessage: "Minting: requesting a token"},
		{name: "STS unreachable, no token yet", generation: 1, observed: 1, conditions: []metav1.Condition{
			cond("Ready", "False", "STSUnavailable", "connection refused; next attempt at T"),
		}, wantStatus: "Progressing", wantMessage: "STSUnavailable: connection refused; next attempt at T"},
		{name: "stalled: key rejected", generation: 1, observed: 1, conditions: []metav1.Condition{
			cond("Ready", "False", "CredentialRejected", "invalid_client"), cond("Stalled", "True", "CredentialRejected", "invalid_client; fix the connection file"),
		}, wantStatus: "Degraded", wantMessage: "CredentialRejected: invalid_client; fix the connection file"},
		{name: "stalled with a still valid token", generation: 1, observed: 1, conditions: []metav1.Condition{
			ready, cond("Stalled", "True", "ConnectionInvalid", "bad key"),
		}, wantStatus: "Degraded", wantMessage: "ConnectionInvalid: bad key"},
		{name: "stalled no longer", generation: 1, observed: 1, conditions: []metav1.Condition{
			ready, cond("Stalled", "False", "ConnectionInvalid", "fixed"),
		}, wantStatus: "Healthy", wantMessage: "TokenValid: the token is valid until 2030-01-01T00:00:00Z"},
		{name: "token expired", generation: 1, observed: 1, conditions: []metav1.Condition{
			cond("Ready", "False", "TokenExpired", "the stored token expired"), cond("Reconciling", "True", "STSUnavailable", "retrying"),
		}, wantStatus: "Degraded", wantMessage: "TokenExpired: the stored token expired"},
		{name: "spec changed, not yet observed", generation: 2, observed: 1, conditions: []metav1.Condition{ready},
			wantStatus: "Progressing", wantMessage: "Waiting for the operator to observe generation 2"},
		{name: "suspended", generation: 1, observed: 1, suspend: true, conditions: []metav1.Condition{
			cond("Ready", "True", "Suspended", "minting suspended; the stored token is valid until T"),
		}, wantStatus: "Suspended", wantMessage: "Suspended: minting suspended; the stored token is valid until T"},
		{name: "no Ready condition", generation: 1, observed: 1, conditions: []metav1.Condition{
			cond("Reconciling", "True", "Minting", ""),
		}, wantStatus: "Progressing", wantMessage: "Waiting for the Ready condition"},
		{name: "empty message", generation: 1, observed: 1, conditions: []metav1.Condition{cond("Ready", "True", "TokenValid", "")},
			wantStatus: "Healthy", wantMessage: "TokenValid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cred := &clearancev1alpha1.ClearanceCredential{
				TypeMeta:   metav1.TypeMeta{APIVersion: clearancev1alpha1.GroupVersion.String(), Kind: "ClearanceCredential"},
				ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "apps", Generation: tt.generation},
				Spec: clearancev1alpha1.ClearanceCredentialSpec{
					ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: "conn"}, SecretName: "token", Suspend: tt.suspend,
				},
				Status: clearancev1alpha1.ClearanceCredentialStatus{ObservedGeneration: tt.observed, Conditions: tt.conditions},
			}
			// The object as Argo CD sees it: its JSON form.
			obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(cred)
			if err != nil {
				t.Fatal(err)
			}
			status, message, err := testutil.ArgoHealth(script, obj)
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.wantStatus || message != tt.wantMessage {
				t.Errorf("health = %q %q, want %q %q", status, message, tt.wantStatus, tt.wantMessage)
			}
		})
	}
}

func TestArgoHealthRejectsABrokenScript(t *testing.T) {
	if _, _, err := testutil.ArgoHealth("return 1", map[string]any{}); err == nil {
		t.Error("a script returning no table was accepted")
	}
	if _, _, err := testutil.ArgoHealth("os.exit(1)", map[string]any{}); err == nil {
		t.Error("a script using a library Argo CD's sandbox may not grant was accepted")
	}
	if _, _, err := testutil.ArgoHealth("local hs = {} hs.message = 'x' return hs", map[string]any{}); err == nil {
		t.Error("a table without status was accepted")
	}
}
