package controller

import (
	"sync"
	"time"
)

// DefaultMintsPerNamespace is how many mints of one namespace may run at
// once by default, as a share of the workers (see mintSlots).
func DefaultMintsPerNamespace(workers int) int { return max(1, workers/4) }

// mintSlotRetry is how long a reconcile that found its namespace's mint
// slots taken waits before it looks again; a random share of it is added so
// the waiting credentials do not come back together.
const mintSlotRetry = 2 * time.Second

// mintSlots bounds how many token requests of one namespace are in flight
// at once. A mint holds its worker until the STS answers or the mint's
// deadline passes, so without a bound one namespace whose STS hangs could
// hold every worker and every other namespace's renewals would wait behind
// it. A reconcile that finds no free slot does not wait for one: it gives
// its worker back and comes again later.
//
// It counts only requests in flight, so a restart loses nothing.
type mintSlots struct {
	limit int // 0: unbounded

	mu    sync.Mutex
	inUse map[string]int
}

func newMintSlots(limit int) *mintSlots {
	return &mintSlots{limit: limit, inUse: map[string]int{}}
}

// acquire takes a slot of namespace, reporting false when all are taken.
func (m *mintSlots) acquire(namespace string) bool {
	if m == nil || m.limit <= 0 {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inUse[namespace] >= m.limit {
		return false
	}
	m.inUse[namespace]++
	return true
}

// release gives back a slot taken by acquire.
func (m *mintSlots) release(namespace string) {
	if m == nil || m.limit <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inUse[namespace]--; m.inUse[namespace] <= 0 {
		delete(m.inUse, namespace)
	}
}
