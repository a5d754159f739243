package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

// Renewal policy constants mirrored from the controller's documented default
// (renewBefore = 1/3 of the lifetime, minus a jitter of up to 10% of the
// lifetime), to state what the soak should see.
const (
	policyRenewBefore = 1.0 / 3
	policyMeanJitter  = 0.1 / 2
)

// policyInterval is the mean time between renewals of one credential.
func policyInterval(ttl time.Duration) time.Duration {
	return time.Duration((1 - policyRenewBefore - policyMeanJitter) * float64(ttl))
}

// SoakResult is one soak: N credentials renewing tokens of TokenTTL for Duration.
type SoakResult struct {
	N         int      `json:"n"`
	TokenTTL  Duration `json:"tokenTTL"`
	Duration  Duration `json:"duration"`
	FaultRate float64  `json:"faultRate"`
	// ReadySeconds is the time until all N were first Ready (not part of the window).
	ReadySeconds float64 `json:"readySeconds"`
	// Over the window (from all Ready to the end):
	TokenRequests int64 `json:"tokenRequests"`
	// TokensStored counts new tokens appearing in target Secrets.
	TokensStored int `json:"tokensStored"`
	// RequestsPerToken = TokenRequests / TokensStored; its floor is 1/(1-FaultRate).
	RequestsPerToken      float64 `json:"requestsPerToken"`
	RequestsPerTokenFloor float64 `json:"requestsPerTokenFloor"`
	// RequestsPerCredentialPerTTL is token requests per credential per token
	// lifetime; the renewal policy alone makes it 1/(1-1/3-0.05) ≈ 1.62 (divided by 1-FaultRate).
	RequestsPerCredentialPerTTL float64 `json:"requestsPerCredentialPerTTL"`
	PolicyRequestsPerTTL        float64 `json:"policyRequestsPerCredentialPerTTL"`
	// Freshness, from creation to the end: samples of each stored token once a
	// second, and those whose expiresAt had passed.
	Samples             int     `json:"samples"`
	ExpiredSamples      int     `json:"expiredSamples"`
	MinRemainingSeconds float64 `json:"minRemainingSeconds"`
	// Overruns counts tokens that stayed in their Secret past their expiresAt
	// (seen exactly, through the watch, between samples too), and
	// MaxOverrunSeconds is the longest time one did.
	Overruns          int     `json:"expiryOverruns"`
	MaxOverrunSeconds float64 `json:"maxExpiryOverrunSeconds"`
	// Token requests per second of the window, from the emulator's request history.
	MaxPerSecond       float64 `json:"maxRequestsPerSecond"`
	MaxPerSecondSteady float64 `json:"maxRequestsPerSecondAfterFirstTTL"`
	MeanPerSecond      float64 `json:"meanRequestsPerSecond"`
	PolicyPerSecond    float64 `json:"policyRequestsPerSecond"`
	// Manager CPU over the window, and per 1,000 token requests.
	ManagerCPUSeconds  float64    `json:"managerCPUSeconds"`
	CPUPer1000Requests float64    `json:"managerCPUSecondsPer1000Requests"`
	Usage              usage      `json:"usage"`
	RatePerSecond      []float64  `json:"requestsPerSecondSeries,omitempty"`
	LoadAvg            [3]float64 `json:"loadAvg"`
	LoadAvgEnd         [3]float64 `json:"loadAvgEnd"`
	Error              string     `json:"error,omitempty"`
	Note               string     `json:"note,omitempty"`
}

// requestLog accumulates the emulator's request history (the last 1,000
// token requests, polled often enough that none are missed).
type requestLog struct {
	seen     map[string]time.Time
	newest   time.Time
	overflow bool
}

func newRequestLog() *requestLog { return &requestLog{seen: map[string]time.Time{}} }

func (l *requestLog) add(reqs []clearancetest.Request) {
	if len(reqs) == 0 {
		return
	}
	// A full history that starts after the newest request seen so far may
	// have lost requests in between.
	if len(reqs) >= clearancetest.DefaultRequestHistory && !l.newest.IsZero() && reqs[0].Time.After(l.newest) {
		l.overflow = true
	}
	for _, r := range reqs {
		l.seen[strconv.FormatInt(r.Time.UnixNano(), 10)+" "+r.ClientID] = r.Time
		if r.Time.After(l.newest) {
			l.newest = r.Time
		}
	}
}

// perSecond counts the requests in each second of [from, to).
func (l *requestLog) perSecond(from, to time.Time) []int {
	n := int(to.Sub(from) / time.Second)
	if n <= 0 {
		return nil
	}
	counts := make([]int, n)
	for _, t := range l.seen {
		if i := int(t.Sub(from) / time.Second); !t.Before(from) && i < n {
			counts[i]++
		}
	}
	return counts
}

func (b *bench) runSoak(ctx context.Context, faultRate float64) {
	name := "soak"
	if faultRate > 0 {
		name = fmt.Sprintf("soak-faults%.0f", faultRate*100)
	}
	sr := &SoakResult{N: b.cfg.SoakN, TokenTTL: b.cfg.SoakTTL, Duration: b.cfg.SoakDuration, FaultRate: faultRate, LoadAvg: loadAvg()}
	b.res.Soak = append(b.res.Soak, sr)
	if err := b.soak(ctx, name, sr); err != nil {
		sr.Error = err.Error()
		b.fail(name, err)
	}
	sr.LoadAvgEnd = loadAvg()
}

func (b *bench) soak(ctx context.Context, name string, sr *SoakResult) error {
	e, err := b.startEnv(ctx, name, sr.TokenTTL.D())
	if err != nil {
		return err
	}
	defer e.stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	files, err := e.connectionFiles(ctx, sr.N)
	if err != nil {
		return err
	}
	if sr.FaultRate > 0 {
		if err := e.emu.addFault(ctx, clearancetest.FaultServerError(503).WithProbability(sr.FaultRate)); err != nil {
			return err
		}
	}
	if _, err := e.startManager(); err != nil {
		return err
	}
	const ns = "soak"
	if err := e.createNamespace(ctx, ns); err != nil {
		return err
	}
	tr, err := e.startTracker(ctx, ns, sr.N)
	if err != nil {
		return err
	}

	// The poller: once a second, every stored token against the clock; every
	// other second, the emulator's recent-request history, from which the
	// renewal rate is counted per second of emulator time (exact, unlike
	// differences of counters sampled at jittery moments). Bounded by the
	// longest the soak can take.
	var (
		mu      sync.Mutex
		history = newRequestLog()
		pollErr error
	)
	stopPoll := make(chan struct{})
	var wg sync.WaitGroup
	maxTicks := int((b.cfg.ReadyTime.D() + sr.Duration.D() + 10*time.Minute) / time.Second)
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		minLeft := time.Duration(1<<63 - 1)
		defer func() { sr.MinRemainingSeconds = minLeft.Seconds() }()
		for i := range maxTicks {
			select {
			case <-stopPoll:
				return
			case <-ctx.Done():
				return
			case now := <-tick.C:
				expired, sampled, left := tr.freshness(now)
				var reqs []clearancetest.Request
				var err error
				if i%2 == 0 {
					reqs, err = e.emu.requests(ctx)
				}
				mu.Lock()
				sr.Samples += sampled
				sr.ExpiredSamples += expired
				if sampled > 0 {
					minLeft = min(minLeft, left)
				}
				if err != nil {
					pollErr = err
				}
				history.add(reqs)
				mu.Unlock()
			}
		}
	})
	defer func() {
		select {
		case <-stopPoll:
		default:
			close(stopPoll)
		}
		wg.Wait()
	}()

	b.logf("[%s] creating %d credentials (token TTL %s, %.0f%% of token requests failing)", e.name, sr.N, sr.TokenTTL, sr.FaultRate*100)
	start := time.Now()
	if err := parallel(ctx, sr.N, b.cfg.Concurrency, func(ctx context.Context, i int) error {
		_, err := createInputs(ctx, e.client, ns, i, files[i])
		return err
	}); err != nil {
		return err
	}
	last, err := tr.wait(ctx, b.cfg.ReadyTime.D())
	if err != nil {
		return fmt.Errorf("%w; %s", err, e.statusSummary(ctx, ns))
	}
	sr.ReadySeconds = last.Sub(start).Seconds()

	b.logf("[%s] all Ready after %.1fs; soaking for %s", e.name, sr.ReadySeconds, sr.Duration)
	before, err := e.snapshot(ctx)
	if err != nil {
		return err
	}
	_, _, tokens0 := tr.counters()
	stopProfile := e.profileCPU(ctx, "soak")
	if err := sleep(ctx, sr.Duration.D()); err != nil {
		stopProfile()
		return err
	}
	after, err := e.snapshot(ctx)
	stopProfile()
	if err != nil {
		return err
	}
	_, _, tokens1 := tr.counters()
	overruns, longest := tr.expiryOverruns(time.Now())
	sr.Overruns, sr.MaxOverrunSeconds = overruns, longest.Seconds()
	close(stopPoll)
	wg.Wait()
	reqs, err := e.emu.requests(ctx)
	if err != nil {
		return err
	}
	history.add(reqs)
	if pollErr != nil {
		return fmt.Errorf("poller: %w", pollErr)
	}

	u := before.to(after)
	sr.Usage = u
	sr.TokenRequests = u.TokenRequests
	sr.TokensStored = tokens1 - tokens0
	window := u.Seconds
	sr.RequestsPerTokenFloor = 1 / (1 - sr.FaultRate)
	if sr.TokensStored > 0 {
		sr.RequestsPerToken = float64(sr.TokenRequests) / float64(sr.TokensStored)
	}
	ttl := sr.TokenTTL.D().Seconds()
	sr.RequestsPerCredentialPerTTL = float64(sr.TokenRequests) / float64(sr.N) / (window / ttl)
	sr.PolicyRequestsPerTTL = ttl / policyInterval(sr.TokenTTL.D()).Seconds() / (1 - sr.FaultRate)
	sr.MeanPerSecond = float64(sr.TokenRequests) / window
	sr.PolicyPerSecond = float64(sr.N) / policyInterval(sr.TokenTTL.D()).Seconds() / (1 - sr.FaultRate)
	sr.ManagerCPUSeconds = u.CPUSeconds["manager"]
	if sr.TokenRequests > 0 {
		sr.CPUPer1000Requests = sr.ManagerCPUSeconds / float64(sr.TokenRequests) * 1000
	}
	steadyFrom := before.at.Add(sr.TokenTTL.D())
	for i, n := range history.perSecond(before.at, after.at) {
		r := float64(n)
		sr.RatePerSecond = append(sr.RatePerSecond, r)
		sr.MaxPerSecond = max(sr.MaxPerSecond, r)
		if !before.at.Add(time.Duration(i) * time.Second).Before(steadyFrom) {
			sr.MaxPerSecondSteady = max(sr.MaxPerSecondSteady, r)
		}
	}
	if history.overflow {
		sr.Note = "the emulator's request history overflowed between polls: the largest burst is a lower bound"
	}
	b.logf("[%s] %d token requests, %d tokens stored (%.3f per token), %.2f per credential per TTL; %d of %d samples expired, %d tokens outlived their expiresAt; max %.0f req/s (mean %.1f)",
		e.name, sr.TokenRequests, sr.TokensStored, sr.RequestsPerToken, sr.RequestsPerCredentialPerTTL, sr.ExpiredSamples, sr.Samples, sr.Overruns, sr.MaxPerSecond, sr.MeanPerSecond)
	return nil
}
