package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Targets from the benchmark issue.
const (
	targetR                = 1.3
	targetRSS              = 150 << 20
	targetUnrelatedDelta   = 10 << 20
	targetRequestsPerToken = 1.05
)

type row struct{ what, result, floor, target, met, load string }

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func la(l [3]float64) string { return fmt.Sprintf("%.2f", l[0]) }

func secs(s float64) string {
	if s >= 100 {
		return fmt.Sprintf("%.0f s", s)
	}
	return fmt.Sprintf("%.2f s", s)
}

func millis(s float64) string { return fmt.Sprintf("%.0f ms", s*1000) }

func signedMiB(b int64) string { return fmt.Sprintf("%+.1f MiB", float64(b)/(1<<20)) }

// markdown renders the summary table and the details behind it.
func (r *Results) markdown() string {
	var rows []row
	for _, rr := range r.Ready {
		what := fmt.Sprintf("Time to Ready, N = %d (concurrency %d)", rr.N, rr.Concurrency)
		if rr.Op == nil {
			rows = append(rows, row{what, "failed: " + rr.Error, "", "R ≤ 1.3", "**no**", la(rr.LoadAvg)})
			continue
		}
		floor, met := "not measured", "n/a"
		if rr.Floor != nil {
			floor = fmt.Sprintf("T_floor %s; **R = %.2f**", secs(rr.Floor.Seconds), rr.R)
			if len(rr.Repeats) > 1 {
				rs := make([]string, len(rr.Repeats))
				for i, rep := range rr.Repeats {
					rs[i] = fmt.Sprintf("%.2f", rep.R)
				}
				floor += fmt.Sprintf(" (median of %d pairs; R = %s)", len(rr.Repeats), strings.Join(rs, ", "))
			}
			if rr.SpeedNormalizedR > 0 {
				floor += fmt.Sprintf("; speed-normalized R = %.2f (times per emulator CPU-second, means over the pairs)", rr.SpeedNormalizedR)
			}
			met = verdict(rr.R <= targetR)
		}
		rows = append(rows, row{what, "T_op " + secs(rr.Op.Seconds), floor, "R ≤ 1.3", met, la(rr.LoadAvg)})
		if rr.FloorRequired != nil {
			rows = append(rows, row{what + ", against the floor plus the required connection Secret read and event",
				"T_op " + secs(rr.Op.Seconds), fmt.Sprintf("T_floor+ %s; R+ = %.2f (same pair)", secs(rr.FloorRequired.Seconds), rr.RRequired),
				"—", "—", la(rr.LoadAvg)})
		}
	}
	if m := r.Memory; m != nil {
		limit := "no memory limit"
		if r.Config.MemoryLimit != "" {
			limit = "container limit " + r.Config.MemoryLimit
		}
		rows = append(rows,
			row{fmt.Sprintf("Manager peak RSS (VmHWM), N = %d Ready, %s", m.N, limit), mib(m.PeakRSS), "idle manager " + mib(m.BaselineRSS), "≤ 150 MiB", verdict(m.PeakRSS <= targetRSS), la(m.LoadAvg)},
			row{fmt.Sprintf("Manager steady RSS (VmRSS), N = %d Ready", m.N), mib(m.SteadyRSS),
				fmt.Sprintf("idle manager %s; %.1f KiB per credential", mib(m.BaselineRSS), float64(int64(m.SteadyRSS)-int64(m.BaselineRSS))/1024/float64(m.N)), //nolint:gosec // RSS values are far below 2^63
				"≤ 150 MiB", verdict(m.SteadyRSS <= targetRSS), la(m.LoadAvg)})
		if m.UnrelatedN > 0 {
			rows = append(rows, row{fmt.Sprintf("+ %d unrelated Secrets of %d KiB: steady RSS", m.UnrelatedN, m.UnrelatedBytes/1024),
				fmt.Sprintf("%s (%s); peak %s", mib(m.SteadyRSSUnrelated), signedMiB(m.UnrelatedDelta()), mib(m.PeakRSSUnrelated)),
				"0 (the manager caches no unrelated Secret data)", "≤ +10 MiB", verdict(m.UnrelatedDelta() <= targetUnrelatedDelta), la(m.LoadAvg)})
		}
	}
	for _, s := range r.Soak {
		tag := fmt.Sprintf("Soak %d creds, TTL %s, %s", s.N, s.TokenTTL, s.Duration)
		if s.FaultRate > 0 {
			tag += fmt.Sprintf(", %.0f%% 503s", s.FaultRate*100)
		}
		if s.Error != "" {
			rows = append(rows, row{tag, "failed: " + s.Error, "", "", "**no**", la(s.LoadAvg)})
			continue
		}
		target, met := "≤ 1.05", verdict(s.RequestsPerToken <= targetRequestsPerToken)
		if s.FaultRate > 0 {
			target, met = "n/a (floor 1/(1-p))", "n/a"
		}
		rows = append(rows,
			row{tag + ": token requests per stored token", fmt.Sprintf("%.3f (%d requests, %d tokens)", s.RequestsPerToken, s.TokenRequests, s.TokensStored),
				fmt.Sprintf("%.3f", s.RequestsPerTokenFloor), target, met, la(s.LoadAvg)},
			row{tag + ": token requests per credential per TTL", fmt.Sprintf("%.3f", s.RequestsPerCredentialPerTTL),
				fmt.Sprintf("renewal policy %.3f", s.PolicyRequestsPerTTL), "—", "—", la(s.LoadAvg)},
			row{tag + ": samples with an expired token", fmt.Sprintf("%d of %d (closest: %.1f s left)", s.ExpiredSamples, s.Samples, s.MinRemainingSeconds),
				"0", "0", verdict(s.ExpiredSamples == 0), la(s.LoadAvg)},
			row{tag + ": tokens left in a Secret past their expiresAt (exact, via watch)", overrun(s), "0", "0", verdict(s.Overruns == 0), la(s.LoadAvg)},
			row{tag + ": largest renewal burst", fmt.Sprintf("%.0f req/s in one second (after the first TTL: %.0f req/s)", s.MaxPerSecond, s.MaxPerSecondSteady),
				fmt.Sprintf("mean %.1f req/s (policy %.1f)", s.MeanPerSecond, s.PolicyPerSecond), "near the mean", "see text", la(s.LoadAvg)},
			row{tag + ": manager CPU per 1,000 token requests", fmt.Sprintf("%.2f s", s.CPUPer1000Requests),
				mintFloor(r.Mint), "—", "—", la(s.LoadAvg)},
		)
	}
	if rs := r.Restart; rs != nil {
		rows = append(rows,
			row{fmt.Sprintf("Restart, N = %d: token requests in %.0f s after start", rs.N, rs.WindowSeconds), fmt.Sprintf("%d", rs.TokenRequests), "0", "0", verdict(rs.TokenRequests == 0), la(rs.LoadAvg)},
			row{fmt.Sprintf("Restart, N = %d: time until all reconciled", rs.N), restartTime(rs),
				fmt.Sprintf("LIST of everything cached: %s", secs(rs.ListFloorSeconds)), "—", "—", la(rs.LoadAvg)},
			row{fmt.Sprintf("Restart, N = %d: writes caused", rs.N), fmt.Sprintf("%d credential, %d Secret updates", rs.CredentialUpdates, rs.SecretUpdates), "0", "—", "—", la(rs.LoadAvg)},
		)
	}
	if c := r.Cluster; c != nil {
		if c.Error != "" {
			rows = append(rows, row{fmt.Sprintf("ClusterClearanceCredential, %d namespaces", c.N), "failed: " + c.Error, "", "", "**no**", la(c.LoadAvg)})
		} else {
			rows = append(rows,
				row{fmt.Sprintf("ClusterClearanceCredential, %d namespaces: time until all hold the token", c.N), secs(c.SecondsToAllWritten), "—", "—", "—", la(c.LoadAvg)},
				row{fmt.Sprintf("ClusterClearanceCredential, %d namespaces: a namespace labelled later, label to token in its Secret", c.N),
					fmt.Sprintf("median %s, max %s (%d namespaces)", millis(median(c.NewNamespaceSeconds)), millis(slices.Max(c.NewNamespaceSeconds)), len(c.NewNamespaceSeconds)),
					fmt.Sprintf("harness GET + create: median %s", millis(median(c.NewNamespaceFloorSeconds))), "< 5 s", verdict(slices.Max(c.NewNamespaceSeconds) < 5), la(c.LoadAvg)},
				row{fmt.Sprintf("ClusterClearanceCredential, %d namespaces: token requests for the labelled namespaces", c.N), fmt.Sprintf("%d", c.TokenRequestsForNewNamespaces), "0", "0", verdict(c.TokenRequestsForNewNamespaces == 0), la(c.LoadAvg)},
				row{fmt.Sprintf("ClusterClearanceCredential, %d namespaces: token requests per renewal (TTL %.0f s)", c.N+clusterLabelled, c.TokenTTLSeconds),
					fmt.Sprintf("%.2f (%d requests, %d renewals; %d of %d written)", c.TokenRequestsPerRenewal, c.RenewalTokenRequests, c.Renewals, c.WrittenAfterRenewals, c.SelectedAfterRenewals),
					"1", "1", verdict(c.TokenRequestsPerRenewal == 1), la(c.LoadAvg)},
			)
		}
	}
	if m := r.Mint; m != nil && m.NsPerOp > 0 {
		rows = append(rows, row{"BenchmarkMint (internal/clearance)", fmt.Sprintf("%.0f µs/op, %d B/op, %d allocs/op", m.NsPerOp/1000, m.BytesPerOp, m.AllocsPerOp),
			"—", "—", "—", la(m.LoadAvg)})
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "## clearance-operator benchmarks — %s\n\n", r.Started.Format(time.RFC3339))
	fmt.Fprintf(&sb, "Machine: %d CPUs (%s), %.1f GiB RAM, Linux %s. Go %s, Kubernetes %s (envtest), etcd %s, controller-runtime %s. Commit %s%s.\n\n",
		r.Machine.CPUs, r.Machine.CPUModel, float64(r.Machine.MemoryBytes)/(1<<30), r.Machine.Kernel,
		r.Versions.Go, r.Versions.Kubernetes, r.Versions.Etcd, r.Versions.ControllerRuntime, short(r.Versions.GitCommit), dirty(r.Versions.GitDirty))
	fmt.Fprintf(&sb, "Command: `%s`\n\n", r.Command)
	sb.WriteString("| Measurement | Result | Floor / reference | Target | Met | Load (1 min) |\n|---|---|---|---|---|---|\n")
	for _, x := range rows {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s |\n", x.what, x.result, x.floor, x.target, x.met, x.load)
	}
	r.details(&sb)
	if len(r.Errors) > 0 {
		sb.WriteString("\nErrors:\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&sb, "- %s\n", e)
		}
	}
	return sb.String()
}

// details breaks time to Ready down by CPU and apiserver requests.
func (r *Results) details(sb *strings.Builder) {
	if len(r.Ready) == 0 && len(r.Soak) == 0 {
		return
	}
	sb.WriteString("\nWhere the time goes (CPU seconds by process; apiserver requests per credential, watches left out):\n\n")
	sb.WriteString("| Run | Wall | CPU: apiserver / etcd / emulator / manager / harness (total) | apiserver requests per credential | token requests |\n|---|---|---|---|---|\n")
	line := func(name string, wall float64, u usage, n int) {
		c := u.CPUSeconds
		fmt.Fprintf(sb, "| %s | %s | %.1f / %.1f / %.1f / %.1f / %.1f (%.1f) | %s | %d |\n", name, secs(wall),
			c["kube-apiserver"], c["etcd"], c[emulatorComponent], c["manager"], c["harness"], u.totalCPU(), u.requestsPer(n), u.TokenRequests)
	}
	for _, rr := range r.Ready {
		if rr.Floor != nil {
			line(fmt.Sprintf("floor N=%d", rr.N), rr.Floor.Seconds, rr.Floor.Usage, rr.N)
		}
		if rr.FloorRequired != nil {
			line(fmt.Sprintf("floor + required read and event N=%d", rr.N), rr.FloorRequired.Seconds, rr.FloorRequired.Usage, rr.N)
		}
		if rr.Op != nil {
			line(fmt.Sprintf("operator N=%d (creates done at %s)", rr.N, secs(rr.Op.CreateSeconds)), rr.Op.Seconds, rr.Op.Usage, rr.N)
		}
	}
	for _, s := range r.Soak {
		if s.Error == "" {
			line(fmt.Sprintf("soak window, %.0f%% faults", s.FaultRate*100), s.Usage.Seconds, s.Usage, s.N)
		}
	}
	for _, s := range r.Soak {
		if s.Note != "" {
			fmt.Fprintf(sb, "\nSoak (%.0f%% faults): %s\n", s.FaultRate*100, s.Note)
		}
	}
	if rs := r.Restart; rs != nil {
		line("restart window", rs.Usage.Seconds, rs.Usage, rs.N)
	}
}

func overrun(s *SoakResult) string {
	if s.Overruns == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (longest %.0f ms)", s.Overruns, s.MaxOverrunSeconds*1000)
}

func restartTime(rs *RestartResult) string {
	if rs.Reconciled < rs.N {
		return fmt.Sprintf("only %d of %d within the window", rs.Reconciled, rs.N)
	}
	return fmt.Sprintf("%s from process start (caches synced, workers started at %s; %.2f reconciles per credential)",
		secs(rs.SecondsToAllReconciled), secs(rs.SecondsToWorkers), float64(rs.ReconcileLines)/float64(rs.N))
}

func mintFloor(m *MintResult) string {
	if m == nil || m.NsPerOp == 0 {
		return "—"
	}
	return fmt.Sprintf("BenchmarkMint × 1,000: %.2f s (client side only)", m.NsPerOp*1000/1e9)
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

func dirty(d bool) string {
	if d {
		return " (with uncommitted changes)"
	}
	return ""
}
