package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

// With -profile the manager is built with a pprof listener (see
// profileOverlay); these fetch profiles from it into the logs directory and
// write a `go tool pprof -top` summary next to them.

// profileCPU collects back-to-back CPU profiles of the running manager and
// of kube-apiserver (whose /debug/pprof the envtest user may read) until the
// returned function is called, which waits for the current ones to end.
func (e *env) profileCPU(ctx context.Context, tag string) (stop func()) {
	if !e.b.cfg.Profile {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var tops []func()
	collect := func(component string, hc *http.Client, base string) {
		var files []string
		wg.Go(func() {
			secs := max(1, int(e.b.cfg.ProfileInterval.D()/time.Second))
			for k := 0; k < 10_000; k++ {
				select {
				case <-done:
					return
				case <-ctx.Done():
					return
				default:
				}
				path := filepath.Join(e.b.logs, fmt.Sprintf("%s-cpu-%s-%s-%03d.pprof", e.name, tag, component, k))
				url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs)
				if err := fetch(ctx, hc, url, path, time.Duration(secs+30)*time.Second); err != nil {
					e.b.logf("[%s] %s CPU profile: %v", e.name, component, err)
					return
				}
				files = append(files, path)
			}
		})
		tops = append(tops, func() {
			if len(files) > 0 {
				e.b.pprofTop(ctx, filepath.Join(e.b.logs, fmt.Sprintf("%s-cpu-%s-%s-top.txt", e.name, tag, component)), []string{"-cum"}, files...)
			}
		})
	}
	if e.mgr != nil && e.mgr.pprofAddr != "" {
		collect("manager", http.DefaultClient, "http://"+e.mgr.pprofAddr)
	}
	if hc, err := rest.HTTPClientFor(e.rest); err == nil {
		collect("apiserver", hc, strings.TrimSuffix(e.rest.Host, "/"))
	}
	return func() {
		close(done)
		wg.Wait()
		for _, top := range tops {
			top()
		}
	}
}

// heapProfile saves the manager's heap profile (after a GC) and returns its path.
func (e *env) heapProfile(ctx context.Context, tag string) string {
	if !e.b.cfg.Profile || e.mgr == nil || e.mgr.pprofAddr == "" {
		return ""
	}
	path := filepath.Join(e.b.logs, fmt.Sprintf("%s-heap-%s.pprof", e.name, tag))
	if err := fetch(ctx, http.DefaultClient, "http://"+e.mgr.pprofAddr+"/debug/pprof/heap?gc=1", path, time.Minute); err != nil {
		e.b.logf("[%s] heap profile: %v", e.name, err)
		return ""
	}
	e.b.pprofTop(ctx, filepath.Join(e.b.logs, fmt.Sprintf("%s-heap-%s-top.txt", e.name, tag)), []string{"-sample_index=inuse_space"}, path)
	return path
}

func fetch(ctx context.Context, hc *http.Client, url, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil) //nolint:gosec // the manager's loopback pprof listener
	if err != nil {
		return err
	}
	resp, err := hc.Do(req) //nolint:gosec // the manager's or the apiserver's loopback pprof endpoint
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	f, err := os.Create(path) //nolint:gosec // harness-controlled path
	if err != nil {
		return err
	}
	_, err = io.Copy(f, io.LimitReader(resp.Body, 512<<20))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// pprofTop writes `go tool pprof -top` of the profiles to out.
func (b *bench) pprofTop(ctx context.Context, out string, extra []string, profiles ...string) {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=" + strconv.Itoa(60)}, extra...)
	args = append(args, profiles...)
	cmd := exec.CommandContext(ctx, "go", args...) //nolint:gosec // fixed tool, harness-controlled arguments
	data, err := cmd.CombinedOutput()
	if err != nil {
		b.logf("go tool pprof: %v", err)
	}
	_ = os.WriteFile(out, data, 0o600) //nolint:gosec // the run's logs directory
}
