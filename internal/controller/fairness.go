package controller

import (
	"context"
	"sync"
	"time"
)

// DefaultMintsPerNamespace is how many mints of one namespace may run at
// once by default, as a share of the workers (see mintSlots).
func DefaultMintsPerNamespace(workers int) int { return max(1, workers/4) }

// mintSlotWait is how long a reconcile waits for a slot of its namespace
// before it gives its worker back: long enough for the mints of a
// responsive STS to finish and free one, so a namespace creating many
// credentials at once is not slowed down, short enough that the workers of
// a namespace whose STS hangs are mostly free for the others.
const mintSlotWait = 250 * time.Millisecond

// mintSlotRetry is how long a reconcile that found no free slot waits before
// it looks again; a share of it derived from the credential is added so the
// waiting credentials do not come back together.
const mintSlotRetry = 2 * time.Second

// mintSlots bounds how many token requests of one namespace are in flight
// at once. A mint holds its worker until the STS answers or the mint's
// deadline passes, so without a bound one namespace whose STS hangs could
// hold every worker and every other namespace's renewals would wait behind
// it. A reconcile that finds no free slot within mintSlotWait does not wait
// longer: it gives its worker back and comes again later. It counts only
// requests in flight, so a restart loses nothing.
type mintSlots struct {
	limit int // 0: unbounded

	mu         sync.Mutex
	namespaces map[string]*namespaceSlots
}

// namespaceSlots is one namespace's semaphore, kept while anyone holds or
// waits for a slot.
type namespaceSlots struct {
	slots chan struct{}
	users int
}

func newMintSlots(limit int) *mintSlots {
	return &mintSlots{limit: limit, namespaces: map[string]*namespaceSlots{}}
}

// acquire takes a slot of namespace, waiting at most wait for one; it
// reports false when none came free in time.
func (m *mintSlots) acquire(ctx context.Context, namespace string, wait time.Duration) bool {
	if m == nil || m.limit <= 0 {
		return true
	}
	m.mu.Lock()
	ns := m.namespaces[namespace]
	if ns == nil {
		ns = &namespaceSlots{slots: make(chan struct{}, m.limit)}
		m.namespaces[namespace] = ns
	}
	ns.users++
	m.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case ns.slots <- struct{}{}:
		return true
	case <-timer.C:
	case <-ctx.Done():
	}
	m.leave(namespace, ns)
	return false
}

// release gives back a slot taken by acquire.
func (m *mintSlots) release(namespace string) {
	if m == nil || m.limit <= 0 {
		return
	}
	m.mu.Lock()
	ns := m.namespaces[namespace]
	m.mu.Unlock()
	<-ns.slots
	m.leave(namespace, ns)
}

// leave drops a holder or waiter, and the namespace's semaphore with the last.
func (m *mintSlots) leave(namespace string, ns *namespaceSlots) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ns.users--; ns.users == 0 {
		delete(m.namespaces, namespace)
	}
}
