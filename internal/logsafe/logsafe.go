// Package logsafe keeps secret material out of the operator's logs whatever
// verbosity a user asks for.
package logsafe

import (
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
