package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// Results is everything a run measured, written as JSON.
type Results struct {
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Command  string         `json:"command"`
	Config   *config        `json:"config"`
	Machine  Machine        `json:"machine"`
	Versions Versions       `json:"versions"`
	Ready    []*ReadyResult `json:"ready,omitempty"`
	Memory   *MemoryResult  `json:"memory,omitempty"`
	Soak     []*SoakResult  `json:"soak,omitempty"`
	Restart  *RestartResult `json:"restart,omitempty"`
	Mint     *MintResult    `json:"mint,omitempty"`
	Cluster  *ClusterResult `json:"cluster,omitempty"`
	Errors   []string       `json:"errors,omitempty"`
	Logs     string         `json:"logs"`
}

// ReadyResult is time to Ready for N credentials, with its floor.
type ReadyResult struct {
	N           int `json:"n"`
	Concurrency int `json:"concurrency"`
	// The repeat with the median R, its fields at the top level of the JSON.
	ReadyRepeat
	Repeats []ReadyRepeat `json:"repeats"`
	// SpeedNormalizedR is R with the machine's speed drift taken out: each
	// run's time is divided by the STS emulator's CPU seconds in that run (the
	// emulator does the same work, N token requests, in every run, so its CPU
	// time gauges how fast the shared machine was), and the ratio is taken of
	// the means over all pairs. A diagnostic: the verdict uses R.
	SpeedNormalizedR float64    `json:"speedNormalizedR,omitempty"`
	LoadAvg          [3]float64 `json:"loadAvg"`
	LoadAvgEnd       [3]float64 `json:"loadAvgEnd"`
	Error            string     `json:"error,omitempty"`
}

// ReadyRepeat is one floor-then-operator pair.
type ReadyRepeat struct {
	Floor *timedRun `json:"floor,omitempty"`
	Op    *timedRun `json:"operator,omitempty"`
	// R = Op.Seconds / Floor.Seconds.
	R float64 `json:"r,omitempty"`
	// FloorRequired is the floor plus the connection Secret read and the
	// event the issues require; RRequired = Op.Seconds / FloorRequired.Seconds.
	FloorRequired  *timedRun `json:"floorWithRequiredWork,omitempty"`
	RRequired      float64   `json:"rAgainstFloorWithRequiredWork,omitempty"`
	ManagerPeakRSS uint64    `json:"managerPeakRSSBytes,omitempty"`
}

// summarize picks the repeat with the median R (the median operator time without a floor).
func (r *ReadyResult) summarize() {
	if len(r.Repeats) == 0 {
		return
	}
	reps := slices.Clone(r.Repeats)
	slices.SortFunc(reps, func(a, b ReadyRepeat) int {
		if a.R != b.R {
			return cmp.Compare(a.R, b.R)
		}
		return cmp.Compare(a.Op.Seconds, b.Op.Seconds)
	})
	r.ReadyRepeat = reps[(len(reps)-1)/2]
	r.SpeedNormalizedR = speedNormalizedR(r.Repeats)
}

// speedNormalizedR is mean(T_op / emulator CPU) / mean(T_floor / emulator CPU)
// over the pairs; 0 when a run lacks either figure.
func speedNormalizedR(reps []ReadyRepeat) float64 {
	perEmulatorSecond := func(run *timedRun) float64 {
		if run == nil || run.Usage.CPUSeconds[emulatorComponent] <= 0 {
			return 0
		}
		return run.Seconds / run.Usage.CPUSeconds[emulatorComponent]
	}
	var op, floor float64
	for _, rep := range reps {
		o, f := perEmulatorSecond(rep.Op), perEmulatorSecond(rep.Floor)
		if o == 0 || f == 0 {
			return 0
		}
		op, floor = op+o, floor+f
	}
	if floor == 0 {
		return 0
	}
	return op / floor
}

// Machine describes where the run happened.
type Machine struct {
	CPUs        int    `json:"cpus"`
	CPUModel    string `json:"cpuModel"`
	MemoryBytes uint64 `json:"memoryBytes"`
	Kernel      string `json:"kernel"`
	GOMAXPROCS  int    `json:"gomaxprocs"`
}

// Versions of what was measured.
type Versions struct {
	Go                string `json:"go"`
	Kubernetes        string `json:"kubernetes"`
	Etcd              string `json:"etcd"`
	ControllerRuntime string `json:"controllerRuntime"`
	ClientGo          string `json:"clientGo"`
	GitCommit         string `json:"gitCommit"`
	GitDirty          bool   `json:"gitDirty"`
}

func newResults(cfg *config) *Results {
	return &Results{
		Started: time.Now().UTC(),
		Command: strings.TrimSpace("go run ./hack/bench " + strings.Join(os.Args[1:], " ")),
		Config:  cfg,
		Machine: machine(),
	}
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 3 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				m.MemoryBytes = kb * 1024
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	return m
}

func collectVersions(ctx context.Context) Versions {
	v := Versions{Go: runtime.Version()}
	v.Kubernetes, _ = testutil.KubeVersion()
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "sigs.k8s.io/controller-runtime":
				v.ControllerRuntime = d.Version
			case "k8s.io/client-go":
				v.ClientGo = d.Version
			}
		}
	}
	if dir, err := testutil.AssetsDir(); err == nil {
		if out, err := exec.CommandContext(ctx, filepath.Join(dir, "etcd"), "--version").Output(); err == nil { //nolint:gosec // the control plane binary
			for line := range strings.SplitSeq(string(out), "\n") {
				if after, ok := strings.CutPrefix(line, "etcd Version: "); ok {
					v.Etcd = strings.TrimSpace(after)
				}
			}
		}
	}
	git := func(args ...string) string {
		cmd := exec.CommandContext(ctx, "git", args...) //nolint:gosec // fixed tool, fixed arguments
		cmd.Dir = testutil.RepoRoot()
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	v.GitCommit = git("rev-parse", "HEAD")
	v.GitDirty = git("status", "--porcelain", "--untracked-files=no") != ""
	return v
}

func loadAvg() [3]float64 {
	la, _ := testutil.LoadAverage()
	return la
}

func (b *bench) fail(what string, err error) {
	msg := fmt.Sprintf("%s: %v", what, err)
	b.logf("ERROR %s", msg)
	b.res.Errors = append(b.res.Errors, msg)
}

// runAll runs the selected measurements, sharing environments where the
// same credential count serves several of them.
func (b *bench) runAll(ctx context.Context) {
	c := b.cfg
	memoryDone, restartDone := !c.want(phaseMemory), !c.want(phaseRestart)
	if c.want(phaseReady) {
		for _, n := range c.ReadyN {
			if ctx.Err() != nil {
				break
			}
			p := readyEnvPlan{n: n, ready: true}
			if !memoryDone && n == c.MemoryN {
				p.memory, memoryDone = true, true
			} else if !restartDone && n == c.RestartN {
				// Not together with memory: the restart would reset the
				// manager's peak, and the unrelated Secrets would weigh on it.
				p.restart, restartDone = true, true
			}
			b.runReadyEnv(ctx, p)
		}
	}
	if !memoryDone && ctx.Err() == nil {
		b.runReadyEnv(ctx, readyEnvPlan{n: c.MemoryN, memory: true})
	}
	if !restartDone && ctx.Err() == nil {
		b.runRestartEnv(ctx)
	}
	if c.want(phaseSoak) && ctx.Err() == nil {
		b.runSoak(ctx, 0)
		if c.SoakFaultRate > 0 && ctx.Err() == nil {
			b.runSoak(ctx, c.SoakFaultRate)
		}
	}
	if c.want(phaseMint) && ctx.Err() == nil {
		b.runMint(ctx)
	}
	if c.want(phaseCluster) && ctx.Err() == nil {
		b.runCluster(ctx)
	}
	if err := ctx.Err(); err != nil {
		b.fail("run", fmt.Errorf("interrupted: %w", err))
	}
}

// writeResults writes the JSON and the Markdown and prints the table.
func (b *bench) writeResults() error {
	b.res.Finished = time.Now().UTC()
	b.res.Logs = b.logs
	if err := os.MkdirAll(b.cfg.Out, 0o750); err != nil { //nolint:gosec // the results directory the user chose
		return err
	}
	data, err := json.MarshalIndent(b.res, "", "  ")
	if err != nil {
		return err
	}
	jsonPath := filepath.Join(b.cfg.Out, b.stamp+".json")
	if err := os.WriteFile(jsonPath, append(data, '\n'), 0o600); err != nil { //nolint:gosec // the results directory the user chose
		return err
	}
	md := b.res.markdown()
	mdPath := filepath.Join(b.cfg.Out, b.stamp+".md")
	if err := os.WriteFile(mdPath, []byte(md), 0o600); err != nil { //nolint:gosec // the results directory the user chose
		return err
	}
	fmt.Println(md)
	fmt.Printf("Results: %s\n", jsonPath)
	return nil
}
