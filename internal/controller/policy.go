package controller

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"

	"k8s.io/apimachinery/pkg/types"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
)

// MintReason says why a new token is needed; MintNotNeeded when the stored one is fine.
type MintReason string

// Reasons for minting, in the order DecideMint checks them.
const (
	MintNotNeeded         MintReason = ""
	MintTargetMissing     MintReason = "TargetMissing"
	MintTokenMissing      MintReason = "TokenMissing"
	MintTokenEdited       MintReason = "TokenEdited"
	MintConnectionChanged MintReason = "ConnectionChanged"
	MintSpecChanged       MintReason = "SpecChanged"
	MintRefreshRequested  MintReason = "RefreshRequested"
	MintExpired           MintReason = "Expired"
	MintRenewalDue        MintReason = "RenewalDue"
)

// renewalJitterFraction is the largest share of a token's lifetime subtracted
// at random from a scheduled renewal time.
const renewalJitterFraction = 0.1

// DefaultRenewalSpread is the default share of the time from issue to the
// scheduled renewal over which the renewal of a token minted for any reason
// but a due renewal is spread. Such mints come in crowds — a Helm release
// creating a thousand credentials, a rotated connection Secret shared by
// many — and the 10% jitter of scheduled renewals would keep the crowd
// renewing in a burst at every renewal ever after. Spreading the first
// renewal over most of a renewal period breaks the crowd up once; later
// renewals keep that spread. It costs one earlier renewal per crowd event.
const DefaultRenewalSpread = 0.75

// RenewalSpreadFor is the spread for a token minted for reason: none for a
// due renewal (renewals that are already spread stay spread), spread for the
// rest.
func RenewalSpreadFor(reason MintReason, spread float64) float64 {
	if reason == MintRenewalDue {
		return 0
	}
	return spread
}

// StoredToken is what the target Secret says about the token it holds. The
// operator keeps its schedule and the inputs the token was minted from on the
// Secret itself, so a restart or a leader change resumes from what is stored
// instead of minting again.
type StoredToken struct {
	// HasToken is true when the token, expiresAt and tokenType keys are all present.
	HasToken bool
	// Intact is false when the token data no longer matches the hash written with it (edited by someone).
	Intact         bool
	IssuedAt       time.Time
	ExpiresAt      time.Time
	RenewAt        time.Time
	ConnectionHash string
	// ConnectionVersion is the connection Secret's resourceVersion the
	// token was minted from: while it stands, ConnectionHash needs no read.
	ConnectionVersion string
	SpecHash          string
	RefreshRequest    string
	// Endpoint and KeyID say which STS endpoint issued the token and which key signed for it.
	Endpoint string
	KeyID    string
}

// validAt reports whether a token is stored and unexpired at now.
func (s *StoredToken) validAt(now time.Time) bool {
	return s != nil && s.HasToken && now.Before(s.ExpiresAt)
}

// MintInput is everything DecideMint looks at.
type MintInput struct {
	Now time.Time
	// Stored is nil when the target Secret does not exist.
	Stored *StoredToken
	// ConnectionHash is the hash of the current connection file content.
	ConnectionHash string
	// SpecHash covers the spec fields that change what is minted (source reference, audience, encoding).
	SpecHash string
	// RefreshRequest is the current value of the refresh-requested-at annotation.
	RefreshRequest string
	// LastRequest is when a token was last requested for the credential
	// (status.lastRequestTime; zero when never).
	LastRequest time.Time
	// MinForcedInterval is the least time from LastRequest to a mint a user
	// asked for while the stored token is valid (0: no minimum).
	MinForcedInterval time.Duration
}

// MintDecision is DecideMint's answer. When no mint is needed, RenewAt is
// when to look again. NotBefore, when set, holds a mint a user asked for
// until the minimum interval since the last token request has passed.
type MintDecision struct {
	Reason    MintReason
	RenewAt   time.Time
	NotBefore time.Time
}

// Deferred reports whether the mint must wait until NotBefore.
func (d MintDecision) Deferred(now time.Time) bool { return now.Before(d.NotBefore) }

// userForced reports whether a mint for reason is one a user causes at will
// (an annotation, an edit of the connection Secret, the spec or the token):
// those are what a tenant could repeat to flood the STS.
func userForced(reason MintReason) bool {
	switch reason {
	case MintTokenEdited, MintConnectionChanged, MintSpecChanged, MintRefreshRequested:
		return true
	}
	return false
}

// Mint reports whether a new token is needed.
func (d MintDecision) Mint() bool { return d.Reason != MintNotNeeded }

// DecideMint is the "does it need a new token?" policy. It is a pure function
// of the stored token, the current inputs and the clock. A mint a user
// forces while the stored token is valid waits for MinForcedInterval after
// the last token request: the valid token covers the pods meanwhile.
func DecideMint(in MintInput) MintDecision {
	d := decideReason(in)
	if userForced(d.Reason) && in.MinForcedInterval > 0 && !in.LastRequest.IsZero() && in.Now.Before(in.Stored.ExpiresAt) {
		if next := in.LastRequest.Add(in.MinForcedInterval); in.Now.Before(next) {
			d.NotBefore = next
		}
	}
	return d
}

// decideReason says whether and why a new token is needed.
func decideReason(in MintInput) MintDecision {
	s := in.Stored
	switch {
	case s == nil:
		return MintDecision{Reason: MintTargetMissing}
	case !s.HasToken:
		return MintDecision{Reason: MintTokenMissing}
	case !s.Intact:
		return MintDecision{Reason: MintTokenEdited}
	case s.ConnectionHash != in.ConnectionHash:
		return MintDecision{Reason: MintConnectionChanged}
	case s.SpecHash != in.SpecHash:
		return MintDecision{Reason: MintSpecChanged}
	case s.RefreshRequest != in.RefreshRequest:
		return MintDecision{Reason: MintRefreshRequested}
	case !in.Now.Before(s.ExpiresAt):
		return MintDecision{Reason: MintExpired}
	}
	renewAt := s.RenewAt
	// A missing or nonsensical stored schedule (the bookkeeping annotations are
	// not covered by the token hash, and RFC 3339 drops sub-seconds) falls back
	// to the default policy; if even that is not before the expiry, renew now
	// rather than sleep until the token has expired.
	if renewAt.IsZero() || !renewAt.Before(s.ExpiresAt) {
		renewAt = ScheduleRenewal(s.IssuedAt, s.ExpiresAt, nil, 0, 0)
	}
	if !in.Now.Before(renewAt) || !renewAt.Before(s.ExpiresAt) {
		return MintDecision{Reason: MintRenewalDue}
	}
	return MintDecision{RenewAt: renewAt}
}

// ScheduleRenewal returns when a token issued at issuedAt and expiring at
// expiresAt should be renewed: renewBefore ahead of expiry (default a third of
// the lifetime, the margin cert-manager uses, which leaves room for the kubelet's
// mounted-Secret refresh delay and a few STS retries), minus a random jitter so
// that credentials minted together do not renew together: up to 10% of the
// lifetime, or, when spread is in (0, 1), up to that share of the time from
// issue to that renewal (see DefaultRenewalSpread). jitter is a number in
// [0, 1). When renewBefore is not shorter than the lifetime the token would be
// due at once, so it is renewed at half its lifetime instead (the Ready
// condition says so, see conditions.tokenValid).
func ScheduleRenewal(issuedAt, expiresAt time.Time, renewBefore *time.Duration, jitter, spread float64) time.Time {
	lifetime := expiresAt.Sub(issuedAt)
	if lifetime <= 0 {
		return issuedAt
	}
	var renewAt time.Time
	before := lifetime / 3
	if renewBefore != nil {
		before = *renewBefore
	}
	if before >= lifetime {
		renewAt = issuedAt.Add(lifetime / 2)
	} else {
		renewAt = expiresAt.Add(-before)
	}
	if jitter < 0 || jitter >= 1 {
		jitter = 0
	}
	shift := jitter * renewalJitterFraction * float64(lifetime)
	if spread > 0 && spread < 1 {
		shift = jitter * spread * float64(renewAt.Sub(issuedAt))
	}
	renewAt = renewAt.Add(-time.Duration(shift))
	if renewAt.Before(issuedAt) {
		renewAt = issuedAt
	}
	return renewAt
}

// Backoff bounds for transient STS failures.
const (
	BackoffBase = time.Second
	BackoffCap  = 5 * time.Minute
	// RejectedRetryInterval is the slow safety retry after the STS rejected the
	// credential: a rejection is permanent until the input changes, which the
	// watches notice at once, so this only covers STS-side fixes (a key re-enabled).
	RejectedRetryInterval = time.Hour
)

// FailureBackoff returns how long to wait before the next attempt after
// failedAttempts consecutive transient failures: exponential from BackoffBase
// to BackoffCap, with "equal jitter" (half fixed, half random) so a fleet that
// failed together spreads out, and never past the stored token's expiry, so a
// token about to expire gets its last attempts before it does.
func FailureBackoff(failedAttempts int32, jitter float64, now time.Time, expiresAt *time.Time) time.Duration {
	d := BackoffCap
	if failedAttempts < 1 {
		failedAttempts = 1
	}
	if failedAttempts <= 20 {
		if exp := BackoffBase << (failedAttempts - 1); exp < BackoffCap {
			d = exp
		}
	}
	if jitter < 0 || jitter >= 1 {
		jitter = 0
	}
	d = d/2 + time.Duration(jitter*float64(d/2))
	return capToExpiry(d, now, expiresAt)
}

// MaxRetryAfterWait bounds how long an HTTP 429's Retry-After is obeyed.
const MaxRetryAfterWait = time.Hour

// RateLimitedWait returns how long to wait after the STS answered 429: the
// longer of its Retry-After and the transient backoff, at most
// MaxRetryAfterWait. A wait that would reach the stored token's expiry is
// cut as FailureBackoff cuts it (to half the time left): a Retry-After
// longer than the token has left must not let it expire unattempted, while
// a shorter one is obeyed.
func RateLimitedWait(retryAfter time.Duration, failedAttempts int32, jitter float64, now time.Time, expiresAt *time.Time) time.Duration {
	d := min(max(retryAfter, FailureBackoff(failedAttempts, jitter, now, nil)), MaxRetryAfterWait)
	if expiresAt != nil && now.Add(d).Before(*expiresAt) {
		return d
	}
	return capToExpiry(d, now, expiresAt)
}

// capToExpiry shortens a wait so it never passes the stored token's expiry,
// and while the token is valid to at most half the time left: the attempts
// then close in on the expiry instead of landing on it, so a run of failures
// still gets several tries while the old token covers the pods.
func capToExpiry(d time.Duration, now time.Time, expiresAt *time.Time) time.Duration {
	if expiresAt != nil && now.Before(*expiresAt) {
		untilExpiry := expiresAt.Sub(now)
		limit := untilExpiry
		if untilExpiry > 2*time.Second {
			limit = untilExpiry / 2
		}
		d = min(d, limit)
	}
	if d < 100*time.Millisecond {
		d = 100 * time.Millisecond
	}
	return d
}

// shortHash returns a truncated SHA-256 hex digest of the parts. It is used to
// notice changes (connection file, spec, token data) without storing the data
// itself: 128 bits are plenty to detect edits and reveal nothing.
func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		_, _ = h.Write([]byte(p))
		_, _ = h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// objectJitter is a number in [0, 1) derived from an object's UID and a
// salt: stable for the same inputs, so nothing needs remembering, and spread
// across objects, so credentials that failed or were created together do not
// retry or renew together.
func objectJitter(uid types.UID, salt string) float64 {
	sum := sha256.Sum256([]byte(string(uid) + "\x00" + salt))
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}

// mintFailure is what a failed token request means for the credential.
type mintFailure struct {
	// reason is the condition reason.
	reason string
	// message says what failed, without secrets (see clearance error types).
	message string
	// wait is the time until the next attempt.
	wait time.Duration
	// outcome is the token request metric's label.
	outcome string
}

// classifyMintFailure decides how a failed token request is reported and
// retried. attempt counts the failures in a row, this one included;
// expiresAt is the stored token's expiry while it is valid. A rejection
// waits for an input change (or the slow safety retry), a refused
// destination likewise, a 429 at least its Retry-After, the rest back off
// exponentially.
func classifyMintFailure(err error, attempt int32, jitter float64, now time.Time, expiresAt *time.Time) mintFailure {
	var (
		rejected    *clearance.RejectedError
		rateLimited *clearance.RateLimitedError
		forbidden   *clearance.DestinationError
	)
	msg := err.Error()
	if hint := clearance.Hint(err); hint != "" {
		msg += " (" + hint + ")"
	}
	f := mintFailure{message: msg}
	switch {
	case errors.As(err, &rejected):
		f.reason, f.outcome, f.wait = clearancev1alpha1.ReasonCredentialRejected, outcomeRejected, RejectedRetryInterval
		if clearance.Hint(err) == clearance.HintClockSkew {
			// A clock is fixed without touching the spec or the Secret, so a
			// skew rejection is retried on the transient schedule.
			f.wait = FailureBackoff(attempt, jitter, now, expiresAt)
		}
		if expiresAt != nil && expiresAt.Sub(now) < f.wait {
			f.wait = expiresAt.Sub(now) // to report the expiry when it comes
		}
	case errors.As(err, &forbidden):
		// Nothing was sent: only the connection file or the operator's
		// egress flags can change this, and both bring the credential back.
		f.reason, f.outcome = clearancev1alpha1.ReasonDestinationNotAllowed, outcomeRejected
		f.wait = capToExpiry(RejectedRetryInterval, now, expiresAt)
	case errors.As(err, &rateLimited):
		f.reason, f.outcome = clearancev1alpha1.ReasonRateLimited, outcomeRateLimited
		f.wait = RateLimitedWait(rateLimited.RetryAfter, attempt, jitter, now, expiresAt)
	default:
		f.reason, f.outcome = clearancev1alpha1.ReasonSTSUnavailable, outcomeTransient
		f.wait = FailureBackoff(attempt, jitter, now, expiresAt)
	}
	return f
}

// failedInputs identifies what a failed request was made from: the
// connection Secret's version, the spec fields that shape a token (see
// specHash) and the refresh request. A change of any of them is worth
// trying at once.
func failedInputs(connectionVersion, specHash, refresh string) string {
	return shortHash(connectionVersion, specHash, refresh)
}

// backoffUntil returns when the next token request may be made after the
// failures on record, or the zero time when it may be made now: when none
// failed, when the inputs changed since, or when the retry time has come.
func backoffUntil(status *clearancev1alpha1.ClearanceCredentialStatus, inputs string, now time.Time) time.Time {
	if status.FailedAttempts == 0 || status.NextAttemptTime == nil || status.FailedInputs != inputs {
		return time.Time{}
	}
	if at := status.NextAttemptTime.Time; now.Before(at) {
		return at
	}
	return time.Time{}
}
