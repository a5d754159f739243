package logsafe

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

func TestCapLevel(t *testing.T) {
	for _, opts := range [][]zap.Opts{
		{zap.Level(zapcore.Level(-10))},
		{zap.UseDevMode(true)},
		{},
	} {
		var out bytes.Buffer
		l := zap.New(append(opts, zap.WriteTo(&out), CapLevel)...).WithName("x").WithValues("k", "v")

		l.Info("info kept")
		l.V(8).Info("Request Body", "body", "secret-bytes")
		l.Error(nil, "errors kept")

		for _, want := range []string{"info kept", "errors kept"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("missing %q in %q", want, out.String())
			}
		}
		if strings.Contains(out.String(), "secret-bytes") {
			t.Errorf("logged above MaxVerbosity: %q", out.String())
		}
		if l.V(MaxVerbosity + 1).Enabled() {
			t.Error("V(MaxVerbosity+1) reported enabled")
		}
	}

	var out bytes.Buffer
	l := zap.New(zap.Level(zapcore.Level(-10)), zap.WriteTo(&out), CapLevel)
	l.V(MaxVerbosity).Info("at the cap")
	if !strings.Contains(out.String(), "at the cap") {
		t.Errorf("a line at MaxVerbosity was dropped: %q", out.String())
	}
}
