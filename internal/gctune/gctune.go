// Package gctune sets the garbage collector's target (GOGC) after every
// collection so that the heap may grow by a percentage of the live heap, but
// never by less than a fixed amount.
//
// A plain low GOGC keeps a large, long-lived heap (an operator's caches) from
// doubling before each collection, which is what it is for; but on a small
// heap the same percentage is a few megabytes, and a burst of work then runs
// a collection every few milliseconds. A floor on the headroom keeps the
// footprint of a large heap where the low GOGC puts it and spares a small
// heap most of those collections.
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

const liveHeapMetric = "/gc/heap/live:bytes"

// Percent is the GOGC that lets a live heap of live bytes grow by at least
// headroom bytes and by at least basePercent of itself, capped at MaxPercent
// (but never below basePercent).
func Percent(live, headroom uint64, basePercent int) int {
	p := MaxPercent
	if live > 0 {
		p = int(math.Min(math.Ceil(100*float64(headroom)/float64(live)), MaxPercent))
	}
	return max(p, basePercent)
}

// Tuner re-applies Percent to the live heap after every collection.
type Tuner struct {
	basePercent int
	headroom    uint64

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
func Start(basePercent int, headroom uint64) *Tuner {
	t := &Tuner{
		basePercent: basePercent,
		headroom:    headroom,
		sample:      []metrics.Sample{{Name: liveHeapMetric}},
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
	if p := Percent(live, t.headroom, t.basePercent); p != t.current {
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
	t.current = t.basePercent
	debug.SetGCPercent(t.basePercent)
}
