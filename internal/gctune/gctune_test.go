package gctune

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name     string
		live     uint64
		headroom uint64
		base     int
		want     int
	}{
		{"large heap stays near the base", 60 * mib, 16 * mib, 25, 27},
		{"heap where the base already gives the headroom", 64 * mib, 16 * mib, 25, 25},
		{"heap far above the headroom", 400 * mib, 16 * mib, 25, 25},
		{"small heap gets the headroom", 16 * mib, 16 * mib, 25, 100},
		{"rounds up, so the headroom is never short", 3 * mib, 1 * mib, 25, 34},
		{"tiny heap is capped", 1 * mib, 16 * mib, 25, MaxPercent},
		{"no live heap yet", 0, 16 * mib, 25, MaxPercent},
		{"a base above the cap wins", 1 * mib, 16 * mib, 500, 500},
		{"no headroom floor is the base", 10 * mib, 0, 25, 25},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := Percent(tc.live, tc.headroom, tc.base)
			g.Expect(got).To(Equal(tc.want))
			if tc.live > 0 && got < MaxPercent {
				g.Expect(float64(tc.live)*float64(got)/100).To(BeNumerically(">=", float64(tc.headroom)), "headroom kept")
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
	tuner := Start(25, headroom)
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

	tuner := Start(30, 1<<30)
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
