// Package docs_test keeps the README honest: every command it shows must
// refer to something that exists, so the documentation cannot rot silently.
package docs_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// readmeCommands returns the lines of the README's sh code blocks.
func readmeCommands(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	inBlock := false
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```sh"):
			inBlock = true
		case strings.HasPrefix(line, "```"):
			inBlock = false
		case inBlock:
			if cmd := strings.TrimSpace(strings.SplitN(line, "#", 2)[0]); cmd != "" {
				cmds = append(cmds, cmd)
			}
		}
	}
	if len(cmds) == 0 {
		t.Fatal("no sh code blocks found in README.md")
	}
	return cmds
}

func makeTargets(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	re := regexp.MustCompile(`(?m)^([a-zA-Z0-9_-]+):`)
	for _, m := range re.FindAllStringSubmatch(string(data), -1) {
		targets[m[1]] = true
	}
	return targets
}

// TestReadmeMakeTargetsExist: every `make X` in the README is a Makefile target.
func TestReadmeMakeTargetsExist(t *testing.T) {
	targets := makeTargets(t)
	seen := 0
	for _, cmd := range readmeCommands(t) {
		fields := strings.Fields(cmd)
		for i, f := range fields {
			if f != "make" {
				continue
			}
			for _, arg := range fields[i+1:] {
				if strings.Contains(arg, "=") || strings.HasPrefix(arg, "-") {
					continue
				}
				if arg == "&&" || arg == ";" {
					break
				}
				seen++
				if !targets[arg] {
					t.Errorf("README runs `make %s`, which is not a Makefile target", arg)
				}
			}
		}
	}
	if seen < 3 {
		t.Errorf("expected the README to show at least the quick start make commands, found %d", seen)
	}
}

// TestReadmePathsExist: every repository path a README command names exists.
func TestReadmePathsExist(t *testing.T) {
	pathLike := regexp.MustCompile(`^(\./)?(config|charts|hack|test|bin)/[A-Za-z0-9_./-]*$`)
	for _, cmd := range readmeCommands(t) {
		for _, f := range strings.Fields(cmd) {
			f = strings.TrimSuffix(strings.TrimPrefix(f, "--values="), ",")
			if !pathLike.MatchString(f) || strings.HasPrefix(f, "bin/") {
				continue
			}
			if _, err := os.Stat(filepath.Join(testutil.RepoRoot(), f)); err != nil {
				t.Errorf("README command %q names %s, which does not exist", cmd, f)
			}
		}
	}
}

// TestReadmeMintFlagsExist: the flags the README passes to `mint` are defined.
func TestReadmeMintFlagsExist(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "mint.go"))
	if err != nil {
		t.Fatal(err)
	}
	flagRe := regexp.MustCompile(`--([a-z][a-z-]*)`)
	for _, cmd := range readmeCommands(t) {
		if !strings.Contains(cmd, " mint ") {
			continue
		}
		for _, m := range flagRe.FindAllStringSubmatch(cmd, -1) {
			if !strings.Contains(string(src), `"`+m[1]+`"`) {
				t.Errorf("README passes --%s to mint, which mint.go does not define", m[1])
			}
		}
	}
}
