// Package logsafe keeps secret material out of the operator's logs whatever
// verbosity a user asks for.
package logsafe

import (
	"slices"

	"github.com/go-logr/logr"
	uberzap "go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// MaxVerbosity is the highest V-level that reaches the log. client-go logs
// request and response bodies from V(8) on through the logger it finds in the
// request context; for this operator those bodies are connection Secrets
// (private key, APIKey) and token Secrets, so nothing above this level is ever
// written, even with --zap-log-level=10.
const MaxVerbosity = 5

// CapLevel is a controller-runtime zap option that keeps every line above
// MaxVerbosity out of the log, whatever level the flags or earlier options
// chose; pass it after them. Capping the root logger covers every logger
// derived from it, the reconcile context's included.
func CapLevel(o *zap.Options) {
	if o.Level == nil {
		return // the defaults (info, or debug in development mode) are below the cap
	}
	level := o.Level
	o.Level = uberzap.LevelEnablerFunc(func(l zapcore.Level) bool {
		return l >= -MaxVerbosity && level.Enabled(l)
	})
}

// CapVerbosity returns a logger that drops Info lines above MaxVerbosity.
// Errors are kept: they carry no request bodies.
// CapLevel on the root logger supersedes it; it stays only until its last
// caller is gone.
func CapVerbosity(l logr.Logger) logr.Logger {
	sink := l.GetSink()
	if sink == nil {
		return l
	}
	if _, ok := sink.(*cappedSink); ok {
		return l
	}
	return logr.New(&cappedSink{LogSink: sink})
}

// cappedSink also holds the values given to WithValues and hands them to the
// underlying sink with each line, instead of calling its WithValues: with zap
// that call clones the encoder and encodes the values (several KB per call),
// and controller-runtime makes two of them for every reconcile, which mostly
// logs nothing.
type cappedSink struct {
	logr.LogSink
	values []any
}

func (s *cappedSink) Enabled(level int) bool {
	return level <= MaxVerbosity && s.LogSink.Enabled(level)
}

func (s *cappedSink) Info(level int, msg string, kv ...any) {
	if level > MaxVerbosity {
		return
	}
	s.LogSink.Info(level, msg, s.with(kv)...)
}

func (s *cappedSink) Error(err error, msg string, kv ...any) {
	s.LogSink.Error(err, msg, s.with(kv)...)
}

// with puts the held values before a line's own, where the sink's
// WithValues would have put them.
func (s *cappedSink) with(kv []any) []any {
	if len(s.values) == 0 {
		return kv
	}
	return append(slices.Clip(s.values), kv...)
}

func (s *cappedSink) WithValues(kv ...any) logr.LogSink {
	return &cappedSink{LogSink: s.LogSink, values: append(slices.Clip(s.values), kv...)}
}

func (s *cappedSink) WithName(name string) logr.LogSink {
	return &cappedSink{LogSink: s.LogSink.WithName(name), values: s.values}
}

// WithCallDepth keeps caller information pointing at the real call site.
func (s *cappedSink) WithCallDepth(depth int) logr.LogSink {
	if cd, ok := s.LogSink.(logr.CallDepthLogSink); ok {
		return &cappedSink{LogSink: cd.WithCallDepth(depth + 1), values: s.values}
	}
	return s
}
