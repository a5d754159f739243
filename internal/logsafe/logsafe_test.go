package logsafe

import (
	"bytes"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

func TestCapVerbosity(t *testing.T) {
	var lines []string
	base := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{Verbosity: 10})
	l := CapVerbosity(base).WithName("x").WithValues("k", "v")

	l.V(MaxVerbosity).Info("kept")
	l.V(MaxVerbosity + 1).Info("dropped")
	l.V(8).Info("Request Body", "body", "secret-bytes")
	l.Error(nil, "errors kept")

	joined := strings.Join(lines, "\n")
	for _, want := range []string{`"kept"`, `"errors kept"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("missing %s in %q", want, joined)
		}
	}
	for _, unwanted := range []string{"dropped", "secret-bytes"} {
		if strings.Contains(joined, unwanted) {
			t.Errorf("%q logged above MaxVerbosity: %q", unwanted, joined)
		}
	}
	if l.V(8).Enabled() {
		t.Error("V(8) reported enabled")
	}
	if CapVerbosity(CapVerbosity(base)).GetSink() == nil {
		t.Error("double wrapping lost the sink")
	}
}

// TestValuesAsTheSinkWouldPlaceThem: values given to WithValues reach every
// line, before the line's own, in order, and loggers derived from one
// another do not share or lose values.
func TestValuesAsTheSinkWouldPlaceThem(t *testing.T) {
	var lines []string
	base := funcr.New(func(_, args string) { lines = append(lines, args) }, funcr.Options{})
	parent := CapVerbosity(base).WithValues("controller", "c")
	a := parent.WithValues("name", "a").WithName("sub")
	b := parent.WithValues("name", "b")

	a.Info("one", "k", 1)
	b.Info("two")
	parent.Error(nil, "three", "k", 3)
	a.V(1).Info("four")

	want := []string{
		`"level"=0 "msg"="one" "controller"="c" "name"="a" "k"=1`,
		`"level"=0 "msg"="two" "controller"="c" "name"="b"`,
		`"msg"="three" "error"=null "controller"="c" "k"=3`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

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
