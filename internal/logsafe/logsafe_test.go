package logsafe

import (
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
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
