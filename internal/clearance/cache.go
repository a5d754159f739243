package clearance

import (
	"container/list"
	"crypto/sha256"
	"sync"
)

// connectionCache is a small concurrency-safe LRU of parsed connection files
// keyed by the SHA-256 of the file content. Decoding the JWK and validating the
// RSA key costs far more than hashing a few KiB, and reconciles re-read the same
// Secret over and over.
type connectionCache struct {
	mu      sync.Mutex
	max     int
	order   *list.List // front = most recently used; values are *cacheEntry
	entries map[[sha256.Size]byte]*list.Element
}

type cacheEntry struct {
	sum [sha256.Size]byte
	cf  *ConnectionFile
}

func newConnectionCache(maxEntries int) *connectionCache {
	return &connectionCache{
		max:     maxEntries,
		order:   list.New(),
		entries: make(map[[sha256.Size]byte]*list.Element, maxEntries),
	}
}

// load returns a copy of the cached parse of data, parsing it on a miss.
// Concurrent misses for the same content may parse twice; that is harmless and
// keeps the expensive parse outside the lock.
func (c *connectionCache) load(data []byte) (*ConnectionFile, error) {
	sum := sha256.Sum256(data)
	if cf := c.get(sum); cf != nil {
		return cf.clone(), nil
	}
	cf, err := ParseConnectionFile(data)
	if err != nil {
		return nil, err
	}
	c.put(sum, cf)
	return cf.clone(), nil
}

func (c *connectionCache) get(sum [sha256.Size]byte) *ConnectionFile {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[sum]
	if !ok {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*cacheEntry).cf
}

func (c *connectionCache) put(sum [sha256.Size]byte, cf *ConnectionFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[sum]; ok {
		c.order.MoveToFront(el)
		return
	}
	c.entries[sum] = c.order.PushFront(&cacheEntry{sum: sum, cf: cf})
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.entries, oldest.Value.(*cacheEntry).sum)
	}
}

// size reports the number of cached entries (for tests).
func (c *connectionCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
