// Package logsafe keeps secret material out of the operator's logs whatever
// verbosity a user asks for.
package logsafe

import "github.com/go-logr/logr"

// MaxVerbosity is the highest V-level that reaches the log. client-go logs
// request and response bodies from V(8) on through the logger it finds in the
// request context; for this operator those bodies are connection Secrets
// (private key, APIKey) and token Secrets, so nothing above this level is ever
// written, even with --zap-log-level=10.
const MaxVerbosity = 5

// CapVerbosity returns a logger that drops Info lines above MaxVerbosity.
// Errors are kept: they carry no request bodies.
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

type cappedSink struct {
	logr.LogSink
}

func (s *cappedSink) Enabled(level int) bool {
	return level <= MaxVerbosity && s.LogSink.Enabled(level)
}

func (s *cappedSink) Info(level int, msg string, kv ...any) {
	if level > MaxVerbosity {
		return
	}
	s.LogSink.Info(level, msg, kv...)
}

func (s *cappedSink) WithValues(kv ...any) logr.LogSink {
	return &cappedSink{LogSink: s.LogSink.WithValues(kv...)}
}

func (s *cappedSink) WithName(name string) logr.LogSink {
	return &cappedSink{LogSink: s.LogSink.WithName(name)}
}

// WithCallDepth keeps caller information pointing at the real call site.
func (s *cappedSink) WithCallDepth(depth int) logr.LogSink {
	if cd, ok := s.LogSink.(logr.CallDepthLogSink); ok {
		return &cappedSink{LogSink: cd.WithCallDepth(depth + 1)}
	}
	return s
}
