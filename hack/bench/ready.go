package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// timedRun is one timed creation of N credentials, by the operator or by the floor.
type timedRun struct {
	// Seconds from the first create until every credential was Ready with a
	// token in its Secret (as seen through watches).
	Seconds float64 `json:"seconds"`
	// CreateSeconds from the first create until the last create returned.
	CreateSeconds float64 `json:"createSeconds"`
	Usage         usage   `json:"usage"`
}

// readyEnvPlan says what one "N credentials" environment measures.
type readyEnvPlan struct {
	n       int
	ready   bool // report time to Ready and measure its floor
	memory  bool
	restart bool
}

// runReadyEnv creates n credentials in a fresh environment (after measuring
// the floor there, when asked), then measures memory and/or restart on the
// same credentials.
func (b *bench) runReadyEnv(ctx context.Context, p readyEnvPlan) {
	name := fmt.Sprintf("n%d", p.n)
	e, err := b.startEnv(ctx, name, b.cfg.TokenTTL.D())
	if err != nil {
		b.fail(name, err)
		return
	}
	defer e.stop()
	// Ends the trackers' watches before the control plane stops.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	files, err := e.connectionFiles(ctx, p.n)
	if err != nil {
		b.fail(name, err)
		return
	}

	var rr *ReadyResult
	repeats := 1
	if p.ready {
		rr = &ReadyResult{N: p.n, Concurrency: b.cfg.Concurrency, LoadAvg: loadAvg()}
		b.res.Ready = append(b.res.Ready, rr)
		repeats = b.cfg.repeatsFor(p.n)
	}
	var (
		mgr      *manager
		tr       *tracker
		opNS     string
		op       *timedRun
		baseline uint64
		// keepTracker ends the last repeat's tracker, which restart uses.
		keepTracker context.CancelFunc
	)
	// Each repeat measures the floor, then the operator, in fresh namespaces
	// (alternating them spreads the shared machine's load changes over both);
	// the manager and the credentials of the last one stay for memory and restart.
	for k := range repeats {
		last := k == repeats-1
		rep := ReadyRepeat{}
		if p.ready && !b.cfg.SkipFloor {
			// The manager watches all namespaces: each floor's objects go
			// before it starts.
			floor := func(label, ns string, extra ...floorWork) *timedRun {
				b.logf("[%s] %s %d/%d: %d credentials, %d workers", e.name, label, k+1, repeats, p.n, b.cfg.Concurrency)
				run, err := e.runFloor(ctx, ns, p.n, files, extra...)
				if err == nil {
					b.logf("[%s] %s %d/%d: %.2fs", e.name, label, k+1, repeats, run.Seconds)
					err = e.deleteAll(ctx, ns)
				}
				if err != nil {
					rr.Error = label + ": " + err.Error()
					b.fail(name, fmt.Errorf("%s: %w", label, err))
					return nil
				}
				return run
			}
			if rep.Floor = floor("floor", fmt.Sprintf("floor-%d", k)); rep.Floor == nil {
				return
			}
			if rep.FloorRequired = floor("floor with required work", fmt.Sprintf("floor-required-%d", k), withRequiredWork); rep.FloorRequired == nil {
				return
			}
		}
		if mgr, err = e.startManager(); err != nil {
			b.fail(name, err)
			return
		}
		if p.memory && last {
			// The idle manager, caches synced, no credentials: the floor of its memory.
			if err := sleep(ctx, 5*time.Second); err != nil {
				return
			}
			if m, err := testutil.ReadProcMemory(mgr.proc.Pid()); err == nil {
				baseline = m.RSS
			}
		}
		opNS = fmt.Sprintf("op-%d", k)
		b.logf("[%s] operator %d/%d: creating %d credentials, %d workers, manager --max-concurrent-reconciles=%d",
			e.name, k+1, repeats, p.n, b.cfg.Concurrency, b.cfg.Concurrency)
		repCtx, repCancel := context.WithCancel(ctx)
		if op, tr, err = e.runOp(repCtx, opNS, p.n, files, fmt.Sprintf("op%d", k)); err != nil {
			repCancel()
			if rr != nil {
				rr.Error = err.Error()
			}
			b.fail(name, err)
			return
		}
		b.logf("[%s] operator %d/%d: %.2fs", e.name, k+1, repeats, op.Seconds)
		rep.Op = op
		if rep.Floor != nil && rep.Floor.Seconds > 0 {
			rep.R = op.Seconds / rep.Floor.Seconds
		}
		if rep.FloorRequired != nil && rep.FloorRequired.Seconds > 0 {
			rep.RRequired = op.Seconds / rep.FloorRequired.Seconds
		}
		if m, err := testutil.ReadProcMemory(mgr.proc.Pid()); err == nil {
			rep.ManagerPeakRSS = m.HWM
		}
		if rr != nil {
			rr.Repeats = append(rr.Repeats, rep)
		}
		if last {
			keepTracker = repCancel
			break
		}
		repCancel()
		if err := e.stopManager(); err != nil {
			b.fail(name, err)
			return
		}
		if err := e.deleteAll(ctx, opNS); err != nil {
			b.fail(name, err)
			return
		}
	}
	if keepTracker != nil {
		defer keepTracker()
	}
	if rr != nil {
		rr.LoadAvgEnd = loadAvg()
		rr.summarize()
	}
	if p.memory {
		mr, err := e.measureMemory(ctx, p.n, baseline, op.Seconds)
		b.res.Memory = mr
		if err != nil {
			b.fail("memory", err)
		}
	}
	if p.restart {
		rs, err := e.measureRestart(ctx, opNS, p.n, tr)
		b.res.Restart = rs
		if err != nil {
			b.fail("restart", err)
		}
	}
}

// runOp creates n credentials in namespace ns and waits, through watches,
// until the operator has made every one Ready with a token in its Secret.
// The tracker keeps running (until ctx ends) for later measurements.
func (e *env) runOp(ctx context.Context, ns string, n int, files [][]byte, profileTag string) (*timedRun, *tracker, error) {
	if err := e.createNamespace(ctx, ns); err != nil {
		return nil, nil, err
	}
	tr, err := e.startTracker(ctx, ns, n)
	if err != nil {
		return nil, nil, err
	}
	before, err := e.snapshot(ctx)
	if err != nil {
		return nil, nil, err
	}
	stopProfile := e.profileCPU(ctx, profileTag)
	start := time.Now()
	if err := parallel(ctx, n, e.b.cfg.Concurrency, func(ctx context.Context, i int) error {
		_, err := createInputs(ctx, e.client, ns, i, files[i])
		return err
	}); err != nil {
		stopProfile()
		return nil, nil, err
	}
	created := time.Now()
	last, err := tr.wait(ctx, e.b.cfg.ReadyTime.D())
	if err != nil {
		stopProfile()
		return nil, nil, fmt.Errorf("%w; %s", err, e.statusSummary(ctx, ns))
	}
	after, err := e.snapshot(ctx)
	stopProfile()
	if err != nil {
		return nil, nil, err
	}
	return &timedRun{
		Seconds:       last.Sub(start).Seconds(),
		CreateSeconds: created.Sub(start).Seconds(),
		Usage:         before.to(after),
	}, tr, nil
}

// runFloor does, for n credentials, what an ideal operator must do at least,
// with the same load driver and the same concurrency as the operator run: the
// driver creates the connection Secret and the credential exactly as in the
// operator run, and floor workers (as many as the manager's reconcile
// workers) take each created credential at once — no watch, no cache, no
// reads — parse its connection file, make one token request to the same
// emulator with the operator's STS client, create the target Secret and
// update the status once. Completion is observed through the same watches.
// With withRequiredWork the floor also does the two requests the issues
// require of the operator on top of that minimum: reading the connection
// Secret from the apiserver when minting, and recording a Minted event.
func (e *env) runFloor(ctx context.Context, ns string, n int, files [][]byte, extra ...floorWork) (*timedRun, error) {
	required := slices.Contains(extra, withRequiredWork)
	if err := e.createNamespace(ctx, ns); err != nil {
		return nil, err
	}
	tctx, cancelTracker := context.WithCancel(ctx)
	defer cancelTracker()
	tr, err := e.startTracker(tctx, ns, n)
	if err != nil {
		return nil, err
	}
	sts := clearance.NewClient(clearance.WithEgress(testutil.LoopbackEgress), clearance.WithClock(clock.RealClock{}))
	before, err := e.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	// Named by namespace, so each floor run of each repeat keeps its own profiles.
	stopProfile := e.profileCPU(ctx, ns)
	defer stopProfile()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type item struct {
		i  int
		in *createdInputs
	}
	work := make(chan item, n)
	var created time.Time
	start := time.Now()
	go func() {
		defer close(work)
		err := parallel(ctx, n, e.b.cfg.Concurrency, func(ctx context.Context, i int) error {
			in, err := createInputs(ctx, e.client, ns, i, files[i])
			if err == nil {
				work <- item{i, in}
			}
			return err
		})
		created = time.Now()
		if err != nil {
			cancel(err)
		}
	}()
	var wg sync.WaitGroup
	for range e.b.cfg.Concurrency {
		wg.Go(func() {
			for it := range work {
				if ctx.Err() != nil {
					continue // drain
				}
				if err := e.floorReconcile(ctx, sts, it.in, files[it.i], required); err != nil {
					cancel(fmt.Errorf("%s: %w", it.in.cred.Name, err))
				}
			}
		})
	}
	last, werr := tr.wait(ctx, e.b.cfg.ReadyTime.D())
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	if werr != nil {
		return nil, werr
	}
	after, err := e.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return &timedRun{Seconds: last.Sub(start).Seconds(), CreateSeconds: created.Sub(start).Seconds(), Usage: before.to(after)}, nil
}

// floorWork selects what a floor run does beyond the minimum.
type floorWork int

// withRequiredWork adds the connection Secret read and the event.
const withRequiredWork floorWork = 1

// floorReconcile is the minimum per credential: one token request, one
// create of a Secret with the content #5 requires (the token keys, the tenant
// and client ids, the first address of each address list; none of the
// operator's own bookkeeping annotations), one status update; with required,
// also one GET of the connection Secret and one event. The GET asks for the
// version the driver created (or newer), as the operator asks for the version
// its metadata watch saw: the apiserver serves both from its watch cache.
func (e *env) floorReconcile(ctx context.Context, sts *clearance.Client, in *createdInputs, file []byte, required bool) error {
	cred := in.cred
	if required {
		conn := &corev1.Secret{}
		if err := withRetry(ctx, func() error {
			return e.client.Get(ctx, client.ObjectKey{Namespace: cred.Namespace, Name: cred.Spec.ConnectionSecretRef.Name}, conn,
				&client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: in.connectionVersion}})
		}); err != nil {
			return fmt.Errorf("reading the connection Secret: %w", err)
		}
		file = conn.Data[clearancev1alpha1.DefaultConnectionSecretKey]
	}
	conn, err := sts.LoadConnectionFile(file)
	if err != nil {
		return err
	}
	tok, err := sts.Mint(ctx, clearance.MintRequest{Connection: conn})
	if err != nil {
		return err
	}
	expiresAt := tok.ExpiresAt.UTC().Format(time.RFC3339)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: cred.Namespace, Name: cred.Spec.SecretName,
			Labels:      map[string]string{clearancev1alpha1.ManagedByLabel: clearancev1alpha1.ManagedByValue},
			Annotations: map[string]string{clearancev1alpha1.ExpiresAtAnnotation: expiresAt},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: clearancev1alpha1.GroupVersion.String(), Kind: "ClearanceCredential",
				Name: cred.Name, UID: cred.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			clearancev1alpha1.SecretKeyToken:     []byte(tok.AccessToken),
			clearancev1alpha1.SecretKeyExpiresAt: []byte(expiresAt),
			clearancev1alpha1.SecretKeyTokenType: []byte(tok.TokenType),
			clearancev1alpha1.SecretKeyTenantID:  []byte(conn.TenantID),
			clearancev1alpha1.SecretKeyClientID:  []byte(conn.ClientID()),
		},
	}
	// The first address of each address list is required content of the
	// target Secret too (#5), so the floor writes it as the operator does.
	for member, addr := range conn.FirstAddresses {
		secret.Data[clearancev1alpha1.AddressDataKey(member)] = []byte(addr)
	}
	if err := withRetry(ctx, func() error { return e.client.Create(ctx, secret) }); err != nil {
		return fmt.Errorf("creating target Secret: %w", err)
	}
	now := metav1.Now()
	cred.Status = clearancev1alpha1.ClearanceCredentialStatus{
		Conditions: []metav1.Condition{{
			Type: clearancev1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: clearancev1alpha1.ReasonTokenValid,
			Message: "token valid until " + expiresAt, ObservedGeneration: cred.Generation, LastTransitionTime: now,
		}},
		ObservedGeneration: cred.Generation,
		ExpiresAt:          &metav1.Time{Time: tok.ExpiresAt.Truncate(time.Second)},
		TokenEndpoint:      tok.Endpoint,
		KeyID:              tok.KeyID,
	}
	if err := withRetry(ctx, func() error { return e.client.Status().Update(ctx, cred) }); err != nil {
		return fmt.Errorf("updating status: %w", err)
	}
	if required {
		ev := &eventsv1.Event{
			ObjectMeta:          metav1.ObjectMeta{Namespace: cred.Namespace, Name: fmt.Sprintf("%s.%x", cred.Name, time.Now().UnixNano())}, // named as the recorder names them
			EventTime:           metav1.NowMicro(),
			ReportingController: "clearance-operator-floor",
			ReportingInstance:   "bench",
			Action:              "WriteSecret",
			Reason:              "Minted",
			Type:                corev1.EventTypeNormal,
			Regarding: corev1.ObjectReference{APIVersion: clearancev1alpha1.GroupVersion.String(), Kind: "ClearanceCredential",
				Namespace: cred.Namespace, Name: cred.Name, UID: cred.UID, ResourceVersion: cred.ResourceVersion},
			Note: fmt.Sprintf("token minted (TargetMissing) by %s into Secret %q; expires at %s", tok.Endpoint, cred.Spec.SecretName, expiresAt),
		}
		if err := withRetry(ctx, func() error { return e.client.Create(ctx, ev) }); err != nil {
			return fmt.Errorf("recording the event: %w", err)
		}
	}
	return nil
}

// MemoryResult is the manager's resident memory with N credentials Ready,
// then with unrelated Secrets added.
type MemoryResult struct {
	N              int `json:"n"`
	UnrelatedN     int `json:"unrelatedSecrets"`
	UnrelatedBytes int `json:"unrelatedSecretBytes"`
	// BaselineRSS is the idle manager's VmRSS (caches synced, no credentials).
	BaselineRSS uint64 `json:"baselineRSSBytes"`
	// PeakRSS (VmHWM) and SteadyRSS (median VmRSS over the window, after settling) with N credentials Ready.
	PeakRSS   uint64 `json:"peakRSSBytes"`
	SteadyRSS uint64 `json:"steadyRSSBytes"`
	// The same after the unrelated Secrets were added.
	PeakRSSUnrelated   uint64     `json:"peakRSSWithUnrelatedBytes"`
	SteadyRSSUnrelated uint64     `json:"steadyRSSWithUnrelatedBytes"`
	ReadySeconds       float64    `json:"readySeconds"`
	LoadAvg            [3]float64 `json:"loadAvg"`
	HeapProfiles       []string   `json:"heapProfiles,omitempty"`
}

// UnrelatedDelta is what the unrelated Secrets added to the steady RSS (may be negative).
func (m *MemoryResult) UnrelatedDelta() int64 {
	return int64(m.SteadyRSSUnrelated) - int64(m.SteadyRSS) //nolint:gosec // RSS values are far below 2^63
}

func (e *env) measureMemory(ctx context.Context, n int, baseline uint64, readySeconds float64) (*MemoryResult, error) {
	mr := &MemoryResult{
		N: n, UnrelatedN: e.b.cfg.UnrelatedN, UnrelatedBytes: e.b.cfg.UnrelatedSize,
		BaselineRSS: baseline, ReadySeconds: readySeconds, LoadAvg: loadAvg(),
	}
	pid := e.mgr.proc.Pid()
	b := e.b
	b.logf("[%s] memory: settling %s, then sampling RSS for %s", e.name, b.cfg.MemorySettle, b.cfg.MemoryWindow)
	steady, peak, err := sampleRSS(ctx, pid, b.cfg.MemorySettle.D(), b.cfg.MemoryWindow.D())
	if err != nil {
		return mr, err
	}
	mr.SteadyRSS, mr.PeakRSS = steady, peak
	if p := e.heapProfile(ctx, "ready"); p != "" {
		mr.HeapProfiles = append(mr.HeapProfiles, p)
	}
	if b.cfg.UnrelatedN > 0 {
		b.logf("[%s] memory: adding %d unrelated Secrets of %d bytes", e.name, b.cfg.UnrelatedN, b.cfg.UnrelatedSize)
		if err := e.createNamespace(ctx, "unrelated"); err != nil {
			return mr, err
		}
		if err := e.createUnrelated(ctx, "unrelated", b.cfg.UnrelatedN, b.cfg.UnrelatedSize); err != nil {
			return mr, err
		}
		steady, peak, err := sampleRSS(ctx, pid, b.cfg.MemorySettle.D(), b.cfg.MemoryWindow.D())
		if err != nil {
			return mr, err
		}
		mr.SteadyRSSUnrelated, mr.PeakRSSUnrelated = steady, peak
		if p := e.heapProfile(ctx, "unrelated"); p != "" {
			mr.HeapProfiles = append(mr.HeapProfiles, p)
		}
	}
	b.logf("[%s] memory: baseline %s, peak %s, steady %s; with unrelated Secrets peak %s, steady %s",
		e.name, mib(mr.BaselineRSS), mib(mr.PeakRSS), mib(mr.SteadyRSS), mib(mr.PeakRSSUnrelated), mib(mr.SteadyRSSUnrelated))
	return mr, nil
}

// sampleRSS waits settle, then samples VmRSS once a second for window and
// returns the median and the VmHWM at the end.
func sampleRSS(ctx context.Context, pid int, settle, window time.Duration) (steady, peak uint64, err error) {
	if err := sleep(ctx, settle); err != nil {
		return 0, 0, err
	}
	var samples []uint64
	for range int(window / time.Second) {
		m, err := testutil.ReadProcMemory(pid)
		if err != nil {
			return 0, 0, err
		}
		samples = append(samples, m.RSS)
		peak = m.HWM
		if err := sleep(ctx, time.Second); err != nil {
			return 0, 0, err
		}
	}
	if len(samples) == 0 {
		return 0, 0, errors.New("no RSS samples")
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	return samples[len(samples)/2], peak, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
