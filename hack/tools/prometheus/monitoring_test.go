package prometheus

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

const (
	// The release the tests render; its metrics job is "<fullname>-metrics".
	release    = "clearance-operator"
	namespace  = "clearance-system"
	defaultJob = "clearance-operator-metrics"
)

// repoRoot is the repository this tools module sits in.
var repoRoot = filepath.Join("..", "..", "..")

// tool returns a binary from bin/, built by make (`make test` builds both).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(repoRoot, "bin", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found: run `make %s`", p, name)
	}
	return p
}

// render runs the pinned Helm's template command and returns the objects.
func render(t *testing.T, sets ...string) []map[string]any {
	t.Helper()
	args := []string{"template", release, filepath.Join(repoRoot, "charts", "clearance-operator"), "--namespace", namespace}
	for _, s := range sets {
		// Helm's --set reads 0.5 as a string; --set-json keeps numbers.
		if js, ok := strings.CutPrefix(s, "json:"); ok {
			args = append(args, "--set-json", js)
			continue
		}
		args = append(args, "--set", s)
	}
	cmd := exec.CommandContext(t.Context(), tool(t, "helm"), args...) //nolint:gosec // the pinned Helm, test-controlled arguments
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", sets, err, stderr.String())
	}
	var objs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding helm's output: %v", err)
		}
		if obj != nil {
			objs = append(objs, obj)
		}
	}
	return objs
}

func ofKind(objs []map[string]any, kind string) []map[string]any {
	var out []map[string]any
	for _, o := range objs {
		if o["kind"] == kind {
			out = append(out, o)
		}
	}
	return out
}

// ruleFile renders the chart with the PrometheusRule on and returns its spec
// as a Prometheus rule file.
func ruleFile(t *testing.T, sets ...string) []byte {
	t.Helper()
	rules := ofKind(render(t, append([]string{"prometheusRule.enabled=true"}, sets...)...), "PrometheusRule")
	if len(rules) != 1 {
		t.Fatalf("rendered %d PrometheusRules, want 1", len(rules))
	}
	b, err := yaml.Marshal(rules[0]["spec"])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var promParser = parser.NewParser(parser.Options{})

// parseRules loads a rule file as Prometheus does: unknown fields rejected,
// every expression parsed, every label and annotation template checked.
func parseRules(t *testing.T, content []byte) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.Parse(content, false, model.UTF8Validation, promParser, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("the rule file does not load: %v\n%s", errs, content)
	}
	return groups
}

// operatorMetrics are the metric names registered in internal/controller/metrics.go.
func operatorMetrics(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "internal", "controller", "metrics.go")) //nolint:gosec // a fixed file of this repository
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`"(clearance_[a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		names[m[1]] = true
	}
	if len(names) < 5 {
		t.Fatalf("found only %v in metrics.go", names)
	}
	return names
}

// selectors returns the vector selectors of a PromQL expression.
func selectors(t *testing.T, expr string) []*parser.VectorSelector {
	t.Helper()
	e, err := promParser.ParseExpr(expr)
	if err != nil {
		t.Fatalf("%q does not parse: %v", expr, err)
	}
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// checkMetric fails for a metric the operator does not export (a histogram's
// _bucket, _sum and _count series count as its own).
func checkMetric(t *testing.T, known map[string]bool, expr string, vs *parser.VectorSelector) {
	t.Helper()
	name := vs.Name
	if name == "up" {
		return
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && known[base] {
			return
		}
	}
	if !known[name] {
		t.Errorf("%q uses %q, which internal/controller/metrics.go does not export", expr, name)
	}
}

func hasMatcher(vs *parser.VectorSelector, name, value string) bool {
	for _, m := range vs.LabelMatchers {
		if m.Name == name && m.Value == value {
			return true
		}
	}
	return false
}

func TestRulesAndDashboardAreOffByDefault(t *testing.T) {
	objs := render(t)
	if n := len(ofKind(objs, "PrometheusRule")); n != 0 {
		t.Errorf("default values render %d PrometheusRules", n)
	}
	for _, cm := range ofKind(objs, "ConfigMap") {
		t.Errorf("default values render ConfigMap %v", cm["metadata"])
	}
}

func TestRulesLoadInPrometheus(t *testing.T) {
	known := operatorMetrics(t)
	groups := parseRules(t, ruleFile(t))
	var alerts []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if r.Labels["severity"] == "" {
				t.Errorf("%s has no severity", r.Alert)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s lacks a summary or description", r.Alert)
			}
			if r.For == 0 {
				t.Errorf("%s fires without a for: duration", r.Alert)
			}
			for _, vs := range selectors(t, r.Expr) {
				checkMetric(t, known, r.Expr, vs)
				// Scoped to this release's manager: two releases' alerts must
				// not fire on each other's series.
				if !hasMatcher(vs, "job", defaultJob) {
					t.Errorf("%s: selector %s is not scoped to job %q", r.Alert, vs, defaultJob)
				}
			}
		}
	}
	sort.Strings(alerts)
	want := []string{"ClearanceCredentialNotReady", "ClearanceOperatorDown", "ClearanceTokenExpiringSoon", "ClearanceTokenRequestsFailing"}
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts = %v, want %v", alerts, want)
	}
}

func TestRuleValues(t *testing.T) {
	groups := parseRules(t, ruleFile(t,
		"prometheusRule.job=my-job",
		"prometheusRule.additionalAlertLabels.team=video",
		"prometheusRule.tokenExpiring.withinSeconds=1200",
		"json:prometheusRule.requestsFailing.ratio=0.5",
		"prometheusRule.requestsFailing.window=30m",
		"prometheusRule.notReady.for=1h",
		"prometheusRule.operatorDown.enabled=false",
	))
	rules := map[string]rulefmt.Rule{}
	for _, r := range groups.Groups[0].Rules {
		rules[r.Alert] = r
		if r.Labels["team"] != "video" {
			t.Errorf("%s lacks the additional label", r.Alert)
		}
		if !strings.Contains(r.Expr, `job="my-job"`) || strings.Contains(r.Expr, defaultJob) {
			t.Errorf("%s: %q does not use the job override", r.Alert, r.Expr)
		}
	}
	if _, ok := rules["ClearanceOperatorDown"]; ok || len(rules) != 3 {
		t.Errorf("rules = %v, want three without ClearanceOperatorDown", slices.Collect(func(yield func(string) bool) {
			for k := range rules {
				if !yield(k) {
					return
				}
			}
		}))
	}
	if e := rules["ClearanceTokenExpiringSoon"].Expr; !strings.HasSuffix(e, "< 1200") {
		t.Errorf("expiry margin not applied: %q", e)
	}
	if e := rules["ClearanceTokenRequestsFailing"].Expr; !strings.Contains(e, "[30m]") || !strings.HasSuffix(strings.TrimSpace(e), "> 0.5") {
		t.Errorf("ratio or window not applied: %q", e)
	}
	if f := rules["ClearanceCredentialNotReady"].For; f.String() != "1h" {
		t.Errorf("notReady.for = %s, want 1h", f)
	}
}

// promtoolTest runs `promtool test rules` on testFile against rules.
func promtoolTest(t *testing.T, rules []byte, testFile []byte) (string, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), testFile, 0o600); err != nil { //nolint:gosec // a test's own temporary directory
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), tool(t, "promtool"), "test", "rules", "alerts_test.yaml") //nolint:gosec // the pinned promtool
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestAlertsOnSyntheticSeries(t *testing.T) {
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rules := ruleFile(t)
	out, err := promtoolTest(t, rules, tests)
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool did not report success:\n%s", out)
	}

	// The same tests must fail against rules that never fire, or they
	// would pass whatever the rules said.
	var spec map[string]any
	if err := yaml.Unmarshal(rules, &spec); err != nil {
		t.Fatal(err)
	}
	for _, g := range spec["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			r.(map[string]any)["expr"] = "vector(1) == 2"
		}
	}
	never, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	parseRules(t, never)
	if out, err := promtoolTest(t, never, tests); err == nil {
		t.Errorf("the alert tests pass against rules that never fire:\n%s", out)
	}
}

// grafanaVariables are the dashboard's variables as Grafana substitutes them
// before a query reaches Prometheus.
var grafanaVariables = strings.NewReplacer(
	"$__rate_interval", "5m",
	"${datasource}", "prometheus",
	"$job", "clearance-operator-metrics",
	"$namespace", "apps",
)

type dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		GridPos struct{ X, Y, W, H int } `json:"gridPos"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
	} `json:"panels"`
}

func TestDashboard(t *testing.T) {
	cms := ofKind(render(t, "grafanaDashboard.enabled=true", "grafanaDashboard.annotations.grafana_folder=Operators"), "ConfigMap")
	if len(cms) != 1 {
		t.Fatalf("rendered %d ConfigMaps, want the dashboard's", len(cms))
	}
	meta := cms[0]["metadata"].(map[string]any)
	if labels := meta["labels"].(map[string]any); labels["grafana_dashboard"] != "1" {
		t.Errorf("the dashboard ConfigMap lacks the sidecar label: %v", labels)
	}
	if ann := meta["annotations"].(map[string]any); ann["grafana_folder"] != "Operators" {
		t.Errorf("annotations = %v", ann)
	}
	data := cms[0]["data"].(map[string]any)
	raw, ok := data["clearance-operator.json"].(string)
	if !ok {
		t.Fatalf("no clearance-operator.json in %v", data)
	}
	var d dashboard
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 30 {
		t.Errorf("title %q, uid %q, schemaVersion %d", d.Title, d.UID, d.SchemaVersion)
	}

	vars := map[string]bool{}
	known := operatorMetrics(t)
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "query" {
			// label_values(...) is Grafana's, not PromQL; its selector is.
			m := regexp.MustCompile(`^label_values\((.+), \w+\)$`).FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("variable %s: unexpected query %q", v.Name, v.Definition)
				continue
			}
			for _, vs := range selectors(t, grafanaVariables.Replace(m[1])) {
				checkMetric(t, known, m[1], vs)
			}
		}
	}
	for _, v := range []string{"datasource", "job", "namespace"} {
		if !vars[v] {
			t.Errorf("variable %s is not defined", v)
		}
	}

	ids := map[int]bool{}
	titles := map[string]bool{}
	type cell struct{ x, y int }
	used := map[cell]int{}
	for _, p := range d.Panels {
		titles[p.Title] = true
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable: %+v", p.Title, p.Datasource)
		}
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q lies outside the 24-column grid: %+v", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := used[cell{x, y}]; ok {
					t.Errorf("panels %d and %d overlap at %d,%d", other, p.ID, x, y)
				}
				used[cell{x, y}] = p.ID
			}
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] {
				t.Errorf("panel %q: refId %s twice", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			for _, vs := range selectors(t, grafanaVariables.Replace(tg.Expr)) {
				checkMetric(t, known, tg.Expr, vs)
				if !hasMatcher(vs, "job", defaultJob) {
					t.Errorf("panel %q: %s is not filtered by $job", p.Title, vs)
				}
			}
		}
	}
	for _, want := range []string{"Tokens by time to expiry", "Credentials not Ready", "Token requests by outcome", "Token request latency"} {
		if !titles[want] {
			t.Errorf("no panel %q", want)
		}
	}
}
