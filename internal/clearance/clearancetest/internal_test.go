package clearancetest

import (
	"encoding/json"
	"testing"
	"time"
)

func TestReplayCacheExpiry(t *testing.T) {
	c := newReplayCache(10)
	t0 := time.Unix(1_000_000, 0)
	if !c.add("a", t0.Add(time.Minute), t0) {
		t.Fatal("first add")
	}
	if c.add("a", t0.Add(time.Minute), t0.Add(30*time.Second)) {
		t.Fatal("replay within lifetime accepted")
	}
	// After expiry the entry is forgotten (the assertion itself would be expired by then).
	if !c.add("b", t0.Add(3*time.Minute), t0.Add(2*time.Minute)) {
		t.Fatal("add b")
	}
	if c.len() != 1 {
		t.Fatalf("expired entry kept: len %d", c.len())
	}
	if !c.add("a", t0.Add(3*time.Minute), t0.Add(2*time.Minute)) {
		t.Fatal("expired key not reusable")
	}
}

func TestReplayCacheBound(t *testing.T) {
	c := newReplayCache(3)
	t0 := time.Unix(1_000_000, 0)
	for i, k := range []string{"a", "b", "c", "d", "e"} {
		c.add(k, t0.Add(time.Duration(i+1)*time.Minute), t0)
	}
	if c.len() != 3 {
		t.Fatalf("len %d", c.len())
	}
	if c.add("e", t0.Add(time.Hour), t0) || c.add("d", t0.Add(time.Hour), t0) {
		t.Fatal("recent entries evicted")
	}
}

func TestLoopbackPeer(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:5000": true, "[::1]:5000": true, "127.8.9.10:1": true,
		"192.0.2.1:5000": false, "[2001:db8::1]:80": false, "garbage": false, "": false,
	} {
		if got := loopbackPeer(addr); got != want {
			t.Errorf("loopbackPeer(%q) = %v", addr, got)
		}
	}
}

func TestToTime(t *testing.T) {
	for in, want := range map[string]bool{"0": true, "1700000000.5": true, "-1": false, "1e300": false, "x": false} {
		if _, ok := toTime(json.Number(in)); ok != want {
			t.Errorf("toTime(%s) ok=%v", in, ok)
		}
	}
	if _, ok := toTime(float64(1)); ok {
		t.Error("non-json.Number accepted")
	}
}
