package testutil

import (
	"context"
	"io"
	"os"
	"os/exec"

	"github.com/onsi/gomega/gexec"
)

// StartSession starts bin with args, and env added to this process's
// environment, as a gexec session: tests wait for output with
// Eventually(s.Err).Should(gbytes.Say(...)) and stop it with
// s.Terminate() or s.Kill(). The output is also copied to logPath when it is
// not empty.
func StartSession(bin string, args, env []string, logPath string) (*gexec.Session, error) {
	// The process outlives any one request context; Terminate and Kill end it.
	cmd := exec.CommandContext(context.Background(), bin, args...) //nolint:gosec // test-controlled binary and arguments
	cmd.Env = append(os.Environ(), env...)
	if logPath == "" {
		return gexec.Start(cmd, nil, nil)
	}
	f, err := os.Create(logPath) //nolint:gosec // test-controlled path
	if err != nil {
		return nil, err
	}
	var log io.Writer = f
	s, err := gexec.Start(cmd, log, log)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	go func() { <-s.Exited; _ = f.Close() }()
	return s, nil
}
