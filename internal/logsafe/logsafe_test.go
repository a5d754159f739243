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
