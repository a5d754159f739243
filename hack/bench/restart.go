package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// Log messages the restart measurement counts (internal/controller).
const (
	logStoredCurrent = "stored token is current"
	logRequesting    = "requesting a token"
	logWorkers       = "Starting workers"
)

// RestartResult is a manager restart with N valid tokens stored.
//
// "Reconciled again" is observed in the new manager's log: at
// --zap-log-level=2 every reconcile that finds the stored token current logs
// "stored token is current" with the credential's name. Level 2 rather than
// 1 because the manager's production logger samples repeated messages
// (100 a second, then 1 in 100) unless level 2 or more is enabled, which
// would hide most of them. Status is not a usable signal: a reconcile that
// changes nothing writes nothing.
type RestartResult struct {
	N             int     `json:"n"`
	WindowSeconds float64 `json:"windowSeconds"`
	// TokenRequests during the window after the new manager started (want 0).
	TokenRequests int64 `json:"tokenRequests"`
	// Writes the restart caused, seen through watches: credential and target Secret updates.
	CredentialUpdates int `json:"credentialUpdates"`
	SecretUpdates     int `json:"secretUpdates"`
	// From process start: caches synced and workers started; every credential reconciled.
	SecondsToWorkers       float64 `json:"secondsToWorkers"`
	SecondsToAllReconciled float64 `json:"secondsToAllReconciled"`
	Reconciled             int     `json:"reconciledCredentials"`
	// ReconcileLines counts "stored token is current" lines (reconciles that found the token current).
	ReconcileLines int `json:"storedTokenCurrentLines"`
	MintLines      int `json:"requestingTokenLines"`
	// ListFloorSeconds is how long the harness takes to LIST what the manager's
	// caches must load (credentials, managed Secrets, all Secret metadata): a
	// floor for the time until everything is reconciled.
	ListFloorSeconds float64    `json:"listFloorSeconds"`
	Usage            usage      `json:"usage"`
	LoadAvg          [3]float64 `json:"loadAvg"`
	Error            string     `json:"error,omitempty"`
}

func (e *env) measureRestart(ctx context.Context, ns string, n int, tr *tracker) (*RestartResult, error) {
	b := e.b
	rs := &RestartResult{N: n, WindowSeconds: b.cfg.RestartWindow.D().Seconds(), LoadAvg: loadAvg()}
	// Let the follow-up reconciles of the creation finish.
	if err := sleep(ctx, 5*time.Second); err != nil {
		return rs, err
	}
	start := time.Now()
	if err := e.listAll(ctx); err != nil {
		return rs, err
	}
	rs.ListFloorSeconds = time.Since(start).Seconds()

	b.logf("[%s] restart: stopping the manager", e.name)
	if err := e.stopManager(); err != nil {
		return rs, fmt.Errorf("stopping the manager: %w", err)
	}
	cu0, su0, _ := tr.counters()
	before, err := e.snapshot(ctx)
	if err != nil {
		return rs, err
	}
	mgr, err := e.startManager("--zap-log-level=2")
	if err != nil {
		return rs, err
	}
	b.logf("[%s] restart: new manager started; watching for %s", e.name, b.cfg.RestartWindow)
	if err := sleep(ctx, time.Until(mgr.started.Add(b.cfg.RestartWindow.D()))); err != nil {
		return rs, err
	}
	after, err := e.snapshot(ctx)
	if err != nil {
		return rs, err
	}
	cu1, su1, _ := tr.counters()
	rs.Usage = before.to(after)
	rs.TokenRequests = rs.Usage.TokenRequests
	rs.CredentialUpdates, rs.SecretUpdates = cu1-cu0, su1-su0

	seen := map[string]bool{}
	for line := range strings.SplitSeq(mgr.proc.Output(), "\n") {
		var l struct {
			Msg       string    `json:"msg"`
			TS        time.Time `json:"ts"`
			Namespace string    `json:"namespace"`
			Name      string    `json:"name"`
		}
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		switch l.Msg {
		case logWorkers:
			if rs.SecondsToWorkers == 0 {
				rs.SecondsToWorkers = l.TS.Sub(mgr.started).Seconds()
			}
		case logRequesting:
			rs.MintLines++
		case logStoredCurrent:
			rs.ReconcileLines++
			key := l.Namespace + "/" + l.Name
			if l.Namespace == ns && !seen[key] {
				seen[key] = true
				if len(seen) == n {
					rs.SecondsToAllReconciled = l.TS.Sub(mgr.started).Seconds()
				}
			}
		}
	}
	rs.Reconciled = len(seen)
	b.logf("[%s] restart: %d token requests in %s; %d/%d reconciled, all after %.2fs (workers after %.2fs); %d credential and %d Secret writes",
		e.name, rs.TokenRequests, b.cfg.RestartWindow, rs.Reconciled, n, rs.SecondsToAllReconciled, rs.SecondsToWorkers, rs.CredentialUpdates, rs.SecretUpdates)
	if rs.Reconciled < n {
		return rs, fmt.Errorf("only %d of %d credentials logged %q within %s (see %s)", rs.Reconciled, n, logStoredCurrent, b.cfg.RestartWindow, mgr.logPath)
	}
	return rs, nil
}

// listAll lists what the manager's caches load at start.
func (e *env) listAll(ctx context.Context) error {
	creds := &clearancev1alpha1.ClearanceCredentialList{}
	if err := e.client.List(ctx, creds); err != nil {
		return err
	}
	secrets := &corev1.SecretList{}
	if err := e.client.List(ctx, secrets, client.MatchingLabels{clearancev1alpha1.ManagedByLabel: clearancev1alpha1.ManagedByValue}); err != nil {
		return err
	}
	md := &metav1.PartialObjectMetadataList{}
	md.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	return e.client.List(ctx, md)
}

// runRestartEnv measures a restart in an environment of its own.
func (b *bench) runRestartEnv(ctx context.Context) {
	b.runReadyEnv(ctx, readyEnvPlan{n: b.cfg.RestartN, restart: true})
}
