package controller

import (
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
)

// wantCondition is a condition an outcome must report; status "" means absent.
type wantCondition struct {
	status metav1.ConditionStatus
	reason string
}

func TestOutcome(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	now := clk.Now()
	valid := &StoredToken{HasToken: true, Intact: true, IssuedAt: now.Add(-40 * time.Minute), ExpiresAt: now.Add(20 * time.Minute),
		RenewAt: now.Add(-time.Minute), Endpoint: "https://sts.example/token", KeyID: "k1"}
	expired := &StoredToken{HasToken: true, Intact: true, IssuedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}
	minted := &mintedToken{token: &clearance.Token{IssuedAt: now, ExpiresAt: now.Add(time.Hour), Endpoint: "https://sts.example/token", KeyID: "k2"},
		renewAt: now.Add(40 * time.Minute)}
	transient := &mintFailure{reason: clearancev1alpha1.ReasonSTSUnavailable, message: "unreachable", wait: 4 * time.Second}
	rejected := &mintFailure{reason: clearancev1alpha1.ReasonCredentialRejected, message: "rejected (invalid_client)", wait: time.Hour}
	failing := func(c *clearancev1alpha1.ClearanceCredential) {
		c.Status.FailedAttempts, c.Status.LastFailureTime = 2, metaTime(now.Add(-time.Minute))
		c.Status.NextAttemptTime, c.Status.FailedInputs = metaTime(now.Add(time.Minute)), "in"
	}

	cases := []struct {
		name        string
		cred        func(*clearancev1alpha1.ClearanceCredential)
		found       findings
		ready       wantCondition
		reconciling wantCondition
		stalled     wantCondition
		degraded    wantCondition
		requeue     time.Duration
		check       func(t *testing.T, st clearancev1alpha1.ClearanceCredentialStatus)
	}{
		{
			name:  "a token written: Ready, renewal scheduled, failures cleared",
			cred:  failing,
			found: findings{requested: true, written: minted},
			ready: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid}, requeue: 40 * time.Minute,
			check: func(t *testing.T, st clearancev1alpha1.ClearanceCredentialStatus) {
				if st.FailedAttempts != 0 || st.LastFailureTime != nil || st.NextAttemptTime != nil || st.FailedInputs != "" {
					t.Errorf("failure streak not cleared: %+v", st)
				}
				if !st.RenewalTime.Time.Equal(now.Add(40*time.Minute)) || !st.LastRequestTime.Time.Equal(now) || st.KeyID != "k2" {
					t.Errorf("renewal %v, last request %v, key %q", st.RenewalTime, st.LastRequestTime, st.KeyID)
				}
			},
		},
		{
			name:  "stored token current: Ready until its renewal",
			found: findings{target: targetFound{stored: valid}, decision: MintDecision{RenewAt: now.Add(5 * time.Minute)}},
			ready: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid}, requeue: 5 * time.Minute,
		},
		{
			name:     "STS down with a valid token: Ready, Degraded, retry after the wait",
			found:    findings{target: targetFound{stored: valid}, requested: true, failure: transient, inputs: "in"},
			ready:    wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid},
			degraded: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonSTSUnavailable}, reconciling: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonSTSUnavailable},
			requeue: 4 * time.Second,
			check: func(t *testing.T, st clearancev1alpha1.ClearanceCredentialStatus) {
				if st.FailedAttempts != 1 || st.FailedInputs != "in" || !st.NextAttemptTime.Time.Equal(now.Add(4*time.Second)) || st.RenewalTime != nil {
					t.Errorf("failure not recorded: %+v", st)
				}
			},
		},
		{
			name:        "STS down, token expired",
			cred:        failing,
			found:       findings{target: targetFound{stored: expired}, requested: true, failure: transient},
			ready:       wantCondition{metav1.ConditionFalse, clearancev1alpha1.ReasonTokenExpired},
			reconciling: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonSTSUnavailable}, requeue: 4 * time.Second,
			check: func(t *testing.T, st clearancev1alpha1.ClearanceCredentialStatus) {
				if st.FailedAttempts != 3 {
					t.Errorf("failedAttempts %d, want 3", st.FailedAttempts)
				}
			},
		},
		{
			name:    "rejected without a token: Stalled",
			found:   findings{requested: true, failure: rejected},
			ready:   wantCondition{metav1.ConditionFalse, clearancev1alpha1.ReasonCredentialRejected},
			stalled: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonCredentialRejected}, requeue: time.Hour,
		},
		{
			name:    "backoff holds: the failure on record stands",
			cred:    failing,
			found:   findings{target: targetFound{stored: expired}, decision: MintDecision{Reason: MintExpired}, backoffUntil: now.Add(time.Minute)},
			requeue: time.Minute,
			check: func(t *testing.T, st clearancev1alpha1.ClearanceCredentialStatus) {
				if st.FailedAttempts != 2 || st.LastRequestTime != nil {
					t.Errorf("status changed while backing off: %+v", st)
				}
			},
		},
		{
			name:    "suspended with a valid token: Ready until it expires",
			found:   findings{target: targetFound{stored: valid}, suspended: true},
			ready:   wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonSuspended},
			requeue: 20 * time.Minute,
		},
		{
			name:  "suspended without a token",
			found: findings{suspended: true},
			ready: wantCondition{metav1.ConditionFalse, clearancev1alpha1.ReasonSuspended},
		},
		{
			name:    "target conflict",
			found:   findings{target: targetFound{conflict: true}},
			ready:   wantCondition{metav1.ConditionFalse, clearancev1alpha1.ReasonTargetConflict},
			stalled: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonTargetConflict},
		},
		{
			name:    "connection Secret missing, token valid: Stalled, look again at expiry",
			found:   findings{target: targetFound{stored: valid}, problem: &sourceProblem{clearancev1alpha1.ReasonConnectionSecretNotFound, "not found"}},
			ready:   wantCondition{metav1.ConditionFalse, clearancev1alpha1.ReasonConnectionSecretNotFound},
			stalled: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonConnectionSecretNotFound}, requeue: 20 * time.Minute,
		},
		{
			name:        "forced mint deferred",
			found:       findings{target: targetFound{stored: valid}, decision: MintDecision{Reason: MintRefreshRequested, NotBefore: now.Add(10 * time.Second)}},
			ready:       wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid},
			reconciling: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonMintDeferred}, requeue: 10 * time.Second,
		},
		{
			name:        "write failed with a valid token: the error requeues",
			found:       findings{target: targetFound{stored: valid}, requested: true, writeFailed: true},
			reconciling: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonTargetWriteFailed},
		},
		{
			name:        "write failed without a token: not Ready",
			found:       findings{requested: true, writeFailed: true},
			ready:       wantCondition{metav1.ConditionFalse, clearancev1alpha1.ReasonTargetWriteFailed},
			reconciling: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonTargetWriteFailed},
		},
		{
			name:    "namespace's mint slots taken",
			found:   findings{target: targetFound{stored: valid}, decision: MintDecision{Reason: MintRenewalDue}, slotWait: 3 * time.Second},
			requeue: 3 * time.Second,
		},
		{
			name: "renewBefore not shorter than the lifetime",
			cred: func(c *clearancev1alpha1.ClearanceCredential) {
				c.Spec.RenewBefore = &metav1.Duration{Duration: 2 * time.Hour}
			},
			found: findings{written: minted},
			ready: wantCondition{metav1.ConditionTrue, clearancev1alpha1.ReasonRenewBeforeTooLong}, requeue: 40 * time.Minute,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cred := &clearancev1alpha1.ClearanceCredential{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
			if tc.cred != nil {
				tc.cred(cred)
			}
			original := cred.DeepCopy()
			st, requeue := outcome(cred, tc.found, now, 30*time.Second)
			if requeue != tc.requeue {
				t.Errorf("requeue %s, want %s", requeue, tc.requeue)
			}
			if st.ObservedGeneration != 3 {
				t.Errorf("observedGeneration %d, want 3", st.ObservedGeneration)
			}
			for condType, want := range map[string]wantCondition{
				clearancev1alpha1.ConditionReady: tc.ready, clearancev1alpha1.ConditionReconciling: tc.reconciling,
				clearancev1alpha1.ConditionStalled: tc.stalled, clearancev1alpha1.ConditionDegraded: tc.degraded,
			} {
				got := meta.FindStatusCondition(st.Conditions, condType)
				switch {
				case want.status == "" && got != nil:
					t.Errorf("%s = %s/%s, want absent", condType, got.Status, got.Reason)
				case want.status != "" && (got == nil || got.Status != want.status || got.Reason != want.reason):
					t.Errorf("%s = %+v, want %s/%s", condType, got, want.status, want.reason)
				}
			}
			if tc.check != nil {
				tc.check(t, st)
			}
			if !equality.Semantic.DeepEqual(cred, original) {
				t.Error("outcome modified the credential")
			}
		})
	}
}

// TestRenewBeforeTooLongMessage: the lifetime in the Ready message is the one
// the target Secret stores (whole seconds), whether the status comes from a
// token just minted (sub-second receive time) or from the stored one.
func TestRenewBeforeTooLongMessage(t *testing.T) {
	expires := time.Date(2026, 11, 29, 11, 0, 3, 0, time.UTC)
	for _, issued := range []time.Time{
		time.Date(2026, 11, 29, 10, 0, 3, 900_000_000, time.UTC), // just minted
		time.Date(2026, 11, 29, 10, 0, 3, 0, time.UTC),           // read back from the Secret
	} {
		cred := &clearancev1alpha1.ClearanceCredential{}
		cred.Spec.RenewBefore = &metav1.Duration{Duration: 2 * time.Hour}
		m := &mintedToken{token: &clearance.Token{IssuedAt: issued, ExpiresAt: expires}, renewAt: issued.Add(30 * time.Minute)}
		st, _ := outcome(cred, findings{written: m}, issued, 0)
		ready := meta.FindStatusCondition(st.Conditions, clearancev1alpha1.ConditionReady)
		if ready == nil || ready.Reason != clearancev1alpha1.ReasonRenewBeforeTooLong {
			t.Fatalf("issued %s: Ready condition %+v, want reason %s", issued, ready, clearancev1alpha1.ReasonRenewBeforeTooLong)
		}
		if want := "is not shorter than the token lifetime (1h0m0s)"; !strings.Contains(ready.Message, want) {
			t.Errorf("issued %s: message %q does not contain %q", issued, ready.Message, want)
		}
	}
}

func TestClassifyMintFailure(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	soon := now.Add(10 * time.Minute)
	cases := []struct {
		name      string
		err       error
		expiresAt *time.Time
		reason    string
		outcome   string
		wait      time.Duration
	}{
		{"transient, first attempt", &clearance.TransientError{Reason: "unreachable"}, nil, clearancev1alpha1.ReasonSTSUnavailable, outcomeTransient, BackoffBase / 2},
		{"rejected: hourly safety retry", &clearance.RejectedError{Code: "invalid_client"}, nil, clearancev1alpha1.ReasonCredentialRejected, outcomeRejected, RejectedRetryInterval},
		{"rejected with a valid token: look again at its expiry", &clearance.RejectedError{Code: "invalid_client"}, &soon, clearancev1alpha1.ReasonCredentialRejected, outcomeRejected, 10 * time.Minute},
		{"destination refused", &clearance.DestinationError{}, nil, clearancev1alpha1.ReasonDestinationNotAllowed, outcomeRejected, RejectedRetryInterval},
		{"429 with Retry-After", &clearance.RateLimitedError{RetryAfter: 2 * time.Minute}, nil, clearancev1alpha1.ReasonRateLimited, outcomeRateLimited, 2 * time.Minute},
		{"a day's Retry-After with a valid token: half the time left", &clearance.RateLimitedError{RetryAfter: 24 * time.Hour}, &soon, clearancev1alpha1.ReasonRateLimited, outcomeRateLimited, 5 * time.Minute},
		{"unknown error: transient", errors.New("boom"), nil, clearancev1alpha1.ReasonSTSUnavailable, outcomeTransient, BackoffBase / 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := classifyMintFailure(tc.err, 1, 0, now, tc.expiresAt)
			if f.reason != tc.reason || f.outcome != tc.outcome || f.wait != tc.wait {
				t.Errorf("got %s/%s/%s, want %s/%s/%s", f.reason, f.outcome, f.wait, tc.reason, tc.outcome, tc.wait)
			}
		})
	}
}

func TestBackoffUntil(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	later := metaTime(now.Add(time.Minute))
	cases := []struct {
		name   string
		status clearancev1alpha1.ClearanceCredentialStatus
		inputs string
		want   time.Time
	}{
		{"no failures", clearancev1alpha1.ClearanceCredentialStatus{}, "a", time.Time{}},
		{"failing, same inputs: wait", clearancev1alpha1.ClearanceCredentialStatus{FailedAttempts: 1, NextAttemptTime: later, FailedInputs: "a"}, "a", later.Time},
		{"failing, inputs changed: now", clearancev1alpha1.ClearanceCredentialStatus{FailedAttempts: 1, NextAttemptTime: later, FailedInputs: "a"}, "b", time.Time{}},
		{"retry time reached", clearancev1alpha1.ClearanceCredentialStatus{FailedAttempts: 1, NextAttemptTime: metaTime(now), FailedInputs: "a"}, "a", time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := backoffUntil(&tc.status, tc.inputs, now); !got.Equal(tc.want) {
				t.Errorf("backoffUntil = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestObjectJitter(t *testing.T) {
	a := objectJitter("uid-1", "1")
	if a < 0 || a >= 1 {
		t.Fatalf("objectJitter = %v, want [0, 1)", a)
	}
	if a != objectJitter("uid-1", "1") {
		t.Error("objectJitter is not stable")
	}
	if a == objectJitter("uid-2", "1") || a == objectJitter("uid-1", "2") {
		t.Error("objectJitter does not depend on the UID and the salt")
	}
}
