package testutil

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// BuildBinary builds a package of this repository (e.g. "." for the manager,
// "./hack/sts-emulator") into dir and returns the binary's path.
func BuildBinary(ctx context.Context, pkg, dir, name string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg) //nolint:gosec // fixed tool, test-controlled arguments
	cmd.Dir = RepoRoot()
	// The caller's environment (CGO setting included) is kept so the build
	// shares the build cache with `go test`, instead of recompiling everything.
	cmd.Env = os.Environ()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// WriteKubeconfig writes a kubeconfig for cfg (client certificate or bearer
// token authentication, as envtest users have) and returns its path.
func WriteKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		Impersonate:           cfg.Impersonate.UserName,
		ImpersonateGroups:     cfg.Impersonate.Groups,
	}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "user"}
	kc.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*kc, path)
}

// Process is a child process whose output is kept (and copied to a log file)
// so a program can wait for a line and inspect everything it printed. It is
// for the programs under hack/ (bench, run-local); tests use StartSession.
// Those programs have no Gomega to wait with, and bench starts many
// managers that log heavily, while gexec keeps every session it started,
// with its output, until the process exits.
type Process struct {
	cmd  *exec.Cmd
	out  LogBuffer
	done chan struct{}
	err  error

	mu    sync.Mutex
	lines []string
	wake  chan struct{}
}

// StartProcess starts bin with args; its stdout and stderr are captured and
// also written to logPath when it is not empty.
func StartProcess(bin string, args []string, env []string, logPath string) (*Process, error) {
	p := &Process{done: make(chan struct{}), wake: make(chan struct{})}
	// The process outlives any one request context; Stop and Kill end it.
	p.cmd = exec.CommandContext(context.Background(), bin, args...) //nolint:gosec // test-controlled binary and arguments
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	var sink io.Writer = &p.out
	if logPath != "" {
		f, err := os.Create(logPath) //nolint:gosec // test-controlled path
		if err != nil {
			return nil, err
		}
		sink = io.MultiWriter(&p.out, f)
		defer func() {
			go func() { <-p.done; _ = f.Close() }()
		}()
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		for sc.Scan() {
			line := sc.Text()
			_, _ = sink.Write([]byte(line + "\n"))
			p.mu.Lock()
			p.lines = append(p.lines, line)
			close(p.wake)
			p.wake = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	go func() {
		p.err = p.cmd.Wait()
		_ = pw.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output returns everything the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is the process's exit error, valid after Done is closed.
func (p *Process) ExitErr() error { return p.err }

// WaitForLine waits until a printed line contains substr and returns that line.
func (p *Process) WaitForLine(substr string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	seen := 0
	for {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if strings.Contains(p.lines[seen], substr) {
				line := p.lines[seen]
				p.mu.Unlock()
				return line, nil
			}
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-p.done:
			// Drain lines printed just before exiting.
			p.mu.Lock()
			for ; seen < len(p.lines); seen++ {
				if strings.Contains(p.lines[seen], substr) {
					line := p.lines[seen]
					p.mu.Unlock()
					return line, nil
				}
			}
			p.mu.Unlock()
			return "", fmt.Errorf("process exited (%w) before printing %q", p.err, substr)
		case <-deadline:
			return "", fmt.Errorf("timed out after %s waiting for %q", timeout, substr)
		}
	}
}

// Stop sends SIGTERM and waits up to timeout, then SIGKILLs the process group.
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		var exitErr *exec.ExitError
		if p.err != nil && !errors.As(p.err, &exitErr) {
			return p.err
		}
		return nil
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("process did not stop within %s; killed", timeout)
	}
}

// Kill SIGKILLs the process group and waits for the exit.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}
