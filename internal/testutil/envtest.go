// Package testutil holds helpers shared by the envtest and e2e suites.
package testutil

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// RepoRoot returns the repository root, found from this source file's location
// so tests work from any package directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// KubeVersion returns the Kubernetes version the tools module pins (e.g. "1.37.2").
func KubeVersion() (string, error) {
	f, err := os.Open(filepath.Join(RepoRoot(), "hack", "tools", "kube", "go.mod"))
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "require" && fields[1] == "k8s.io/kubernetes" {
			return strings.TrimPrefix(fields[2], "v"), nil
		}
	}
	return "", fmt.Errorf("k8s.io/kubernetes not required in hack/tools/kube/go.mod")
}

// AssetsDir returns the directory holding kube-apiserver, etcd and kubectl:
// KUBEBUILDER_ASSETS when set, else bin/k8s/<version> as built by
// `make envtest-assets`. It fails with a hint when the binaries are missing,
// rather than letting envtest try to download them.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		v, err := KubeVersion()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(RepoRoot(), "bin", "k8s", v)
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil { //nolint:gosec // the assets directory is the developer's own setting
			return "", fmt.Errorf("%s not found in %s: run `make envtest-assets` (builds the control plane from source, ~4 minutes the first time)", bin, dir)
		}
	}
	return dir, nil
}

// CRDPath is the directory of the generated CRD manifests.
func CRDPath() string {
	return filepath.Join(RepoRoot(), "config", "crd", "bases")
}
