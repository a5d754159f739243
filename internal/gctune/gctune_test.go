package gctune

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name   string
		live   uint64
		policy Policy
		want   int
	}{
		{"large heap stays near the base", 60 * mib, Policy{25, 16 * mib, 0}, 27},
		{"heap where the base already gives the headroom", 64 * mib, Policy{25, 16 * mib, 0}, 25},
		{"heap far above the headroom", 400 * mib, Policy{25, 16 * mib, 0}, 25},
		{"small heap gets the headroom", 16 * mib, Policy{25, 16 * mib, 0}, 100},
		{"rounds up, so the headroom is never short", 3 * mib, Policy{25, 1 * mib, 0}, 34},
		{"tiny heap is capped", 1 * mib, Policy{25, 16 * mib, 0}, MaxPercent},
		{"no live heap yet", 0, Policy{25, 16 * mib, 88 * mib}, MaxPercent},
		{"a base above the cap wins", 1 * mib, Policy{500, 16 * mib, 0}, 500},
		{"no headroom floor is the base", 10 * mib, Policy{25, 0, 0}, 25},
		{"under half the budget: Go's default", 30 * mib, Policy{25, 16 * mib, 88 * mib}, DefaultPercent},
		{"between half the budget and the budget: up to the budget", 50 * mib, Policy{25, 16 * mib, 88 * mib}, 76},
		{"rounds down, so the budget is never passed", 64 * mib, Policy{25, 16 * mib, 88 * mib}, 37},
		{"near the budget the base takes over", 71 * mib, Policy{25, 16 * mib, 88 * mib}, 25},
		{"past the budget: the base", 100 * mib, Policy{25, 16 * mib, 88 * mib}, 25},
		{"a small heap's headroom still counts with a budget", 4 * mib, Policy{25, 16 * mib, 88 * mib}, MaxPercent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := Percent(tc.live, tc.policy)
			g.Expect(got).To(Equal(tc.want))
			if tc.live == 0 {
				return
			}
			growth := float64(tc.live) * float64(got) / 100
			if got < MaxPercent {
				g.Expect(growth).To(BeNumerically(">=", float64(tc.policy.MinHeadroom)), "headroom kept")
			}
			floorPct := max(tc.policy.BasePercent, int(math.Ceil(100*float64(tc.policy.MinHeadroom)/float64(tc.live))))
			if got > floorPct {
				g.Expect(got).To(BeNumerically("<=", DefaultPercent), "the budget never allows more than Go's default")
				g.Expect(float64(tc.live)+growth).To(BeNumerically("<=", float64(tc.policy.Budget)), "the budget is not passed")
			}
		})
	}
}

// gcPercent reads GOGC without changing it for longer than the call.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func TestTunerFollowsTheLiveHeap(t *testing.T) {
	g := NewWithT(t)
	before := gcPercent()
	defer debug.SetGCPercent(before)

	const headroom = 64 << 20
	tuner := Start(Policy{BasePercent: 25, MinHeadroom: headroom})
	defer tuner.Stop()
	g.Expect(gcPercent()).To(Equal(tuner.Current()))

	// A live heap far above the headroom brings GOGC down to the base
	// after a collection; dropping it raises GOGC again.
	ballast := make([]byte, 512<<20)
	ballast[len(ballast)-1] = 1
	g.Eventually(func() int {
		runtime.GC()
		return gcPercent()
	}).WithTimeout(10 * time.Second).WithPolling(10 * time.Millisecond).Should(Equal(25))
	runtime.KeepAlive(ballast)
	g.Eventually(func() int {
		runtime.GC()
		return gcPercent()
	}).WithTimeout(10 * time.Second).WithPolling(10 * time.Millisecond).Should(BeNumerically(">", 25))
	g.Expect(tuner.Current()).To(Equal(gcPercent()))
}

func TestStopRestoresTheBaseAndEndsAdjustments(t *testing.T) {
	g := NewWithT(t)
	before := gcPercent()
	defer debug.SetGCPercent(before)

	tuner := Start(Policy{BasePercent: 30, MinHeadroom: 1 << 30})
	g.Expect(gcPercent()).To(Equal(MaxPercent), "a 1 GiB headroom on a small heap is capped")
	tuner.Stop()
	g.Expect(gcPercent()).To(Equal(30))
	for range 3 {
		runtime.GC()
	}
	// Finalizers run on their own goroutine; give them the chance to misbehave.
	g.Consistently(gcPercent).WithTimeout(200 * time.Millisecond).Should(Equal(30))
	tuner.Stop()
}
