package controller

import (
	"strings"
	"testing"
	"time"
)

// These are plain table tests of the pure policy (no envtest); the Ginkgo
// suite of this package only runs under TestController.

func TestDecideMint(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	current := func(mut ...func(*StoredToken)) *StoredToken {
		s := &StoredToken{
			HasToken: true, Intact: true,
			IssuedAt: now.Add(-20 * time.Minute), ExpiresAt: now.Add(40 * time.Minute), RenewAt: now.Add(20 * time.Minute),
			ConnectionHash: "conn", SpecHash: "spec",
		}
		for _, m := range mut {
			m(s)
		}
		return s
	}
	tests := []struct {
		name        string
		stored      *StoredToken
		now         time.Time
		refresh     string
		wantReason  MintReason
		wantRenewAt time.Time
	}{
		{name: "no target Secret", stored: nil, wantReason: MintTargetMissing},
		{name: "token keys missing", stored: current(func(s *StoredToken) { s.HasToken = false; s.Intact = false }), wantReason: MintTokenMissing},
		{name: "token edited", stored: current(func(s *StoredToken) { s.Intact = false }), wantReason: MintTokenEdited},
		{name: "connection file rotated", stored: current(func(s *StoredToken) { s.ConnectionHash = "old" }), wantReason: MintConnectionChanged},
		{name: "spec changed", stored: current(func(s *StoredToken) { s.SpecHash = "old" }), wantReason: MintSpecChanged},
		{name: "refresh requested", stored: current(), refresh: "2026-11-29T11:59:00Z", wantReason: MintRefreshRequested},
		{name: "refresh annotation removed", stored: current(func(s *StoredToken) { s.RefreshRequest = "x" }), wantReason: MintRefreshRequested},
		{name: "expired", stored: current(), now: now.Add(40 * time.Minute), wantReason: MintExpired},
		{name: "expired and edited: edited wins", stored: current(func(s *StoredToken) { s.Intact = false }), now: now.Add(time.Hour), wantReason: MintTokenEdited},
		{name: "renewal due", stored: current(), now: now.Add(20 * time.Minute), wantReason: MintRenewalDue},
		{name: "current: next look at the stored renewal time", stored: current(), wantRenewAt: now.Add(20 * time.Minute)},
		{
			name:        "no stored schedule: default third of the lifetime, no jitter",
			stored:      current(func(s *StoredToken) { s.RenewAt = time.Time{} }),
			wantRenewAt: now.Add(20 * time.Minute),
		},
		{
			name:        "stored schedule after expiry is not trusted",
			stored:      current(func(s *StoredToken) { s.RenewAt = s.ExpiresAt.Add(time.Hour) }),
			wantRenewAt: now.Add(20 * time.Minute),
		},
		{
			name:       "no stored schedule and no issued-at: renew now rather than guess",
			stored:     current(func(s *StoredToken) { s.RenewAt, s.IssuedAt = time.Time{}, time.Time{} }),
			wantReason: MintRenewalDue,
		},
		{name: "no expiry stored", stored: current(func(s *StoredToken) { s.ExpiresAt = time.Time{} }), wantReason: MintExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := MintInput{Now: now, Stored: tt.stored, ConnectionHash: "conn", SpecHash: "spec", RefreshRequest: tt.refresh}
			if !tt.now.IsZero() {
				in.Now = tt.now
			}
			d := DecideMint(in)
			if d.Reason != tt.wantReason {
				t.Fatalf("reason = %q, want %q", d.Reason, tt.wantReason)
			}
			if !tt.wantRenewAt.IsZero() && !d.RenewAt.Equal(tt.wantRenewAt) {
				t.Fatalf("RenewAt = %s, want %s", d.RenewAt, tt.wantRenewAt)
			}
			checkDecideMintInvariants(t, in)
		})
	}
}

// TestDecideMintRegressions replays the inputs FuzzDecideMint found (also
// committed under testdata/fuzz/FuzzDecideMint/regression_*).
//
// Both used to fail: DecideMint trusted a stored renewal time equal to the
// expiry (it only fell back when it was *after* the expiry), and its fallback
// for a stored issued-at later than the expiry yielded a RenewAt after the
// expiry; either way the controller answered "no mint" and slept until the
// token had expired. The renewal-time and issued-at annotations are not
// covered by the token hash, so an edit of the Secret's annotations (or a
// renewBefore under a second, after RFC 3339 truncation) got there.
func TestDecideMintRegressions(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		stored StoredToken
	}{
		{
			name: "stored renewal time equal to the expiry",
			stored: StoredToken{HasToken: true, Intact: true, IssuedAt: now.Add(-30 * time.Minute),
				ExpiresAt: now.Add(30 * time.Minute), RenewAt: now.Add(30 * time.Minute)},
		},
		{
			name: "stored issued-at after the expiry, no renewal time",
			stored: StoredToken{HasToken: true, Intact: true, IssuedAt: now.Add(90 * time.Minute),
				ExpiresAt: now.Add(30 * time.Minute)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkDecideMintInvariants(t, MintInput{Now: now, Stored: &tt.stored})
		})
	}
}

func TestScheduleRenewal(t *testing.T) {
	issued := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	d := func(v time.Duration) *time.Duration { return &v }
	tests := []struct {
		name        string
		lifetime    time.Duration
		renewBefore *time.Duration
		jitter      float64
		spread      float64
		want        time.Duration // after issued
	}{
		{name: "default: a third before expiry", lifetime: time.Hour, want: 40 * time.Minute},
		{name: "default with the largest jitter: 10% of the lifetime earlier", lifetime: time.Hour, jitter: 0.999999, want: 40*time.Minute - time.Duration(0.999999*0.1*float64(time.Hour))},
		{name: "renewBefore", lifetime: time.Hour, renewBefore: d(10 * time.Minute), want: 50 * time.Minute},
		{name: "renewBefore equal to the lifetime: half", lifetime: time.Hour, renewBefore: d(time.Hour), want: 30 * time.Minute},
		{name: "renewBefore longer than the lifetime: half", lifetime: time.Hour, renewBefore: d(2 * time.Hour), want: 30 * time.Minute},
		{name: "jitter out of range is ignored", lifetime: time.Hour, jitter: 7, want: 40 * time.Minute},
		{name: "negative jitter is ignored", lifetime: time.Hour, jitter: -1, want: 40 * time.Minute},
		{name: "short token", lifetime: 6 * time.Second, want: 4 * time.Second},
		{name: "zero lifetime: renew at once", lifetime: 0, want: 0},
		{name: "negative lifetime: renew at once", lifetime: -time.Minute, want: 0},
		{name: "jitter never moves renewal before issue", lifetime: time.Hour, renewBefore: d(59*time.Minute + 59*time.Second), jitter: 0.99, want: 0},
		{name: "spread out of range is ignored", lifetime: time.Hour, jitter: 0.5, spread: 1, want: 40*time.Minute - 3*time.Minute},
		{name: "spread without jitter: as scheduled", lifetime: time.Hour, spread: DefaultRenewalSpread, want: 40 * time.Minute},
		{name: "spread: up to 75% of the time to renewal earlier", lifetime: time.Hour, jitter: 0.5, spread: DefaultRenewalSpread, want: 40*time.Minute - 15*time.Minute},
		{name: "spread with the largest jitter stays after issue", lifetime: time.Hour, jitter: 0.999999, spread: DefaultRenewalSpread,
			want: 40*time.Minute - time.Duration(0.999999*0.75*float64(40*time.Minute))},
		{name: "spread with renewBefore", lifetime: time.Hour, renewBefore: d(10 * time.Minute), jitter: 0.4, spread: DefaultRenewalSpread, want: 50*time.Minute - 15*time.Minute},
		{name: "spread when renewBefore is too long: from half the lifetime", lifetime: time.Hour, renewBefore: d(2 * time.Hour), jitter: 0.4, spread: DefaultRenewalSpread,
			want: 30*time.Minute - 9*time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ScheduleRenewal(issued, issued.Add(tt.lifetime), tt.renewBefore, tt.jitter, tt.spread)
			if want := issued.Add(tt.want); !got.Equal(want) {
				t.Fatalf("renewAt = issued+%s, want issued+%s", got.Sub(issued), tt.want)
			}
			if tt.lifetime > 0 && (got.Before(issued) || !got.Before(issued.Add(tt.lifetime))) {
				t.Fatalf("renewAt %s outside [issued, expiry)", got.Sub(issued))
			}
		})
	}
}

func TestFailureBackoff(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := now.Add(d); return &v }
	tests := []struct {
		name      string
		attempts  int32
		jitter    float64
		expiresAt *time.Time
		want      time.Duration
	}{
		{name: "first failure, no jitter: half the base", attempts: 1, want: 500 * time.Millisecond},
		{name: "first failure, largest jitter: almost the base", attempts: 1, jitter: 0.999, want: 500*time.Millisecond + 499500*time.Microsecond},
		{name: "zero attempts count as one", attempts: 0, want: 500 * time.Millisecond},
		{name: "negative attempts count as one", attempts: -3, want: 500 * time.Millisecond},
		{name: "exponential", attempts: 4, want: 4 * time.Second},
		{name: "capped", attempts: 12, want: BackoffCap / 2},
		{name: "capped, no overflow at huge counts", attempts: 1 << 30, want: BackoffCap / 2},
		{name: "at most half the time left while the stored token is valid", attempts: 12, expiresAt: at(10 * time.Second), want: 5 * time.Second},
		{name: "never past the stored token's expiry", attempts: 12, expiresAt: at(1500 * time.Millisecond), want: 1500 * time.Millisecond},
		{name: "expiry already passed: normal backoff", attempts: 3, expiresAt: at(-time.Minute), want: 2 * time.Second},
		{name: "at least 100ms even just before expiry", attempts: 5, expiresAt: at(time.Millisecond), want: 100 * time.Millisecond},
		{name: "jitter out of range is ignored", attempts: 2, jitter: 3, want: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FailureBackoff(tt.attempts, tt.jitter, now, tt.expiresAt)
			if got != tt.want {
				t.Fatalf("FailureBackoff = %s, want %s", got, tt.want)
			}
			if got < 100*time.Millisecond || got > BackoffCap {
				t.Fatalf("FailureBackoff = %s outside [100ms, %s]", got, BackoffCap)
			}
		})
	}
}

func TestShortHash(t *testing.T) {
	a := shortHash("a", "bc")
	if len(a) != 32 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("shortHash = %q, want 32 hex digits", a)
	}
	if a != shortHash("a", "bc") {
		t.Fatal("shortHash is not deterministic")
	}
	// Parts are delimited: moving a boundary changes the hash.
	if a == shortHash("ab", "c") || a == shortHash("abc") {
		t.Fatal("shortHash does not separate its parts")
	}
}

func TestRenewalSpreadFor(t *testing.T) {
	for _, reason := range []MintReason{MintTargetMissing, MintTokenMissing, MintTokenEdited, MintConnectionChanged,
		MintSpecChanged, MintRefreshRequested, MintExpired} {
		if got := RenewalSpreadFor(reason, 0.75); got != 0.75 {
			t.Errorf("%s: spread %v, want 0.75: mints for this reason come in crowds", reason, got)
		}
	}
	if got := RenewalSpreadFor(MintRenewalDue, 0.75); got != 0 {
		t.Errorf("RenewalDue: spread %v, want 0", got)
	}
}

func TestDecideMintDefersForcedMints(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	const interval = 30 * time.Second
	stored := func(mut func(*StoredToken)) *StoredToken {
		s := &StoredToken{HasToken: true, Intact: true, IssuedAt: now.Add(-20 * time.Minute),
			ExpiresAt: now.Add(40 * time.Minute), RenewAt: now.Add(20 * time.Minute), ConnectionHash: "conn", SpecHash: "spec"}
		if mut != nil {
			mut(s)
		}
		return s
	}
	tests := []struct {
		name          string
		stored        *StoredToken
		refresh       string
		lastRequest   time.Time
		wantReason    MintReason
		wantNotBefore time.Time
	}{
		{name: "refresh soon after a request waits for the interval", stored: stored(nil), refresh: "r1",
			lastRequest: now.Add(-10 * time.Second), wantReason: MintRefreshRequested, wantNotBefore: now.Add(20 * time.Second)},
		{name: "refresh after the interval goes at once", stored: stored(nil), refresh: "r1",
			lastRequest: now.Add(-interval), wantReason: MintRefreshRequested},
		{name: "connection edit waits too", stored: stored(func(s *StoredToken) { s.ConnectionHash = "old" }),
			lastRequest: now.Add(-time.Second), wantReason: MintConnectionChanged, wantNotBefore: now.Add(29 * time.Second)},
		{name: "spec edit waits too", stored: stored(func(s *StoredToken) { s.SpecHash = "old" }),
			lastRequest: now.Add(-time.Second), wantReason: MintSpecChanged, wantNotBefore: now.Add(29 * time.Second)},
		{name: "edited token waits too", stored: stored(func(s *StoredToken) { s.Intact = false }),
			lastRequest: now.Add(-time.Second), wantReason: MintTokenEdited, wantNotBefore: now.Add(29 * time.Second)},
		{name: "never requested: at once", stored: stored(nil), refresh: "r1", wantReason: MintRefreshRequested},
		{name: "expired stored token: at once, the pods need one", stored: stored(func(s *StoredToken) { s.ExpiresAt = now.Add(-time.Second) }),
			refresh: "r1", lastRequest: now.Add(-time.Second), wantReason: MintRefreshRequested},
		{name: "due renewal is never deferred", stored: stored(func(s *StoredToken) { s.RenewAt = now.Add(-time.Second) }),
			lastRequest: now.Add(-time.Second), wantReason: MintRenewalDue},
		{name: "missing target is never deferred", stored: nil, lastRequest: now.Add(-time.Second), wantReason: MintTargetMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecideMint(MintInput{Now: now, Stored: tt.stored, ConnectionHash: "conn", SpecHash: "spec", RefreshRequest: tt.refresh,
				LastRequest: tt.lastRequest, MinForcedInterval: interval})
			if d.Reason != tt.wantReason || !d.NotBefore.Equal(tt.wantNotBefore) {
				t.Errorf("DecideMint = %+v, want reason %q notBefore %v", d, tt.wantReason, tt.wantNotBefore)
			}
			if d.Deferred(now) != !tt.wantNotBefore.IsZero() {
				t.Errorf("Deferred = %v", d.Deferred(now))
			}
		})
	}
	d := DecideMint(MintInput{Now: now, Stored: stored(nil), ConnectionHash: "conn", SpecHash: "spec", RefreshRequest: "r1", LastRequest: now})
	if d.Deferred(now) {
		t.Errorf("no minimum interval configured: %+v", d)
	}
}

func TestRateLimitedWait(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	tests := []struct {
		name       string
		retryAfter time.Duration
		expiresAt  *time.Time
		want       time.Duration
	}{
		{name: "Retry-After obeyed while it is short of the expiry", retryAfter: 2 * time.Minute, expiresAt: at(time.Hour), want: 2 * time.Minute},
		{name: "a day's Retry-After with 10 minutes left: retried halfway to the expiry", retryAfter: 24 * time.Hour, expiresAt: at(10 * time.Minute), want: 5 * time.Minute},
		{name: "no valid token: capped at an hour", retryAfter: 24 * time.Hour, want: MaxRetryAfterWait},
		{name: "Retry-After just short of the expiry is obeyed", retryAfter: 2 * time.Second, expiresAt: at(3 * time.Second), want: 2 * time.Second},
		{name: "Retry-After reaching the expiry: half the time left", retryAfter: 3 * time.Second, expiresAt: at(3 * time.Second), want: 1500 * time.Millisecond},
		{name: "no Retry-After: the transient backoff", retryAfter: 0, want: time.Second / 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RateLimitedWait(tt.retryAfter, 1, 0, now, tt.expiresAt); got != tt.want {
				t.Errorf("RateLimitedWait = %v, want %v", got, tt.want)
			}
		})
	}
}
