package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// tracker follows the credentials of one namespace and their target Secrets
// through watches (informers), never by polling LISTs. It records when each
// credential first became Ready with a token in its Secret, and keeps a
// watch-fed view of every target Secret's expiresAt for the freshness poller.
type tracker struct {
	want int

	mu       sync.Mutex
	ready    map[string]bool      // credential id -> Ready=True seen
	token    map[string]string    // secret id -> token stored
	expires  map[string]time.Time // secret id -> data.expiresAt
	complete map[string]time.Time // id -> first time Ready with a token
	last     time.Time            // when complete reached want
	allDone  chan struct{}
	// Counters of watch events, for "writes caused by X" figures.
	credUpdates   int
	secretUpdates int
	tokenChanges  int // a Secret's token changed (a new token was stored)
	// overruns counts replacements that came after the replaced token's
	// expiresAt (so pods could have read an expired token in between), and
	// maxOverrun is the longest such gap; both exact up to watch latency.
	overruns   int
	maxOverrun time.Duration
}

// startTracker starts informers for namespace ns. want is the number of
// credentials whose completion closes done().
func (e *env) startTracker(ctx context.Context, ns string, want int) (*tracker, error) {
	t := &tracker{
		want: want, ready: map[string]bool{}, token: map[string]string{}, expires: map[string]time.Time{},
		complete: map[string]time.Time{}, allDone: make(chan struct{}),
	}
	c, err := cache.New(e.rest, cache.Options{
		Scheme:            e.b.scheme,
		DefaultNamespaces: map[string]cache.Config{ns: {}},
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{clearancev1alpha1.ManagedByLabel: clearancev1alpha1.ManagedByValue})},
		},
		DefaultTransform: cache.TransformStripManagedFields(),
	})
	if err != nil {
		return nil, err
	}
	credInf, err := c.GetInformer(ctx, &clearancev1alpha1.ClearanceCredential{})
	if err != nil {
		return nil, err
	}
	secInf, err := c.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return nil, err
	}
	if _, err := credInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { t.onCredential(o, false) },
		UpdateFunc: func(_, o any) { t.onCredential(o, true) },
	}); err != nil {
		return nil, err
	}
	if _, err := secInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { t.onSecret(o, false) },
		UpdateFunc: func(_, o any) { t.onSecret(o, true) },
	}); err != nil {
		return nil, err
	}
	go func() { _ = c.Start(ctx) }()
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !c.WaitForCacheSync(syncCtx) {
		return nil, fmt.Errorf("tracker for %s: caches did not sync", ns)
	}
	return t, nil
}

func (t *tracker) onCredential(o any, update bool) {
	cred, ok := o.(*clearancev1alpha1.ClearanceCredential)
	if !ok {
		return
	}
	now := time.Now()
	id := strings.TrimPrefix(cred.Name, "cred-")
	ready := meta.IsStatusConditionTrue(cred.Status.Conditions, clearancev1alpha1.ConditionReady)
	t.mu.Lock()
	defer t.mu.Unlock()
	if update {
		t.credUpdates++
	}
	t.ready[id] = ready
	t.check(id, now)
}

func (t *tracker) onSecret(o any, update bool) {
	s, ok := o.(*corev1.Secret)
	if !ok {
		return
	}
	now := time.Now()
	id := strings.TrimPrefix(s.Name, "token-")
	tok := string(s.Data[clearancev1alpha1.SecretKeyToken])
	exp, _ := time.Parse(time.RFC3339, string(s.Data[clearancev1alpha1.SecretKeyExpiresAt]))
	t.mu.Lock()
	defer t.mu.Unlock()
	if update {
		t.secretUpdates++
	}
	if tok != "" && tok != t.token[id] {
		t.tokenChanges++
		if prev := t.expires[id]; t.token[id] != "" && !prev.IsZero() && now.After(prev) {
			t.overruns++
			t.maxOverrun = max(t.maxOverrun, now.Sub(prev))
		}
	}
	t.token[id] = tok
	t.expires[id] = exp
	t.check(id, now)
}

// check records id's completion; t.mu is held.
func (t *tracker) check(id string, now time.Time) {
	if _, done := t.complete[id]; done || !t.ready[id] || t.token[id] == "" {
		return
	}
	t.complete[id] = now
	if len(t.complete) == t.want {
		t.last = now
		close(t.allDone)
	}
}

// wait blocks until all wanted credentials are complete and returns when the
// last one was, or fails after timeout with a count.
func (t *tracker) wait(ctx context.Context, timeout time.Duration) (time.Time, error) {
	select {
	case <-t.allDone:
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.last, nil
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	case <-time.After(timeout):
		return time.Time{}, fmt.Errorf("only %d of %d credentials Ready after %s", t.completed(), t.want, timeout)
	}
}

func (t *tracker) completed() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.complete)
}

// counters returns the event counters so far.
func (t *tracker) counters() (credUpdates, secretUpdates, tokenChanges int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.credUpdates, t.secretUpdates, t.tokenChanges
}

// expiryOverruns returns how many stored tokens were replaced only after
// their expiresAt, plus those expired now, and the longest overrun.
func (t *tracker) expiryOverruns(now time.Time) (count int, longest time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	count, longest = t.overruns, t.maxOverrun
	for id, exp := range t.expires {
		if t.token[id] != "" && !exp.IsZero() && now.After(exp) {
			count++
			longest = max(longest, now.Sub(exp))
		}
	}
	return count, longest
}

// freshness samples the view: how many stored tokens have already expired at
// now, how many were looked at, and the smallest remaining lifetime seen.
func (t *tracker) freshness(now time.Time) (expired, sampled int, minLeft time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	minLeft = time.Duration(1<<63 - 1)
	for id, exp := range t.expires {
		if t.token[id] == "" || exp.IsZero() {
			continue
		}
		sampled++
		if now.After(exp) {
			expired++
		}
		minLeft = min(minLeft, exp.Sub(now))
	}
	return expired, sampled, minLeft
}

// statusSummary is used in error messages when credentials do not become Ready.
func (e *env) statusSummary(ctx context.Context, ns string) string {
	list := &clearancev1alpha1.ClearanceCredentialList{}
	if err := e.client.List(ctx, list, client.InNamespace(ns), client.Limit(2000)); err != nil {
		return err.Error()
	}
	reasons := map[string]int{}
	for _, c := range list.Items {
		r := "no Ready condition"
		if cond := meta.FindStatusCondition(c.Status.Conditions, clearancev1alpha1.ConditionReady); cond != nil {
			r = string(cond.Status) + "/" + cond.Reason
		}
		reasons[r]++
	}
	return fmt.Sprintf("Ready conditions (first %d credentials): %v", len(list.Items), reasons)
}
