// Package image_test checks the manager image that `make image` builds: it
// builds the OCI image archive twice with hack/build-image.sh and reads it
// with nothing but the standard library, as a runtime would.
package image_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

const imageName = "clearance.local/clearance-operator:dev"

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
}

type index struct {
	Manifests []descriptor `json:"manifests"`
}

type manifest struct {
	MediaType string       `json:"mediaType"`
	Config    descriptor   `json:"config"`
	Layers    []descriptor `json:"layers"`
}

type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User       string            `json:"User"`
		Entrypoint []string          `json:"Entrypoint"`
		Cmd        []string          `json:"Cmd"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
}

// build runs hack/build-image.sh and returns the archive's path and the
// digest the script printed.
func build(t *testing.T, dir string) (string, string) {
	t.Helper()
	out := filepath.Join(dir, "manager.tar")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(testutil.RepoRoot(), "hack", "build-image.sh"), "manager", out) //nolint:gosec // the repository's script, a temporary path
	cmd.Env = append(os.Environ(), "MANAGER_IMAGE="+imageName)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("build-image.sh: %v\n%s", err, stderr.String())
	}
	ref := strings.TrimSpace(string(stdout))
	name, digest, ok := strings.Cut(ref, "@")
	if !ok || name != imageName {
		t.Fatalf("build-image.sh printed %q, want %s@<digest>", ref, imageName)
	}
	return out, digest
}

// readTar returns the regular files of a tar stream by name.
func readTar(t *testing.T, r io.Reader) (map[string][]byte, map[string]*tar.Header) {
	t.Helper()
	files, headers := map[string][]byte{}, map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, headers
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		headers[name] = h
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[name] = data
		}
	}
}

// blob returns a blob of the layout and checks that its content matches its digest.
func blob(t *testing.T, files map[string][]byte, digest string) []byte {
	t.Helper()
	algo, hexsum, _ := strings.Cut(digest, ":")
	data, ok := files["blobs/"+algo+"/"+hexsum]
	if !ok || algo != "sha256" {
		t.Fatalf("blob %s missing", digest)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != hexsum {
		t.Fatalf("blob %s does not match its digest", digest)
	}
	return data
}

func decode(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

func gitOutput(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(context.Background(), "git", append([]string{"-C", testutil.RepoRoot()}, args...)...).Output() //nolint:gosec // fixed git queries
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

func TestManagerImage(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Fatal("GNU tar is needed to build the image")
	}
	archive, digest := build(t, t.TempDir())
	f, err := os.Open(archive) //nolint:gosec // the test's own temporary file
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	files, _ := readTar(t, f)

	var idx index
	decode(t, files["index.json"], &idx)
	if len(idx.Manifests) != 1 {
		t.Fatalf("index lists %d manifests, want 1", len(idx.Manifests))
	}
	if got := idx.Manifests[0].Digest; got != digest {
		t.Fatalf("index names manifest %s, the script printed %s", got, digest)
	}
	if got := idx.Manifests[0].Annotations["io.containerd.image.name"]; got != imageName {
		t.Fatalf("image name annotation %q, want %q", got, imageName)
	}
	var m manifest
	decode(t, blob(t, files, digest), &m)
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || len(m.Layers) != 1 {
		t.Fatalf("manifest %s with %d layers, want one OCI layer", m.MediaType, len(m.Layers))
	}

	var cfg imageConfig
	decode(t, blob(t, files, m.Config.Digest), &cfg)
	c := cfg.Config
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/manager"}) || len(c.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want [/manager] and no cmd", c.Entrypoint, c.Cmd)
	}
	revision := gitOutput(t, "rev-parse", "HEAD")
	if gitOutput(t, "status", "--porcelain", "--untracked-files=no") != "" {
		revision += "-dirty"
	}
	if got := c.Labels["org.opencontainers.image.revision"]; got != revision {
		t.Errorf("revision label %q, want %q", got, revision)
	}
	for _, l := range []string{"org.opencontainers.image.title", "org.opencontainers.image.version", "org.opencontainers.image.created"} {
		if c.Labels[l] == "" {
			t.Errorf("label %s missing", l)
		}
	}

	gz, err := gzip.NewReader(bytes.NewReader(blob(t, files, m.Layers[0].Digest)))
	if err != nil {
		t.Fatal(err)
	}
	layer, headers := readTar(t, gz)
	for name, h := range headers {
		base := filepath.Base(name)
		if base == "sh" || base == "bash" || base == "busybox" || strings.HasPrefix(name, "bin/") {
			t.Errorf("the image has a shell or shell tools: %s", name)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d, want root", name, h.Uid, h.Gid)
		}
	}
	mgr, ok := headers["manager"]
	if !ok || mgr.Typeflag != tar.TypeReg || mgr.Mode&0o111 == 0 {
		t.Fatalf("no executable /manager in the layer")
	}
	bin, err := elf.NewFile(bytes.NewReader(layer["manager"]))
	if err != nil {
		t.Fatalf("/manager is not an ELF binary: %v", err)
	}
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("/manager is dynamically linked; the image has no loader")
		}
	}
	if !bytes.Contains(layer["etc/ssl/certs/ca-certificates.crt"], []byte("-----BEGIN CERTIFICATE-----")) {
		t.Error("no CA certificates at /etc/ssl/certs/ca-certificates.crt")
	}

	// Reproducible: the same commit gives the same digest.
	_, again := build(t, t.TempDir())
	if again != digest {
		t.Errorf("second build has digest %s, first %s: the image is not reproducible", again, digest)
	}
}
