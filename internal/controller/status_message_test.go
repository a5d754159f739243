package controller

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// TestRenewBeforeTooLongMessage: the lifetime in the Ready message is the one
// the target Secret stores (whole seconds), whether the status comes from a
// token just minted (sub-second receive time, expiry at the JWT's exp) or
// from the stored one, so both reconciles word it alike.
func TestRenewBeforeTooLongMessage(t *testing.T) {
	expires := time.Date(2026, 11, 29, 11, 0, 3, 0, time.UTC)
	for _, issued := range []time.Time{
		time.Date(2026, 11, 29, 10, 0, 3, 900_000_000, time.UTC), // just minted
		time.Date(2026, 11, 29, 10, 0, 3, 0, time.UTC),           // read back from the Secret
	} {
		r := &ClearanceCredentialReconciler{}
		cred := &clearancev1alpha1.ClearanceCredential{}
		cred.Spec.RenewBefore = &metav1.Duration{Duration: 2 * time.Hour}
		s := &reconcileState{cred: cred, now: issued}
		r.setTokenStatus(s, issued, expires, issued.Add(30*time.Minute), "", "")
		ready := meta.FindStatusCondition(cred.Status.Conditions, clearancev1alpha1.ConditionReady)
		if ready == nil || ready.Reason != clearancev1alpha1.ReasonRenewBeforeTooLong {
			t.Fatalf("issued %s: Ready condition %+v, want reason %s", issued, ready, clearancev1alpha1.ReasonRenewBeforeTooLong)
		}
		if want := "is not shorter than the token lifetime (1h0m0s)"; !strings.Contains(ready.Message, want) {
			t.Errorf("issued %s: message %q does not contain %q", issued, ready.Message, want)
		}
	}
}
