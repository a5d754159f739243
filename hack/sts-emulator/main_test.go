package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

func TestNumbered(t *testing.T) {
	tests := []struct {
		path string
		n    int
		want []string
	}{
		{"/tmp/c.json", 1, []string{"/tmp/c.json"}},
		{"/tmp/c.json", 3, []string{"/tmp/c-1.json", "/tmp/c-2.json", "/tmp/c-3.json"}},
		{"conn", 2, []string{"conn-1", "conn-2"}},
	}
	for _, tc := range tests {
		if got := numbered(tc.path, tc.n); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("numbered(%q, %d) = %v", tc.path, tc.n, got)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--count", "0"},
		{"--ca-file", "x.pem"},
		{"extra"},
		{"--token-ttl", "soon"},
		{"--count", "10001", "--write-connection-file", "x"},
	} {
		var stderr bytes.Buffer
		if code := run(args, io.Discard, &stderr); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"--listen", "0.0.0.0:0"}, io.Discard, &stderr); code != 1 {
		t.Errorf("non-loopback listen: exit %d", code)
	}
	if !strings.Contains(stderr.String(), "loopback") {
		t.Errorf("stderr: %s", stderr.String())
	}
}

// buildBinary compiles the emulator into a temporary directory of t.
func buildBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	bin := filepath.Join(t.TempDir(), "sts-emulator")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil { //nolint:gosec // fixed arguments
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// emulator is a running sts-emulator process.
type emulator struct {
	cmd    *exec.Cmd
	base   string
	stderr *lockedBuffer
	lines  chan string
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startEmulator(t *testing.T, bin string, args ...string) *emulator {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...) //nolint:gosec // the binary this test just built
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	e := &emulator{cmd: cmd, stderr: &lockedBuffer{}, lines: make(chan string, 16)}
	cmd.Stderr = e.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			e.lines <- sc.Text()
		}
		close(e.lines)
	}()
	select {
	case line, ok := <-e.lines:
		if !ok {
			t.Fatalf("emulator exited early; stderr:\n%s", e.stderr.String())
		}
		const prefix = "sts-emulator listening on "
		if !strings.HasPrefix(line, prefix) {
			t.Fatalf("first line %q", line)
		}
		e.base = strings.TrimPrefix(line, prefix)
	case <-time.After(60 * time.Second):
		t.Fatalf("no listening line; stderr:\n%s", e.stderr.String())
	}
	return e
}

// stop sends SIGTERM and asserts a clean exit.
func (e *emulator) stop(t *testing.T) {
	t.Helper()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v; stderr:\n%s", err, e.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("emulator did not exit after SIGTERM")
	}
	if code := e.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func mint(t *testing.T, client *http.Client, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path) //nolint:gosec // a file this test asked the emulator to write
	if err != nil {
		t.Fatal(err)
	}
	cf, err := clearancetest.ParseConnectionFile(data)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cf.SignAssertion(clearancetest.AssertionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	body := url.Values{"client_id": {cf.ClientID()}, "grant_type": {clearancetest.GrantTypeJWTBearer}, "assertion": {a}}.Encode()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, cf.STSBaseAddresses[0]+"/token", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBinary builds the emulator once and runs it in plain and TLS mode.
func TestBinary(t *testing.T) {
	bin := buildBinary(t)
	t.Run("plain", func(t *testing.T) { testBinaryPlain(t, bin) })
	t.Run("tls", func(t *testing.T) { testBinaryTLS(t, bin) })
}

func testBinaryPlain(t *testing.T, bin string) {
	dir := t.TempDir()

	// A connection file made elsewhere, to be trusted with --trust-connection-file.
	other, err := clearancetest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pre, err := other.NewConnectionFileWithKey(key, clearancetest.WithFileTenant("acme"))
	other.Close()
	if err != nil {
		t.Fatal(err)
	}
	prePath := filepath.Join(dir, "pre.json")
	if err := pre.WriteFile(prePath); err != nil {
		t.Fatal(err)
	}

	e := startEmulator(t, bin, "--listen", "127.0.0.1:0", "--write-connection-file", filepath.Join(dir, "c.json"), "--count", "2",
		"--trust-connection-file", prePath, "--token-ttl", "10m", "--verbose")
	if !strings.HasPrefix(e.base, "http://127.0.0.1:") || !strings.HasSuffix(e.base, "/connect") {
		t.Fatalf("base URL %q", e.base)
	}
	client := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	for _, name := range []string{"c-1.json", "c-2.json"} {
		out := mint(t, client, filepath.Join(dir, name))
		if out["expires_in"] != float64(600) || out["token_type"] != "Bearer" {
			t.Fatalf("%s: %v", name, out)
		}
	}
	// The pre-made file names another server; point a copy at this one.
	var doc map[string]any
	if err := json.Unmarshal(pre.Data, &doc); err != nil {
		t.Fatal(err)
	}
	doc["SecurityTokenServiceBaseAddresses"] = []string{e.base}
	moved, _ := json.Marshal(doc)
	movedPath := filepath.Join(dir, "moved.json")
	if err := os.WriteFile(movedPath, moved, 0o600); err != nil {
		t.Fatal(err)
	}
	mint(t, client, movedPath)

	e.stop(t)
	logs := e.stderr.String()
	if !strings.Contains(logs, "client_id=151@tenant123") || !strings.Contains(logs, "outcome=success") {
		t.Errorf("expected per-request logs, got:\n%s", logs)
	}
	// Secrets never reach the logs.
	cf, err := clearancetest.ParseConnectionFile(mustRead(t, filepath.Join(dir, "c-1.json")))
	if err != nil {
		t.Fatal(err)
	}
	var kd struct {
		Key struct {
			D string `json:"d"`
		} `json:"ServicePrincipalKey"`
	}
	_ = json.Unmarshal(cf.Data, &kd)
	if kd.Key.D == "" || strings.Contains(logs, kd.Key.D[:20]) || strings.Contains(logs, "eyJ") {
		t.Error("logs contain key material or a JWT")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path) //nolint:gosec // test file
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testBinaryTLS(t *testing.T, bin string) {
	dir := t.TempDir()
	caPath := filepath.Join(dir, "ca.pem")
	connPath := filepath.Join(dir, "conn.json")
	e := startEmulator(t, bin, "--listen", "127.0.0.1:0", "--tls", "--ca-file", caPath, "--write-connection-file", connPath,
		"--clock-offset", "0s", "--require-audience=false")
	if !strings.HasPrefix(e.base, "https://127.0.0.1:") {
		t.Fatalf("base URL %q", e.base)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(mustRead(t, caPath)) {
		t.Fatal("CA file holds no certificate")
	}
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		Timeout:   30 * time.Second,
	}
	defer client.CloseIdleConnections()
	mint(t, client, connPath)
	e.stop(t)
}
