//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
)

// observedToken is one token the credential's Secret held, as the test saw it.
type observedToken struct {
	hash      string
	seen      time.Time // when the test's watch delivered the Secret holding it
	expiresAt time.Time // from the emulator's verification
	invalid   string    // why the emulator rejected it ("" when valid)
}

// read is one line of the file consumer: when it read which token.
type read struct {
	at   time.Time
	hash string
}

// tokenMonitor follows a token Secret (through a watch) and what a consumer
// pod reads from its mounted copy (through the pod's log).
type tokenMonitor struct {
	namespace, secretName, pod, clientID string

	mu     sync.Mutex
	tokens []observedToken
	byHash map[string]int
	cancel context.CancelFunc
	done   chan struct{}
}

func newTokenMonitor(namespace, secretName, pod, clientID string) *tokenMonitor {
	ctx, cancel := context.WithCancel(context.Background())
	m := &tokenMonitor{namespace: namespace, secretName: secretName, pod: pod, clientID: clientID,
		byHash: map[string]int{}, cancel: cancel, done: make(chan struct{})}
	go m.watch(ctx)
	return m
}

func (m *tokenMonitor) stop() {
	m.cancel()
	<-m.done
}

// watch records every token the Secret holds, re-opening the watch whenever
// the apiserver closes it.
func (m *tokenMonitor) watch(ctx context.Context) {
	defer close(m.done)
	defer GinkgoRecover()
	sel := fields.OneTermEqualSelector("metadata.name", m.secretName).String()
	for ctx.Err() == nil {
		w, err := clientset.CoreV1().Secrets(m.namespace).Watch(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			time.Sleep(time.Second)
			continue
		}
		for ev := range w.ResultChan() {
			if s, ok := ev.Object.(*corev1.Secret); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) {
				m.observe(string(s.Data["token"]), time.Now())
			}
		}
		w.Stop()
	}
}

func (m *tokenMonitor) observe(token string, at time.Time) {
	if token == "" {
		return
	}
	h := hashOf(token)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byHash[h]; ok {
		return
	}
	ot := observedToken{hash: h, seen: at}
	if tok, err := emulator.VerifyAccessToken(token); err != nil {
		ot.invalid = err.Error()
	} else if tok.ClientID != m.clientID {
		ot.invalid = fmt.Sprintf("issued to %s, not %s", tok.ClientID, m.clientID)
	} else {
		ot.expiresAt = tok.ExpiresAt
	}
	m.byHash[h] = len(m.tokens)
	m.tokens = append(m.tokens, ot)
}

// snapshot returns the tokens seen so far, oldest first.
func (m *tokenMonitor) snapshot() []observedToken {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]observedToken(nil), m.tokens...)
}

// reads parses the consumer's log: "<timestamp> read <sha256>" lines.
func (m *tokenMonitor) reads(g Gomega) []read {
	var out []read
	for _, line := range podLog(g, m.namespace, m.pod) {
		f := strings.Fields(line)
		if len(f) != 3 || f[1] != "read" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, f[0])
		g.Expect(err).NotTo(HaveOccurred())
		out = append(out, read{at: at, hash: f[2]})
	}
	return out
}

// analysis relates the pod's reads to the Secret's tokens.
type analysis struct {
	tokens    []observedToken
	firstRead []time.Time // per token; zero if the pod never read it
	reads     int
	expired   []string // reads of a token at or after its expiry
	unknown   int      // reads of something the Secret never held
	invalid   []string // tokens the emulator rejected
}

func (m *tokenMonitor) analyse(g Gomega) analysis {
	rs := m.reads(g)
	a := analysis{tokens: m.snapshot(), reads: len(rs)}
	a.firstRead = make([]time.Time, len(a.tokens))
	index := map[string]int{}
	for i, t := range a.tokens {
		index[t.hash] = i
		if t.invalid != "" {
			a.invalid = append(a.invalid, fmt.Sprintf("token %d: %s", i, t.invalid))
		}
	}
	for _, r := range rs {
		i, ok := index[r.hash]
		if !ok {
			a.unknown++
			continue
		}
		if a.firstRead[i].IsZero() {
			a.firstRead[i] = r.at
		}
		if t := a.tokens[i]; t.invalid == "" && !r.at.Before(t.expiresAt) {
			a.expired = append(a.expired, fmt.Sprintf("token %d read at %s, expired at %s", i, r.at.Format(time.RFC3339Nano), t.expiresAt.Format(time.RFC3339)))
		}
	}
	return a
}

// readTokens is how many distinct tokens the pod has read.
func (a analysis) readTokens() int {
	n := 0
	for _, t := range a.firstRead {
		if !t.IsZero() {
			n++
		}
	}
	return n
}

// propagation returns, for every token after the first that the pod read, the
// time from the Secret's update to the pod's first read of it.
func (a analysis) propagation() []time.Duration {
	var ds []time.Duration
	for i := 1; i < len(a.tokens); i++ {
		if !a.firstRead[i].IsZero() {
			ds = append(ds, a.firstRead[i].Sub(a.tokens[i].seen))
		}
	}
	return ds
}

// expectHealthy: every token valid at the emulator, the pod never read an
// expired token or one the Secret never held.
func (a analysis) expectHealthy(g Gomega) {
	g.Expect(a.invalid).To(BeEmpty(), "tokens the emulator rejected")
	g.Expect(a.expired).To(BeEmpty(), "the pod read expired tokens")
	g.Expect(a.unknown).To(BeZero(), "the pod read tokens the Secret never held")
}
