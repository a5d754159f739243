package controller

import (
	"testing"
	"time"
)

// fuzzBase anchors the fuzzer's relative times; the committed corpus under
// testdata/fuzz/FuzzDecideMint is written in offsets from it.
var fuzzBase = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// maxFuzzOffset keeps fuzzed times within ±100 years of fuzzBase, where
// time.Time arithmetic is exact (time.Duration spans ±292 years).
const maxFuzzOffset = int64(100 * 365 * 24 * time.Hour / time.Millisecond)

// fuzzTime turns a fuzzed offset in milliseconds into a time; zero selects
// the zero time.Time, which is what a missing or unparsable annotation yields.
func fuzzTime(zero bool, offsetMillis int64) time.Time {
	if zero {
		return time.Time{}
	}
	offsetMillis %= maxFuzzOffset
	return fuzzBase.Add(time.Duration(offsetMillis) * time.Millisecond)
}

var knownMintReasons = map[MintReason]bool{
	MintNotNeeded: true, MintTargetMissing: true, MintTokenMissing: true, MintTokenEdited: true,
	MintConnectionChanged: true, MintSpecChanged: true, MintRefreshRequested: true, MintExpired: true, MintRenewalDue: true,
}

// FuzzDecideMint checks the invariants of the "does it need a new token?"
// policy over arbitrary stored states, inputs and clocks:
//
//   - it is a pure function (same input, same answer) with a known reason;
//   - it never answers "no mint" for a missing target, a missing or edited
//     token, changed inputs (connection file, spec, refresh request) or an
//     expired token;
//   - when it answers "no mint", the next look (RenewAt) is in the future and
//     strictly before the stored token expires, so the schedule it hands the
//     controller can never let the stored token expire unrenewed;
//   - the answer is stable until RenewAt, and at RenewAt a mint is due.
func FuzzDecideMint(f *testing.F) {
	// Seeds: the fields in the order of the Fuzz function's parameters.
	type seed struct {
		hasStored, hasToken, intact                        bool
		zeroMask                                           uint8 // bit 0 issuedAt, 1 expiresAt, 2 renewAt zero
		issuedAt, expiresAt, renewAt, now                  int64 // milliseconds from fuzzBase
		storedConn, conn, storedSpec, spec, storedRef, ref string
	}
	h := int64(time.Hour / time.Millisecond)
	for _, s := range []seed{
		{true, true, true, 0, 0, h, 2 * h / 3, h / 2, "c", "c", "s", "s", "", ""},                  // fresh token, not due
		{true, true, true, 0, 0, h, 2 * h / 3, 2 * h / 3, "c", "c", "s", "s", "", ""},              // exactly at renewal time
		{true, true, true, 0, 0, h, 2 * h / 3, h, "c", "c", "s", "s", "", ""},                      // exactly at expiry
		{true, true, true, 4, 0, h, 0, h / 2, "c", "c", "s", "s", "", ""},                          // no stored schedule
		{true, true, true, 5, 0, h, 0, h / 2, "c", "c", "s", "s", "", ""},                          // no issued-at, no schedule
		{true, true, true, 0, 0, h, 2 * h, h / 2, "c", "c", "s", "s", "", ""},                      // schedule after expiry
		{true, true, true, 0, 0, h, -h, h / 2, "c", "c", "s", "s", "", ""},                         // schedule before issue
		{true, true, true, 2, 0, 0, 0, 0, "c", "c", "s", "s", "", ""},                              // no expiry
		{true, true, false, 0, 0, h, 2 * h / 3, h / 2, "c", "c", "s", "s", "", ""},                 // edited
		{true, false, false, 0, 0, h, 2 * h / 3, h / 2, "c", "c", "s", "s", "", ""},                // token missing
		{false, false, false, 0, 0, 0, 0, 0, "", "c", "", "s", "", ""},                             // target missing
		{true, true, true, 0, 0, h, 2 * h / 3, h / 2, "old", "new", "s", "s", "", ""},              // rotated
		{true, true, true, 0, 0, h, 2 * h / 3, h / 2, "c", "c", "s", "s2", "", ""},                 // spec changed
		{true, true, true, 0, 0, h, 2 * h / 3, h / 2, "c", "c", "s", "s", "", "2026-11-29"},        // refresh requested
		{true, true, true, 0, 0, 1000, 999, 500, "c", "c", "s", "s", "", ""},                       // one-second token
		{true, true, true, 0, maxFuzzOffset - 1, -maxFuzzOffset + 1, 0, 0, "", "", "", "", "", ""}, // extremes
	} {
		f.Add(s.hasStored, s.hasToken, s.intact, s.zeroMask, s.issuedAt, s.expiresAt, s.renewAt, s.now,
			s.storedConn, s.conn, s.storedSpec, s.spec, s.storedRef, s.ref)
	}

	f.Fuzz(func(t *testing.T, hasStored, hasToken, intact bool, zeroMask uint8, issuedAt, expiresAt, renewAt, now int64,
		storedConn, conn, storedSpec, spec, storedRef, ref string) {
		in := MintInput{
			Now:            fuzzTime(false, now),
			ConnectionHash: conn,
			SpecHash:       spec,
			RefreshRequest: ref,
		}
		if hasStored {
			in.Stored = &StoredToken{
				HasToken:       hasToken,
				Intact:         intact,
				IssuedAt:       fuzzTime(zeroMask&1 != 0, issuedAt),
				ExpiresAt:      fuzzTime(zeroMask&2 != 0, expiresAt),
				RenewAt:        fuzzTime(zeroMask&4 != 0, renewAt),
				ConnectionHash: storedConn,
				SpecHash:       storedSpec,
				RefreshRequest: storedRef,
			}
		}
		checkDecideMintInvariants(t, in)
	})
}

// checkDecideMintInvariants is shared by the fuzz target and the regression
// tables in policy_test.go.
func checkDecideMintInvariants(t *testing.T, in MintInput) {
	t.Helper()
	d := DecideMint(in)
	if again := DecideMint(in); again != d {
		t.Fatalf("not deterministic: %+v then %+v", d, again)
	}
	if !knownMintReasons[d.Reason] {
		t.Fatalf("unknown reason %q", d.Reason)
	}
	if d.Mint() != (d.Reason != MintNotNeeded) {
		t.Fatalf("Mint() = %v for reason %q", d.Mint(), d.Reason)
	}

	s := in.Stored
	mustMint := func(why string) {
		t.Helper()
		if !d.Mint() {
			t.Fatalf("no mint although %s (decision %+v, stored %+v, now %s)", why, d, s, in.Now)
		}
	}
	switch {
	case s == nil:
		mustMint("the target Secret is missing")
		return
	case !s.HasToken:
		mustMint("the stored token is missing")
		return
	case !s.Intact:
		mustMint("the stored token was edited")
		return
	case s.ConnectionHash != in.ConnectionHash:
		mustMint("the connection file changed")
		return
	case s.SpecHash != in.SpecHash:
		mustMint("the spec changed")
		return
	case s.RefreshRequest != in.RefreshRequest:
		mustMint("a refresh was requested")
		return
	case !in.Now.Before(s.ExpiresAt):
		mustMint("the stored token has expired")
		if d.Reason != MintExpired {
			t.Fatalf("reason %q for an expired token, want %q", d.Reason, MintExpired)
		}
		return
	}
	if d.Mint() {
		if d.Reason != MintRenewalDue {
			t.Fatalf("reason %q for a current, unexpired token; only %q is possible", d.Reason, MintRenewalDue)
		}
		return
	}

	// No mint: the schedule must bring the controller back before expiry.
	if !d.RenewAt.After(in.Now) {
		t.Fatalf("no mint, but RenewAt %s is not after now %s", d.RenewAt, in.Now)
	}
	if !d.RenewAt.Before(s.ExpiresAt) {
		t.Fatalf("no mint, but RenewAt %s is not before ExpiresAt %s (stored %+v)", d.RenewAt, s.ExpiresAt, s)
	}

	// Stable until RenewAt; due at RenewAt.
	later := in
	later.Now = in.Now.Add(d.RenewAt.Sub(in.Now) / 2)
	if dl := DecideMint(later); dl != d {
		t.Fatalf("decision changed before RenewAt: %+v at %s, %+v at %s", d, in.Now, dl, later.Now)
	}
	later.Now = d.RenewAt
	if dl := DecideMint(later); dl.Reason != MintRenewalDue && dl.Reason != MintExpired {
		t.Fatalf("at RenewAt %s the decision is %+v, want a renewal", d.RenewAt, dl)
	}
}
