// Command bench measures the operator's performance, each figure side by side
// with a floor measured in the same run:
//
//	make bench                                  # full run
//	make bench-quick                            # N = 200, one-minute soaks
//	make bench BENCH_ARGS="-only=ready -n=1000"
//	go run ./hack/bench -only=memory -memory-n=10000 -profile
//
// Everything is hermetic and on loopback: an envtest control plane
// (kube-apiserver and etcd from bin/k8s), the STS emulator (hack/sts-emulator)
// and the manager (this repository's main package) run as separate processes,
// so their memory and CPU are their own; the load driver, the watches that
// observe progress and the floor run in this process. Each measurement starts
// a fresh environment.
//
// Measurements (-only selects them; by default all run):
//
//   - ready: N credentials (each with its own connection Secret and
//     ServicePrincipalId) are created by -concurrency workers as fast as the
//     apiserver accepts them; T_op runs from the first create until watches
//     have seen every credential Ready and every target Secret holding a
//     token. T_floor is measured first, in the same control plane: the same
//     driver creates the same objects, and as many floor workers as the
//     manager has reconcile workers take each credential as soon as it is
//     created and do only what any operator must — parse the connection file,
//     one token request to the same emulator with the operator's STS client,
//     one Secret create, one status update — observed by the same watches.
//     R = T_op / T_floor.
//   - memory: VmHWM and the median VmRSS (after settling) of the manager with
//     N credentials Ready, then after adding unrelated Secrets; the idle
//     manager's VmRSS is the floor.
//   - soak: N credentials renewing short-lived tokens for a while, without
//     and then with a share of token requests failing with 503. A poller
//     checks every stored token once a second against its expiresAt (through
//     a watch-fed view); the emulator's request history gives requests per
//     second; token requests per stored token have the floor 1/(1-fault rate).
//   - restart: with N valid tokens stored the manager is restarted; token
//     requests during the window after start (want 0), and the time until the
//     new manager has logged "stored token is current" for every credential.
//   - mint: BenchmarkMint of internal/clearance; with the soak's manager CPU
//     per 1,000 token requests it gives the per-mint cost.
//   - cluster: one ClusterClearanceCredential selecting N namespaces (-cluster-n):
//     the time until all hold its token; then namespaces labelled one by
//     one, each timed from the label until its Secret holds the token, next
//     to the floor of the harness copying the Secret itself (one GET, one
//     create), with the token requests meanwhile (want 0); then token
//     requests per renewal over two renewals of short-lived tokens (want 1).
//
// A Markdown table is printed at the end; the full results (machine, versions,
// load averages, parameters, CPU seconds per process, apiserver requests by
// verb and resource) are written as JSON to bench/results/<UTC time>.json with
// the Markdown next to it, and the component logs (and, with -profile, CPU and
// heap profiles of the manager and CPU profiles of kube-apiserver) in
// bench/results/<UTC time>-logs/. The machine may be shared: compare figures
// only within one run, and look at the recorded load averages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Measurement names accepted by -only.
const (
	phaseReady   = "ready"
	phaseMemory  = "memory"
	phaseSoak    = "soak"
	phaseRestart = "restart"
	phaseMint    = "mint"
	phaseCluster = "cluster"
)

var allPhases = []string{phaseReady, phaseMemory, phaseSoak, phaseRestart, phaseMint, phaseCluster}

// config holds the parameters of a run; flags override the mode's defaults.
type config struct {
	Quick       bool     `json:"quick"`
	Only        []string `json:"only"`
	ReadyN      []int    `json:"readyN"`
	Concurrency int      `json:"concurrency"`
	TokenTTL    Duration `json:"tokenTTL"`
	ReadyTime   Duration `json:"readyTimeout"`
	SkipFloor   bool     `json:"skipFloor"`
	Repeat      int      `json:"repeat"`

	MemoryN         int      `json:"memoryN"`
	UnrelatedN      int      `json:"unrelatedSecrets"`
	UnrelatedSize   int      `json:"unrelatedSecretBytes"`
	MemorySettle    Duration `json:"memorySettle"`
	MemoryWindow    Duration `json:"memoryWindow"`
	SoakN           int      `json:"soakN"`
	SoakTTL         Duration `json:"soakTokenTTL"`
	SoakDuration    Duration `json:"soakDuration"`
	SoakFaultRate   float64  `json:"soakFaultRate"`
	RestartN        int      `json:"restartN"`
	RestartWindow   Duration `json:"restartWindow"`
	MintBenchTime   string   `json:"mintBenchTime"`
	ClusterN        int      `json:"clusterN"`
	ClusterTTL      Duration `json:"clusterTokenTTL"`
	KeyPool         int      `json:"keyPool"`
	EtcdDir         string   `json:"etcdDataDirParent,omitempty"`
	Profile         bool     `json:"profile"`
	ManagerArgs     []string `json:"managerArgs,omitempty"`
	MemoryLimit     string   `json:"managerMemoryLimit,omitempty"`
	memoryLimit     int64
	Out             string   `json:"-"`
	Timeout         Duration `json:"timeout"`
	ProfileInterval Duration `json:"-"`
}

func (c *config) want(phase string) bool { return slices.Contains(c.Only, phase) }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout.D())
	defer cancel()

	b, err := newBench(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer b.close()
	b.runAll(ctx)
	if err := b.writeResults(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if len(b.res.Errors) > 0 {
		return 1
	}
	return 0
}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	quick := fs.Bool("quick", envBool("BENCH_QUICK"), "minute-scale run: N = 200 everywhere, 1-minute soaks with 30 s tokens (env BENCH_QUICK)")
	only := fs.String("only", envOr("BENCH_ONLY", strings.Join(allPhases, ",")), "comma-separated measurements to run: "+strings.Join(allPhases, ",")+" (env BENCH_ONLY)")
	readyN := fs.String("n", os.Getenv("BENCH_N"), "comma-separated credential counts for time to Ready (default 1000,10000; quick 200) (env BENCH_N)")
	conc := fs.Int("concurrency", envInt("BENCH_CONCURRENCY", 16), "load-driver workers, floor workers and the manager's --max-concurrent-reconciles (env BENCH_CONCURRENCY)")
	ttl := fs.Duration("token-ttl", envDuration("BENCH_TOKEN_TTL", time.Hour), "emulator token lifetime for the time-to-Ready, memory and restart measurements (env BENCH_TOKEN_TTL)")
	readyTimeout := fs.Duration("ready-timeout", 30*time.Minute, "longest wait for all credentials to become Ready")
	skipFloor := fs.Bool("skip-floor", false, "do not measure the floor of time to Ready")
	repeat := fs.Int("repeat", envInt("BENCH_REPEAT", 0), "floor-then-operator pairs per N for time to Ready; the pair with the median R is reported (default 5 up to N = 2,000, 3 above) (env BENCH_REPEAT)")
	memN := fs.Int("memory-n", envInt("BENCH_MEMORY_N", 0), "credentials for the memory measurement (default 10000; quick 200) (env BENCH_MEMORY_N)")
	unrelated := fs.Int("unrelated-secrets", -1, "unrelated Secrets added in the memory measurement (default 10000; quick 2000)")
	unrelatedSize := fs.Int("unrelated-secret-bytes", 10*1024, "data size of each unrelated Secret")
	memSettle := fs.Duration("memory-settle", 0, "wait before sampling steady RSS (default 30s; quick 10s)")
	memWindow := fs.Duration("memory-window", 10*time.Second, "steady RSS is the median of one sample a second over this window")
	soakN := fs.Int("soak-n", envInt("BENCH_SOAK_N", 200), "credentials in the soak (env BENCH_SOAK_N)")
	soakTTL := fs.Duration("soak-token-ttl", envDuration("BENCH_SOAK_TOKEN_TTL", 0), "emulator token lifetime in the soak (default 60s; quick 30s) (env BENCH_SOAK_TOKEN_TTL)")
	soakDur := fs.Duration("soak-duration", envDuration("BENCH_SOAK_DURATION", 0), "length of each soak after all credentials are Ready (default 10m; quick 1m) (env BENCH_SOAK_DURATION)")
	soakFault := fs.Float64("soak-fault-rate", 0.2, "fraction of token requests failed with 503 in the second soak (0 skips it)")
	restartN := fs.Int("restart-n", 0, "credentials for the restart measurement (default 1000; quick 200)")
	restartWin := fs.Duration("restart-window", 0, "observation window after the manager restarts (default 60s; quick 30s)")
	mintBenchTime := fs.String("mint-benchtime", "2s", "-benchtime for BenchmarkMint")
	clusterN := fs.Int("cluster-n", 0, "namespaces a ClusterClearanceCredential selects in the cluster measurement (default 1000; quick 200)")
	clusterTTL := fs.Duration("cluster-token-ttl", 30*time.Second, "emulator token lifetime in the cluster measurement (two renewals are counted)")
	keyPool := fs.Int("key-pool", 8, "distinct RSA keys behind the connection files (each file has its own ServicePrincipalId)")
	etcdDir := fs.String("etcd-dir", os.Getenv("BENCH_ETCD_DIR"), "parent directory for etcd's data (default: the system temp dir; /dev/shm takes disk latency out) (env BENCH_ETCD_DIR)")
	profile := fs.Bool("profile", envBool("BENCH_PROFILE"), "build the manager with a pprof listener (via a build overlay, the source is untouched) and save CPU and heap profiles with the logs; slightly perturbs the figures (env BENCH_PROFILE)")
	managerArgs := fs.String("manager-args", os.Getenv("BENCH_MANAGER_ARGS"), "extra space-separated manager flags (env BENCH_MANAGER_ARGS)")
	memLimit := fs.String("manager-memory-limit", envOr("BENCH_MANAGER_MEMORY_LIMIT", defaultManagerMemoryLimit),
		"the manager's container memory limit, passed as MEMORY_LIMIT_BYTES as the chart does (the Go memory limit is 90% of it); 0 runs without one (env BENCH_MANAGER_MEMORY_LIMIT)")
	out := fs.String("out", "", "results directory (default <repo>/bench/results)")
	timeout := fs.Duration("timeout", 4*time.Hour, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c := &config{
		Quick: *quick, Concurrency: *conc, TokenTTL: Duration(*ttl), ReadyTime: Duration(*readyTimeout), SkipFloor: *skipFloor, Repeat: *repeat,
		MemoryN: *memN, UnrelatedN: *unrelated, UnrelatedSize: *unrelatedSize, MemorySettle: Duration(*memSettle),
		MemoryWindow: Duration(*memWindow), SoakN: *soakN, SoakTTL: Duration(*soakTTL), SoakDuration: Duration(*soakDur),
		SoakFaultRate: *soakFault, RestartN: *restartN, RestartWindow: Duration(*restartWin), MintBenchTime: *mintBenchTime,
		ClusterN: *clusterN, ClusterTTL: Duration(*clusterTTL),
		KeyPool: *keyPool, EtcdDir: *etcdDir, Profile: *profile, ManagerArgs: strings.Fields(*managerArgs), MemoryLimit: *memLimit, Out: *out,
		Timeout: Duration(*timeout), ProfileInterval: Duration(5 * time.Second),
	}
	for p := range strings.SplitSeq(*only, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(allPhases, p) {
			return nil, fmt.Errorf("-only: unknown measurement %q (want %s)", p, strings.Join(allPhases, ","))
		}
		if !slices.Contains(c.Only, p) {
			c.Only = append(c.Only, p)
		}
	}
	if *readyN != "" {
		for s := range strings.SplitSeq(*readyN, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("-n: %q is not a positive count", s)
			}
			c.ReadyN = append(c.ReadyN, n)
		}
	}
	limit, err := resource.ParseQuantity(*memLimit)
	if err != nil || limit.Sign() < 0 {
		return nil, fmt.Errorf("-manager-memory-limit: %q is not a memory size such as 160Mi", *memLimit)
	}
	if c.memoryLimit = limit.Value(); c.memoryLimit == 0 {
		c.MemoryLimit = ""
	}
	c.applyDefaults()
	return c, c.validate()
}

// defaultManagerMemoryLimit is the container memory limit the manager runs
// under in the bench: the sizing the README recommends for 10,000
// credentials, so the memory measurement shows what such an install gets.
const defaultManagerMemoryLimit = "112Mi"

// applyDefaults fills what the flags left at zero from the mode.
func (c *config) applyDefaults() {
	pick := func(quick, full int) int {
		if c.Quick {
			return quick
		}
		return full
	}
	pickD := func(quick, full time.Duration) Duration {
		if c.Quick {
			return Duration(quick)
		}
		return Duration(full)
	}
	if len(c.ReadyN) == 0 {
		c.ReadyN = []int{1000, 10000}
		if c.Quick {
			c.ReadyN = []int{200}
		}
	}
	if c.MemoryN == 0 {
		c.MemoryN = pick(200, 10000)
	}
	if c.UnrelatedN < 0 {
		c.UnrelatedN = pick(2000, 10000)
	}
	if c.MemorySettle == 0 {
		c.MemorySettle = pickD(10*time.Second, 30*time.Second)
	}
	if c.SoakTTL == 0 {
		c.SoakTTL = pickD(30*time.Second, time.Minute)
	}
	if c.SoakDuration == 0 {
		c.SoakDuration = pickD(time.Minute, 10*time.Minute)
	}
	if c.RestartN == 0 {
		c.RestartN = pick(200, 1000)
	}
	if c.RestartWindow == 0 {
		c.RestartWindow = pickD(30*time.Second, time.Minute)
	}
	if c.ClusterN == 0 {
		c.ClusterN = pick(200, 1000)
	}
}

// repeatsFor is how many floor-then-operator pairs time to Ready runs for n
// credentials. A pair's R spreads widely on a shared VM whose speed drifts
// between runs a minute apart, so small N, where a pair takes well under a
// minute, gets more pairs for a steadier median.
func (c *config) repeatsFor(n int) int {
	switch {
	case c.Repeat > 0:
		return c.Repeat
	case n <= 2000:
		return 5
	default:
		return 3
	}
}

func (c *config) validate() error {
	const maxN = 100_000 // the emulator's replay cache and the harness's memory are sized for this
	switch {
	case len(c.Only) == 0:
		return errors.New("-only selects nothing")
	case c.Concurrency < 1 || c.Concurrency > 1000:
		return errors.New("-concurrency must be in [1, 1000]")
	case c.Repeat < 0 || c.Repeat > 20:
		return errors.New("-repeat must be in [1, 20] (0 picks by N)")
	case c.MemoryN < 1 || c.MemoryN > maxN, c.SoakN < 1 || c.SoakN > maxN, c.RestartN < 1 || c.RestartN > maxN, c.ClusterN < 1 || c.ClusterN > maxN:
		return fmt.Errorf("credential counts must be in [1, %d]", maxN)
	case c.UnrelatedN > maxN || c.UnrelatedSize < 0 || c.UnrelatedSize > 512*1024:
		return errors.New("-unrelated-secrets must be at most 100000 and -unrelated-secret-bytes at most 512 KiB")
	case c.SoakFaultRate < 0 || c.SoakFaultRate >= 1:
		return errors.New("-soak-fault-rate must be in [0, 1)")
	case c.SoakTTL.D() < 10*time.Second:
		return errors.New("-soak-token-ttl must be at least 10s")
	case c.KeyPool < 1 || c.KeyPool > 256:
		return errors.New("-key-pool must be in [1, 256]")
	case c.MemoryWindow.D() < time.Second:
		return errors.New("-memory-window must be at least 1s")
	case c.ClusterTTL.D() < 10*time.Second:
		return errors.New("-cluster-token-ttl must be at least 10s")
	}
	for _, n := range c.ReadyN {
		if n > maxN {
			return fmt.Errorf("-n: at most %d credentials", maxN)
		}
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envBool(name string) bool {
	v, _ := strconv.ParseBool(os.Getenv(name))
	return v
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// Duration is a time.Duration that reads and writes as a Go duration string in JSON.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as a string such as "1m0s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(time.Duration(d).String())), nil
}

func (d Duration) String() string { return time.Duration(d).String() }
