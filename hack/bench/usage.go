package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// emulatorComponent is the STS emulator binary's name, and so its process name.
const emulatorComponent = "sts-emulator"

// Component names, as the kernel knows the processes (comm).
var components = []string{"kube-apiserver", "etcd", emulatorComponent, "manager", "harness"}

// snapshot is what the environment has consumed and done up to a moment:
// CPU time per process, apiserver requests by verb and resource, token
// requests at the emulator.
type snapshot struct {
	at            time.Time
	cpu           map[string]time.Duration
	requests      map[string]float64
	tokenRequests int64
	outcomes      map[string]int64
}

// usage is the difference between two snapshots.
type usage struct {
	Seconds float64 `json:"seconds"`
	// CPUSeconds per component (kube-apiserver, etcd, sts-emulator, manager, harness).
	CPUSeconds map[string]float64 `json:"cpuSeconds"`
	// APIRequests counts apiserver requests by "VERB resource[/subresource]"
	// (from apiserver_request_total; watches count when they start).
	APIRequests map[string]float64 `json:"apiRequests"`
	// TokenRequests and TokenOutcomes are the emulator's counters.
	TokenRequests int64            `json:"tokenRequests"`
	TokenOutcomes map[string]int64 `json:"tokenOutcomes,omitempty"`
}

func (e *env) snapshot(ctx context.Context) (snapshot, error) {
	s := snapshot{at: time.Now(), cpu: map[string]time.Duration{}}
	children, err := testutil.ChildProcesses(os.Getpid())
	if err != nil {
		return s, err
	}
	for _, c := range children {
		s.cpu[c.Comm] += c.CPU
	}
	if self, err := testutil.ReadProcStat(os.Getpid()); err == nil {
		s.cpu["harness"] = self.CPU
	}
	if s.requests, err = apiserverRequests(ctx, e.rest); err != nil {
		return s, err
	}
	st, err := e.emu.stats(ctx)
	if err != nil {
		return s, err
	}
	s.tokenRequests, s.outcomes = st.TokenRequests, st.Outcomes
	return s, nil
}

func (a snapshot) to(b snapshot) usage {
	u := usage{
		Seconds:       b.at.Sub(a.at).Seconds(),
		CPUSeconds:    map[string]float64{},
		APIRequests:   map[string]float64{},
		TokenRequests: b.tokenRequests - a.tokenRequests,
		TokenOutcomes: map[string]int64{},
	}
	for _, c := range components {
		if d := b.cpu[c] - a.cpu[c]; d > 0 {
			u.CPUSeconds[c] = d.Seconds()
		}
	}
	for k, v := range b.requests {
		if d := v - a.requests[k]; d > 0 {
			u.APIRequests[k] = d
		}
	}
	for k, v := range b.outcomes {
		if d := v - a.outcomes[k]; d > 0 {
			u.TokenOutcomes[k] = d
		}
	}
	return u
}

// totalCPU sums the CPU seconds of all components.
func (u usage) totalCPU() float64 {
	var t float64
	for _, v := range u.CPUSeconds {
		t += v
	}
	return t
}

// requestsPer formats the apiserver requests per credential, largest first,
// leaving out the long-running watches.
func (u usage) requestsPer(n int) string {
	type kv struct {
		k string
		v float64
	}
	var list []kv
	for k, v := range u.APIRequests {
		if strings.HasPrefix(k, "WATCH ") || v/float64(n) < 0.05 {
			continue
		}
		list = append(list, kv{k, v})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].v > list[j].v || (list[i].v == list[j].v && list[i].k < list[j].k) })
	parts := make([]string, 0, len(list))
	for _, e := range list {
		parts = append(parts, fmt.Sprintf("%s %.2f", e.k, e.v/float64(n)))
	}
	return strings.Join(parts, ", ")
}

// apiserverRequests scrapes apiserver_request_total from the apiserver's
// /metrics (the envtest user is in system:masters, which may read it) and
// sums it by verb, resource and subresource.
func apiserverRequests(ctx context.Context, cfg *rest.Config) (map[string]float64, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+"/metrics", nil) //nolint:gosec // the envtest apiserver this harness started
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req) //nolint:gosec // the envtest apiserver this harness started
	if err != nil {
		return nil, fmt.Errorf("apiserver metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("apiserver metrics: status %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("apiserver metrics: %w", err)
	}
	return parseRequestTotals(data), nil
}

func parseRequestTotals(data []byte) map[string]float64 {
	const metric = "apiserver_request_total{"
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric) {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		if err != nil {
			continue
		}
		l := parseLabels(line[len(metric):end])
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		out[key] += v
	}
	return out
}

// parseLabels reads `a="x",b="y"` (label values in apiserver_request_total
// never contain quotes).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		name, rest, ok := strings.Cut(s, `="`)
		if !ok {
			break
		}
		value, rest, ok := strings.Cut(rest, `"`)
		if !ok {
			break
		}
		out[strings.TrimPrefix(name, ",")] = value
		s = rest
	}
	return out
}
