package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// MintResult is BenchmarkMint of internal/clearance: one token request end to
// end (RS256 assertion signing plus a keep-alive loopback HTTP exchange with
// an in-process STS that does not verify).
type MintResult struct {
	Name        string     `json:"name"`
	Iterations  int64      `json:"iterations"`
	NsPerOp     float64    `json:"nsPerOp"`
	BytesPerOp  int64      `json:"bytesPerOp"`
	AllocsPerOp int64      `json:"allocsPerOp"`
	Command     string     `json:"command"`
	Output      string     `json:"output"`
	LoadAvg     [3]float64 `json:"loadAvg"`
}

func (b *bench) runMint(ctx context.Context) {
	mr := &MintResult{LoadAvg: loadAvg()}
	b.res.Mint = mr
	args := []string{"test", "-run", "XXX", "-bench", "^BenchmarkMint$", "-benchmem", "-benchtime", b.cfg.MintBenchTime, "-count", "1", "./internal/clearance/"}
	mr.Command = "go " + strings.Join(args, " ")
	b.logf("mint: %s", mr.Command)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...) //nolint:gosec // fixed tool, harness-controlled arguments
	cmd.Dir = testutil.RepoRoot()
	out, err := cmd.CombinedOutput()
	mr.Output = string(out)
	_ = os.WriteFile(filepath.Join(b.logs, "mint-bench.txt"), out, 0o600) //nolint:gosec // the run's logs directory
	if err != nil {
		b.fail("mint", fmt.Errorf("%s: %w\n%s", mr.Command, err, out))
		return
	}
	if err := parseBenchLine(string(out), mr); err != nil {
		b.fail("mint", err)
	}
}

// parseBenchLine reads "BenchmarkMint-2  1234  956789 ns/op  12345 B/op  123 allocs/op".
func parseBenchLine(out string, mr *MintResult) error {
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkMint") {
			continue
		}
		mr.Name = f[0]
		mr.Iterations, _ = strconv.ParseInt(f[1], 10, 64)
		for i := 2; i+1 < len(f); i += 2 {
			switch f[i+1] {
			case "ns/op":
				mr.NsPerOp, _ = strconv.ParseFloat(f[i], 64)
			case "B/op":
				mr.BytesPerOp, _ = strconv.ParseInt(f[i], 10, 64)
			case "allocs/op":
				mr.AllocsPerOp, _ = strconv.ParseInt(f[i], 10, 64)
			}
		}
		if mr.NsPerOp == 0 {
			return fmt.Errorf("mint: cannot read %q", line)
		}
		return nil
	}
	return fmt.Errorf("mint: no BenchmarkMint line in the output")
}
