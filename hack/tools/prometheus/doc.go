// Package prometheus is a tools module pinning Prometheus. It builds promtool
// into bin/ (make promtool) and holds the tests of the chart's alert rules and
// Grafana dashboard, which load them with Prometheus' own packages (the rule
// file parser and the PromQL parser) and run promtool's rule unit tests.
//
// It is a module of its own because github.com/prometheus/prometheus brings
// in many modules (cloud service discovery among them) that the operator's
// go.mod has no use for; one module keeps the promtool binary and the parser
// packages the tests use at one version.
package prometheus
