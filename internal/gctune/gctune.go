// Package gctune sets the garbage collector's target (GOGC) after every
// collection from the live heap the collection found: a low base percentage
// for a large heap, with a floor on the headroom for a small one, and Go's
// default while the heap stays under a budget.
//
// A plain low GOGC keeps a large, long-lived heap (an operator's caches) from
// doubling before each collection, which is what it is for; but it costs
// four times the collections of Go's default for the same allocations, also
// on heaps small enough that doubling would not matter. On a small heap the
// same percentage is a few megabytes, and a burst of work then runs a
// collection every few milliseconds.
package gctune

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// MaxPercent bounds the GOGC the tuner sets, for a nearly empty heap.
const MaxPercent = 400

// DefaultPercent is Go's own GOGC, which the budget allows at most.
const DefaultPercent = 100

const liveHeapMetric = "/gc/heap/live:bytes"

// Policy says how far the heap may grow past the live heap before the next
// collection.
type Policy struct {
	// BasePercent is the growth always allowed, in percent of the live heap.
	BasePercent int
	// MinHeadroom is the growth always allowed, in bytes.
	MinHeadroom uint64
	// Budget is a total heap (live plus growth) up to which the heap may
	// grow by as much as DefaultPercent; 0 for none.
	Budget uint64
}

// Percent is the GOGC that gives a live heap of live bytes the larger of the
// policy's allowances, capped at MaxPercent (but never below BasePercent).
func Percent(live uint64, p Policy) int {
	if live == 0 {
		return max(MaxPercent, p.BasePercent)
	}
	pct := math.Ceil(100 * float64(p.MinHeadroom) / float64(live))
	if p.Budget > live {
		pct = math.Max(pct, math.Min(math.Floor(100*float64(p.Budget-live)/float64(live)), DefaultPercent))
	}
	return max(int(math.Min(pct, MaxPercent)), p.BasePercent)
}

// Tuner re-applies Percent to the live heap after every collection.
type Tuner struct {
	policy Policy

	mu      sync.Mutex
	sample  []metrics.Sample
	current int
	stopped bool
}

// sentinel is an object the tuner keeps unreachable, so that its finalizer
// runs once per collection; the finalizer re-arms itself. It is larger than
// the tiny-allocator size: finalizers on tiny objects may never run.
type sentinel struct{ _ [32]byte }

// Start sets GOGC from the current live heap and keeps adjusting it after
// each collection until Stop.
func Start(p Policy) *Tuner {
	t := &Tuner{
		policy: p,
		sample: []metrics.Sample{{Name: liveHeapMetric}},
	}
	t.adjust()
	runtime.SetFinalizer(&sentinel{}, t.afterGC)
	return t
}

func (t *Tuner) afterGC(s *sentinel) {
	if t.adjust() {
		runtime.SetFinalizer(s, t.afterGC)
	}
}

// adjust sets GOGC for the live heap the last collection found; the runtime
// is told only when the value changes. It reports false once stopped.
func (t *Tuner) adjust() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	metrics.Read(t.sample)
	var live uint64
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	if p := Percent(live, t.policy); p != t.current {
		t.current = p
		debug.SetGCPercent(p)
	}
	return true
}

// Current is the GOGC the tuner last set.
func (t *Tuner) Current() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.current
}

// Stop ends the adjustments and restores GOGC to the base percentage.
func (t *Tuner) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	t.current = t.policy.BasePercent
	debug.SetGCPercent(t.policy.BasePercent)
}
