package main

import (
	"testing"
	"time"

	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

func TestParseRequestTotals(t *testing.T) {
	metrics := `# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="POST",version="v1"} 12
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="POST",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="clearance.dev",resource="clearancecredentials",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 7
apiserver_request_total_other{verb="GET"} 99
`
	got := parseRequestTotals([]byte(metrics))
	want := map[string]float64{"POST secrets": 15, "PATCH clearancecredentials/status": 7}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestParseBenchLine(t *testing.T) {
	out := "goos: linux\nBenchmarkMint-2   \t    1234\t    956789 ns/op\t   17812 B/op\t     174 allocs/op\nPASS\n"
	var mr MintResult
	if err := parseBenchLine(out, &mr); err != nil {
		t.Fatal(err)
	}
	if mr.Name != "BenchmarkMint-2" || mr.Iterations != 1234 || mr.NsPerOp != 956789 || mr.BytesPerOp != 17812 || mr.AllocsPerOp != 174 {
		t.Fatalf("got %+v", mr)
	}
	if err := parseBenchLine("PASS\n", &mr); err == nil {
		t.Fatal("no benchmark line accepted")
	}
}

func TestPolicyInterval(t *testing.T) {
	// Renewal at 2/3 of the lifetime minus half the 10% jitter on average.
	if got, want := policyInterval(time.Minute).Round(time.Millisecond), 37*time.Second; got != want {
		t.Fatalf("policyInterval(1m) = %s, want %s", got, want)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := parseFlags([]string{"-quick", "-only=ready,soak"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ReadyN) != 1 || c.ReadyN[0] != 200 || c.SoakDuration.D() != time.Minute || c.SoakTTL.D() != 30*time.Second {
		t.Fatalf("quick defaults: %+v", c)
	}
	if c.want(phaseMemory) || !c.want(phaseSoak) {
		t.Fatalf("-only not applied: %v", c.Only)
	}
	if _, err := parseFlags([]string{"-only=nope"}); err == nil {
		t.Fatal("unknown measurement accepted")
	}
}

func TestRequestLog(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int, client string) clearancetest.Request {
		return clearancetest.Request{Time: t0.Add(time.Duration(ms) * time.Millisecond), ClientID: client}
	}
	l := newRequestLog()
	l.add([]clearancetest.Request{at(-10, "a"), at(100, "a"), at(900, "b")})
	l.add([]clearancetest.Request{at(900, "b"), at(1500, "a"), at(2999, "c")}) // overlapping poll
	got := l.perSecond(t0, t0.Add(3*time.Second))
	if want := []int{2, 1, 1}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("perSecond = %v, want %v", got, want)
	}
	if l.overflow {
		t.Fatal("overflow reported for overlapping polls")
	}
	full := make([]clearancetest.Request, clearancetest.DefaultRequestHistory)
	for i := range full {
		full[i] = at(10_000+i, "d")
	}
	l.add(full)
	if !l.overflow {
		t.Fatal("a full history after a gap is not reported")
	}
}

func TestSpeedNormalizedR(t *testing.T) {
	run := func(seconds, emulatorCPU float64) *timedRun {
		return &timedRun{Seconds: seconds, Usage: usage{CPUSeconds: map[string]float64{emulatorComponent: emulatorCPU}}}
	}
	// The second pair ran on a machine twice as slow (R per pair 1.25 and
	// 1.5); per emulator CPU-second the operator took 5 and 6, the floor 4 and 4.
	reps := []ReadyRepeat{
		{Floor: run(8, 2), Op: run(10, 2)},
		{Floor: run(16, 4), Op: run(24, 4)},
	}
	if got, want := speedNormalizedR(reps), (5.0+6.0)/(4.0+4.0); got != want {
		t.Fatalf("speedNormalizedR = %v, want %v", got, want)
	}
	reps = append(reps, ReadyRepeat{Floor: run(8, 0), Op: run(10, 2)})
	if got := speedNormalizedR(reps); got != 0 {
		t.Fatalf("a run without emulator CPU gave %v, want 0", got)
	}
}

func TestRepeatsFor(t *testing.T) {
	c := &config{}
	if c.repeatsFor(1000) != 5 || c.repeatsFor(10000) != 3 {
		t.Fatalf("defaults: %d at 1,000, %d at 10,000", c.repeatsFor(1000), c.repeatsFor(10000))
	}
	c.Repeat = 2
	if c.repeatsFor(1000) != 2 || c.repeatsFor(10000) != 2 {
		t.Fatal("-repeat does not win")
	}
}
