package controller

import (
	"fmt"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// findings is what the steps of one reconcile found. The first step that
// settles the outcome ends the run, so at most one of the fields after
// target says what happened.
type findings struct {
	target targetFound
	// suspended: spec.suspend is set; nothing was minted.
	suspended bool
	// problem is a connection Secret or a data template the user has to fix.
	problem *sourceProblem
	// decision is the mint policy's verdict on the stored token.
	decision MintDecision
	// backoffUntil is the retry time of earlier failures, not reached yet.
	backoffUntil time.Time
	// slotWait: the namespace's mint slots were all taken; look again after it.
	slotWait time.Duration
	// requested: a token request was made.
	requested bool
	// failure is this reconcile's failed token request, made from inputs.
	failure *mintFailure
	inputs  string
	// written is the token this reconcile stored.
	written *mintedToken
	// writeFailed: a new token could not be written; it is kept for the retry.
	writeFailed bool
}

// sourceProblem is an input that cannot be used (a connection Secret, a data
// template), as a condition.
type sourceProblem struct {
	reason, message string
}

// outcome turns what the steps found into the credential's next status and
// when to look at it again (0: only when something changes). It is the one
// place conditions are decided. It does not modify cred.
func outcome(cred *clearancev1alpha1.ClearanceCredential, f findings, now time.Time, minForcedInterval time.Duration) (clearancev1alpha1.ClearanceCredentialStatus, time.Duration) {
	st := cred.Status.DeepCopy()
	st.ObservedGeneration = cred.Generation
	c := conditions{status: st, generation: cred.Generation, now: now}
	stored := f.target.stored
	if f.requested {
		st.LastRequestTime = metaTime(now)
	}
	switch {
	case f.target.conflict:
		c.stalled(clearancev1alpha1.ReasonTargetConflict, conflictMessage(cred))
		c.remove(clearancev1alpha1.ConditionDegraded)
		st.ExpiresAt, st.RenewalTime, st.NextAttemptTime = nil, nil, nil
		return *st, 0

	case f.suspended:
		c.remove(clearancev1alpha1.ConditionReconciling, clearancev1alpha1.ConditionStalled, clearancev1alpha1.ConditionDegraded)
		st.RenewalTime, st.NextAttemptTime = nil, nil
		if !stored.validAt(now) {
			c.set(clearancev1alpha1.ConditionReady, metav1.ConditionFalse, clearancev1alpha1.ReasonSuspended, "minting suspended; no valid token is stored")
			return *st, 0
		}
		st.ExpiresAt = metaTime(stored.ExpiresAt)
		c.set(clearancev1alpha1.ConditionReady, metav1.ConditionTrue, clearancev1alpha1.ReasonSuspended,
			fmt.Sprintf("minting suspended; the stored token is valid until %s", formatTime(stored.ExpiresAt)))
		return *st, stored.ExpiresAt.Sub(now) // to report the expiry

	case f.problem != nil:
		c.stalled(f.problem.reason, f.problem.message)
		st.RenewalTime, st.NextAttemptTime = nil, nil // nothing is scheduled until the user fixes it
		if stored.validAt(now) {
			return *st, stored.ExpiresAt.Sub(now) // to report the expiry
		}
		return *st, 0

	case f.written != nil:
		m := f.written
		c.tokenValid(cred, m.token.IssuedAt, m.token.ExpiresAt, m.renewAt, m.token.Endpoint, m.token.KeyID)
		return *st, m.renewAt.Sub(now)

	case f.failure != nil:
		return *st, c.requestFailed(stored, f.failure, f.inputs)

	case f.writeFailed:
		const msg = "a new token was minted but writing the target Secret failed; retrying with the same token"
		c.set(clearancev1alpha1.ConditionReconciling, metav1.ConditionTrue, clearancev1alpha1.ReasonTargetWriteFailed, msg)
		if !stored.validAt(now) {
			c.set(clearancev1alpha1.ConditionReady, metav1.ConditionFalse, clearancev1alpha1.ReasonTargetWriteFailed, msg)
		}
		return *st, 0 // the write's error requeues

	case f.slotWait > 0:
		return *st, f.slotWait

	case !f.backoffUntil.IsZero():
		return *st, f.backoffUntil.Sub(now) // the failure on record stands

	case f.decision.Deferred(now):
		at := f.decision.NotBefore
		c.tokenValid(cred, stored.IssuedAt, stored.ExpiresAt, at, stored.Endpoint, stored.KeyID)
		c.set(clearancev1alpha1.ConditionReconciling, metav1.ConditionTrue, clearancev1alpha1.ReasonMintDeferred,
			fmt.Sprintf("a new token (%s) is requested at %s: mints forced by a user are at least %s apart; the stored token stays valid until %s",
				f.decision.Reason, formatTime(at), minForcedInterval, formatTime(stored.ExpiresAt)))
		return *st, at.Sub(now)

	case stored != nil && !f.decision.Mint():
		c.tokenValid(cred, stored.IssuedAt, stored.ExpiresAt, f.decision.RenewAt, stored.Endpoint, stored.KeyID)
		return *st, f.decision.RenewAt.Sub(now)
	}
	// The run stopped at an error before deciding; its requeue brings it back.
	return *st, 0
}

// conflictMessage explains a target name held by a Secret the credential
// does not control.
func conflictMessage(cred *clearancev1alpha1.ClearanceCredential) string {
	return fmt.Sprintf("Secret %q exists and is not controlled by this ClearanceCredential; it is left untouched. Delete it or choose another spec.secretName", cred.Spec.SecretName)
}

// conditions edits a status's conditions at one generation and time.
type conditions struct {
	status     *clearancev1alpha1.ClearanceCredentialStatus
	generation int64
	now        time.Time
}

func (c conditions) set(condType string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&c.status.Conditions, metav1.Condition{
		Type: condType, Status: status, Reason: reason, Message: capMessage(msg),
		ObservedGeneration: c.generation, LastTransitionTime: metav1.NewTime(c.now),
	})
}

func (c conditions) remove(condTypes ...string) {
	for _, t := range condTypes {
		meta.RemoveStatusCondition(&c.status.Conditions, t)
	}
}

// stalled reports a problem only the user can fix.
func (c conditions) stalled(reason, msg string) {
	c.remove(clearancev1alpha1.ConditionReconciling)
	c.set(clearancev1alpha1.ConditionStalled, metav1.ConditionTrue, reason, msg)
	c.set(clearancev1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
}

// tokenValid reports a valid stored token renewed at renewAt, and ends any
// failure streak.
func (c conditions) tokenValid(cred *clearancev1alpha1.ClearanceCredential, issuedAt, expiresAt, renewAt time.Time, endpoint, keyID string) {
	st := c.status
	st.ExpiresAt, st.RenewalTime = metaTime(expiresAt), metaTime(renewAt)
	st.TokenEndpoint, st.KeyID = endpoint, keyID
	st.FailedAttempts, st.LastFailureTime, st.NextAttemptTime, st.FailedInputs = 0, nil, nil, ""
	c.remove(clearancev1alpha1.ConditionReconciling, clearancev1alpha1.ConditionStalled, clearancev1alpha1.ConditionDegraded)
	reason := clearancev1alpha1.ReasonTokenValid
	msg := fmt.Sprintf("token valid until %s; renewal at %s", formatTime(expiresAt), formatTime(renewAt))
	// At the precision the target Secret stores, so a fresh mint and a later
	// reconcile from the stored token word it alike.
	lifetime := storedPrecision(expiresAt).Sub(storedPrecision(issuedAt))
	if rb := cred.Spec.RenewBefore; rb != nil && rb.Duration >= lifetime {
		reason = clearancev1alpha1.ReasonRenewBeforeTooLong
		msg = fmt.Sprintf("token valid until %s; spec.renewBefore (%s) is not shorter than the token lifetime (%s), so it is renewed at half its lifetime, at %s",
			formatTime(expiresAt), rb.Duration, lifetime, formatTime(renewAt))
	}
	c.set(clearancev1alpha1.ConditionReady, metav1.ConditionTrue, reason, msg)
}

// requestFailed records a failed token request and returns the wait until
// the next attempt. The stored token stays; Ready says whether it still
// covers the pods.
func (c conditions) requestFailed(stored *StoredToken, f *mintFailure, inputs string) time.Duration {
	st := c.status
	st.FailedAttempts++
	st.LastFailureTime = metaTime(c.now)
	// The status keeps whole seconds: rounding up keeps the wait.
	retryAt := storedPrecision(c.now.Add(f.wait).Add(time.Second - time.Nanosecond))
	st.NextAttemptTime, st.FailedInputs = metaTime(retryAt), inputs
	// The scheduled renewal is under way; nextAttemptTime says when it is tried again.
	st.RenewalTime = nil

	next := fmt.Sprintf("next attempt at %s", formatTime(retryAt))
	switch f.reason {
	case clearancev1alpha1.ReasonCredentialRejected:
		c.stalled(f.reason, fmt.Sprintf("%s; fix the connection file or the service account, then the token is requested at once (safety retry at %s)", f.message, formatTime(retryAt)))
	case clearancev1alpha1.ReasonDestinationNotAllowed:
		c.stalled(f.reason, fmt.Sprintf("%s; put the STS's public https address in the connection file (a private STS needs the operator's administrator to allow it), then the token is requested at once (safety retry at %s)", f.message, formatTime(retryAt)))
	default:
		c.remove(clearancev1alpha1.ConditionStalled)
		c.set(clearancev1alpha1.ConditionReconciling, metav1.ConditionTrue, f.reason, f.message+"; "+next)
	}
	switch {
	case stored.validAt(c.now):
		c.set(clearancev1alpha1.ConditionDegraded, metav1.ConditionTrue, f.reason, "renewal failing: "+f.message+"; "+next)
		c.set(clearancev1alpha1.ConditionReady, metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid,
			fmt.Sprintf("the stored token is valid until %s, but renewal is failing (see Degraded)", formatTime(stored.ExpiresAt)))
	case stored != nil && stored.HasToken:
		c.remove(clearancev1alpha1.ConditionDegraded)
		c.set(clearancev1alpha1.ConditionReady, metav1.ConditionFalse, clearancev1alpha1.ReasonTokenExpired,
			fmt.Sprintf("the stored token expired at %s and renewal is failing: %s; %s", formatTime(stored.ExpiresAt), f.message, next))
	default:
		c.remove(clearancev1alpha1.ConditionDegraded)
		c.set(clearancev1alpha1.ConditionReady, metav1.ConditionFalse, f.reason, f.message+"; "+next)
	}
	return retryAt.Sub(c.now)
}

// maxMessageBytes caps every condition message and event note, well under
// what the API accepts. Parts of a message come from a tenant's input
// (addresses, names), and the API refuses a longer event note, losing the
// event.
const maxMessageBytes = 900

// capMessage shortens msg to maxMessageBytes at a character boundary.
func capMessage(msg string) string {
	if len(msg) <= maxMessageBytes {
		return msg
	}
	const ellipsis = "..."
	cut := maxMessageBytes - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + ellipsis
}

// storedPrecision is a token time as the target Secret stores it (RFC 3339
// drops sub-seconds), so a status computed from a fresh mint reads like one
// computed from the stored token.
func storedPrecision(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

func metaTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(storedPrecision(t))
	return &mt
}
