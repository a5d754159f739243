package testutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// ToolBinary returns a pinned tool (helm, kustomize) built into bin/ by
// `make <name>` (`make test` builds them first).
func ToolBinary(name string) (string, error) {
	p := filepath.Join(RepoRoot(), "bin", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found: run `make %s`", p, name)
	}
	return p, nil
}

// KubectlBinary returns the kubectl built from source next to the test
// control plane (see AssetsDir).
func KubectlBinary() (string, error) {
	dir, err := AssetsDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "kubectl")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("kubectl not found in %s: run `make envtest-assets`", dir)
	}
	return p, nil
}

// FreeLoopbackAddr returns "127.0.0.1:<port>" for a port that was free a
// moment ago, for child processes that need a fixed address in their flags.
func FreeLoopbackAddr() (string, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", err
	}
	return addr, nil
}
