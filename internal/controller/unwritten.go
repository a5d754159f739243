package controller

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// unwrittenMargin: a minted token whose write failed is written on a later
// try only if it stays valid at least this long, so an almost expired token
// is never stored.
const unwrittenMargin = 30 * time.Second

// unwrittenTokens holds tokens that were minted but not yet written to their
// target Secret, so a failed write is retried with the same token instead of
// a second token request. It is the reconciler's one piece of per-credential
// memory: a token exists nowhere else until it is written, and losing one
// on a restart costs only a new request.
type unwrittenTokens struct {
	mu     sync.Mutex
	tokens map[types.NamespacedName]*mintedToken
}

func newUnwrittenTokens() *unwrittenTokens {
	return &unwrittenTokens{tokens: map[types.NamespacedName]*mintedToken{}}
}

// keep holds a minted token until it is written.
func (u *unwrittenTokens) keep(key types.NamespacedName, m *mintedToken) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.tokens[key] = m
}

// take returns and drops the token held for key if it was minted from the
// same inputs and stays valid long enough; any other token is dropped.
func (u *unwrittenTokens) take(key types.NamespacedName, connectionHash, specHash, refresh string, now time.Time) *mintedToken {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := u.tokens[key]
	delete(u.tokens, key)
	if m == nil || m.connectionHash != connectionHash || m.specHash != specHash || m.refreshRequest != refresh ||
		!now.Add(unwrittenMargin).Before(m.token.ExpiresAt) {
		return nil
	}
	return m
}

// forget drops what is held for key.
func (u *unwrittenTokens) forget(key types.NamespacedName) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.tokens, key)
}
