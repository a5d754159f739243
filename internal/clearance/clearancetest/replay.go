package clearancetest

import (
	"container/heap"
	"sync"
	"time"
)

// replayCache remembers accepted jti values until the assertion that carried
// them expires (RFC 7523 §3 item 7). It is bounded: when full, the entry that
// would expire soonest is forgotten, which is the one least likely to be
// replayed successfully anyway.
type replayCache struct {
	mu   sync.Mutex
	max  int
	seen map[string]time.Time
	byEx expiryHeap
}

type expiryEntry struct {
	key string
	exp time.Time
}

type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) } //nolint:forcetypeassert // only expiryEntry is pushed
func (h *expiryHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	*h = old[:n-1]
	return e
}

func newReplayCache(maxEntries int) *replayCache {
	return &replayCache{max: maxEntries, seen: make(map[string]time.Time)}
}

// add records key until exp and reports whether it was new. Expired entries
// are dropped first; the map and heap always hold the same keys.
func (c *replayCache) add(key string, exp, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.byEx.Len() > 0 && !c.byEx[0].exp.After(now) {
		e := heap.Pop(&c.byEx).(expiryEntry) //nolint:forcetypeassert // only expiryEntry is stored
		delete(c.seen, e.key)
	}
	if _, dup := c.seen[key]; dup {
		return false
	}
	if len(c.seen) >= c.max {
		e := heap.Pop(&c.byEx).(expiryEntry) //nolint:forcetypeassert // only expiryEntry is stored
		delete(c.seen, e.key)
	}
	c.seen[key] = exp
	heap.Push(&c.byEx, expiryEntry{key: key, exp: exp})
	return true
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
