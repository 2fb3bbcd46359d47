package grafana

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	// The webhook links controller-runtime, whose internal controller metrics package registers the
	// Go and process collectors on crmetrics.Registry in its init; importing it here the same way puts
	// the same collectors on the same registry.
	_ "sigs.k8s.io/controller-runtime"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/clustertrust/clustertrust/internal/authn"
	"github.com/clustertrust/clustertrust/internal/registry"
)

// datasource is what every panel, target and query variable of the dashboard must name.
var datasource = map[string]any{"type": "prometheus", "uid": "${datasource}"}

// family is a metric family the webhook exports.
type family struct {
	// kind is the type of the family as gathered (COUNTER, GAUGE, HISTOGRAM, ...), or "" for a vector
	// that has no series yet: a Desc does not say its type.
	kind   string
	labels map[string]bool
}

// exports are the metric families the webhook exports, by name.
type exports map[string]*family

var (
	fqNameRE         = regexp.MustCompile(`fqName: "([^"]+)"`)
	variableLabelsRE = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	constLabelsRE    = regexp.MustCompile(`constLabels: \{(.*)\}, variableLabels`)
	constLabelRE     = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
)

// exportedMetrics returns the metric families the webhook serves on /metrics, registered as
// cmd/webhook/app/serve.go registers them: controller-runtime's registry with its Go and process
// collectors, the request path's metrics, the issuers collector and the --source=file collectors. The
// names come from the collectors' Descs, not from a Gather, which leaves out vectors without series;
// a Gather only adds the types and labels of the families that have series.
func exportedMetrics(t *testing.T) exports {
	t.Helper()
	// A registry of our own rather than crmetrics.Registry, so that the test can run more than once
	// in a process (-count) without registering twice.
	reg := prometheus.NewRegistry()
	if _, err := authn.NewMetrics(reg); err != nil {
		t.Fatalf("authn.NewMetrics: %v", err)
	}
	reg.MustRegister((&registry.Reconciler{}).Collector())
	reg.MustRegister((&registry.FileSource{}).Collectors()...)
	cr, ok := crmetrics.Registry.(prometheus.Collector)
	if !ok {
		t.Fatalf("controller-runtime's metrics registry is a %T, not a prometheus.Collector", crmetrics.Registry)
	}

	exported := exports{}
	for _, c := range []prometheus.Collector{reg, cr} {
		for _, d := range describe(c) {
			s := d.String()
			m := fqNameRE.FindStringSubmatch(s)
			if m == nil {
				t.Fatalf("no fqName in %s", s)
			}
			f := exported.add(m[1])
			if m := variableLabelsRE.FindStringSubmatch(s); m != nil && m[1] != "" {
				for _, l := range strings.Split(m[1], ",") {
					l = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(l), "c("), ")")
					f.labels[l] = true
				}
			}
			if m := constLabelsRE.FindStringSubmatch(s); m != nil {
				for _, l := range constLabelRE.FindAllStringSubmatch(m[1], -1) {
					f.labels[l[1]] = true
				}
			}
		}
	}
	mfs, err := prometheus.Gatherers{reg, crmetrics.Registry}.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		f := exported.add(mf.GetName())
		f.kind = mf.GetType().String()
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				f.labels[l.GetName()] = true
			}
		}
	}
	return exported
}

func describe(c prometheus.Collector) []*prometheus.Desc {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	var descs []*prometheus.Desc
	for d := range ch {
		descs = append(descs, d)
	}
	return descs
}

func (e exports) add(name string) *family {
	f, ok := e[name]
	if !ok {
		f = &family{labels: map[string]bool{}}
		e[name] = f
	}
	return f
}

// labels returns the labels of the series name, which is a family's name or, for a histogram, its
// name with _bucket (which adds le), _sum or _count, and for a summary with _sum or _count. A family
// without series is of unknown type, so it is taken to have all three.
func (e exports) labels(name string) (map[string]bool, bool) {
	if f, ok := e[name]; ok {
		return f.labels, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		f, ok := e[base]
		if !found || !ok {
			continue
		}
		switch {
		case f.kind == "" || f.kind == "HISTOGRAM" || f.kind == "GAUGE_HISTOGRAM":
		case f.kind == "SUMMARY" && suffix != "_bucket":
		default:
			continue
		}
		if suffix != "_bucket" {
			return f.labels, true
		}
		labels := map[string]bool{"le": true}
		for l := range f.labels {
			labels[l] = true
		}
		return labels, true
	}
	return nil, false
}

// unknownMetrics returns, sorted and once each, the metric names exprs query that the webhook does
// not export.
func unknownMetrics(exprs []string, exported exports) ([]string, error) {
	var unknown []string
	for _, expr := range exprs {
		sels, err := selectors(expr)
		if err != nil {
			return nil, err
		}
		for _, s := range sels {
			if _, ok := exported.labels(s.metric); !ok {
				unknown = append(unknown, s.metric)
			}
		}
	}
	sort.Strings(unknown)
	return slices.Compact(unknown), nil
}

// unknownLabels returns, sorted and once each as name{label}, the labels exprs match on that their
// metric does not carry.
func unknownLabels(exprs []string, exported exports) ([]string, error) {
	var unknown []string
	for _, expr := range exprs {
		sels, err := selectors(expr)
		if err != nil {
			return nil, err
		}
		for _, s := range sels {
			labels, ok := exported.labels(s.metric)
			if !ok {
				continue // unknownMetrics reports it
			}
			for _, l := range s.labels {
				if !labels[l] {
					unknown = append(unknown, s.metric+"{"+l+"}")
				}
			}
		}
	}
	sort.Strings(unknown)
	return slices.Compact(unknown), nil
}

// selector is one vector selector of a PromQL expression: a metric name and the label names it
// matches on.
type selector struct {
	metric string
	labels []string
}

// notMetrics are the PromQL words that can stand where a metric name could: keywords and aggregation
// operators (followed by by or without rather than by their parenthesis).
var notMetrics = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
}

// grouping are the words whose parenthesis holds label names, not an expression.
var grouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// selectors returns the vector selectors of a PromQL expression as Grafana holds it, with its $variables.
// It is no PromQL parser, but it reads every form the dashboard uses and refuses what it cannot read:
// strings, Grafana variables, ranges and grouping labels are skipped, words followed by a parenthesis
// are functions, and any other word that is no keyword is a metric name.
func selectors(expr string) ([]selector, error) {
	var sels []selector
	s := expr
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(s, i)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", expr, err)
			}
			i = j
		case c == '$':
			i = skipVariable(s, i)
		case c == '[':
			// A range or subquery: durations, variables and a colon.
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("%q: unterminated [ at %d", expr, i)
			}
			i += j + 1
		case c == '{':
			return nil, fmt.Errorf("%q: a selector without a metric name at %d", expr, i)
		case isDigit(c) || c == '.' && i+1 < len(s) && isDigit(s[i+1]):
			i = skipNumber(s, i)
		case isIdentStart(c):
			j := i + 1
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			k := skipSpace(s, j)
			paren := k < len(s) && s[k] == '('
			switch lower := strings.ToLower(word); {
			case grouping[lower] && paren:
				end := strings.IndexByte(s[k:], ')')
				if end < 0 {
					return nil, fmt.Errorf("%q: unterminated %s( at %d", expr, word, k)
				}
				i = k + end + 1
			case notMetrics[lower] || paren:
				i = j
			default:
				sel := selector{metric: word}
				i = j
				if k < len(s) && s[k] == '{' {
					labels, next, err := matchers(s, k)
					if err != nil {
						return nil, fmt.Errorf("%q: %w", expr, err)
					}
					sel.labels, i = labels, next
				}
				sels = append(sels, sel)
			}
		default:
			i++
		}
	}
	return sels, nil
}

// matchers reads the label matchers that start with the { at s[i], and returns their label names and
// the index after the closing }.
func matchers(s string, i int) (labels []string, next int, err error) {
	i++
	for {
		i = skipSpace(s, i)
		if i >= len(s) {
			return nil, 0, errors.New("unterminated {")
		}
		if s[i] == '}' {
			return labels, i + 1, nil
		}
		if !isIdentStart(s[i]) {
			return nil, 0, fmt.Errorf("expected a label name at %d", i)
		}
		j := i + 1
		for j < len(s) && isIdent(s[j]) {
			j++
		}
		labels = append(labels, s[i:j])
		i = skipSpace(s, j)
		switch {
		case strings.HasPrefix(s[i:], "=~"), strings.HasPrefix(s[i:], "!~"), strings.HasPrefix(s[i:], "!="):
			i += 2
		case strings.HasPrefix(s[i:], "="):
			i++
		default:
			return nil, 0, fmt.Errorf("expected a matcher operator at %d", i)
		}
		i = skipSpace(s, i)
		if i >= len(s) || (s[i] != '"' && s[i] != '\'' && s[i] != '`') {
			return nil, 0, fmt.Errorf("expected a quoted label value at %d", i)
		}
		if i, err = skipString(s, i); err != nil {
			return nil, 0, err
		}
		i = skipSpace(s, i)
		if i < len(s) && s[i] == ',' {
			i++
		} else if i < len(s) && s[i] != '}' {
			return nil, 0, fmt.Errorf("expected , or } at %d", i)
		}
	}
}

// skipString returns the index after the string literal that starts at s[i].
func skipString(s string, i int) (int, error) {
	quote := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && quote != '`':
			j++
		case s[j] == quote:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at %d", i)
}

// skipVariable returns the index after the Grafana variable ($name or ${name...}) at s[i].
func skipVariable(s string, i int) int {
	if i+1 < len(s) && s[i+1] == '{' {
		if end := strings.IndexByte(s[i:], '}'); end >= 0 {
			return i + end + 1
		}
		return len(s)
	}
	j := i + 1
	for j < len(s) && isIdent(s[j]) && s[j] != ':' {
		j++
	}
	return j
}

// skipNumber returns the index after the number or duration at s[i]: 0.99, 1e-3, 0x1f, 5m, 1h30m.
func skipNumber(s string, i int) int {
	j := i
	for j < len(s) {
		switch c := s[j]; {
		case isIdent(c) && c != ':' || c == '.':
			j++
		case (c == '+' || c == '-') && (s[j-1] == 'e' || s[j-1] == 'E') && j+1 < len(s) && isDigit(s[j+1]) && !strings.ContainsAny(s[i:j], "xX"):
			j++
		default:
			return j
		}
	}
	return j
}

func skipSpace(s string, i int) int {
	for i < len(s) && strings.IndexByte(" \t\r\n", s[i]) >= 0 {
		i++
	}
	return i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdent(c byte) bool { return isIdentStart(c) || isDigit(c) }

// variableExpr turns the query of a Grafana query variable into a PromQL expression with the same
// selectors: label_values(m, l) asks for the series of m with an l, m{l!=""}. It returns "" for a
// query that names no metric.
func variableExpr(q string) (string, error) {
	q = strings.TrimSpace(q)
	switch {
	case strings.HasPrefix(q, "label_values(") && strings.HasSuffix(q, ")"):
		args := strings.TrimSuffix(strings.TrimPrefix(q, "label_values("), ")")
		comma := strings.LastIndexByte(args, ',')
		if comma < 0 {
			return "", nil // label_values(label): every series
		}
		sel, label := strings.TrimSpace(args[:comma]), strings.TrimSpace(args[comma+1:])
		if label == "" || !isIdentStart(label[0]) || strings.IndexFunc(label, func(r rune) bool { return r > 127 || !isIdent(byte(r)) }) >= 0 {
			return "", fmt.Errorf("%q: %q is no label name", q, label)
		}
		matcher := label + `!=""`
		if before, ok := strings.CutSuffix(sel, "}"); ok {
			if strings.HasSuffix(strings.TrimSpace(before), "{") {
				return before + matcher + "}", nil
			}
			return before + "," + matcher + "}", nil
		}
		return sel + "{" + matcher + "}", nil
	case strings.HasPrefix(q, "query_result(") && strings.HasSuffix(q, ")"):
		return strings.TrimSuffix(strings.TrimPrefix(q, "query_result("), ")"), nil
	case strings.HasPrefix(q, "label_names("), strings.HasPrefix(q, "metrics("):
		return "", nil
	}
	return "", fmt.Errorf("%q: not a Prometheus variable query this test reads", q)
}

// query is one PromQL expression of the dashboard and where it is.
type query struct{ where, expr string }

func loadDashboard(t *testing.T) map[string]any {
	t.Helper()
	var dash map[string]any
	if err := json.Unmarshal(Dashboard, &dash); err != nil {
		t.Fatalf("clustertrust.json: %v", err)
	}
	return dash
}

// panels returns every panel of the dashboard, rows' nested panels included, in order.
func panels(dash map[string]any) []map[string]any {
	var all []map[string]any
	var walk func(list any)
	walk = func(list any) {
		items, _ := list.([]any)
		for _, item := range items {
			p, ok := item.(map[string]any)
			if !ok {
				continue
			}
			all = append(all, p)
			walk(p["panels"])
		}
	}
	walk(dash["panels"])
	return all
}

// variables returns the template variables of the dashboard.
func variables(dash map[string]any) []map[string]any {
	templating, _ := dash["templating"].(map[string]any)
	list, _ := templating["list"].([]any)
	var vars []map[string]any
	for _, item := range list {
		if v, ok := item.(map[string]any); ok {
			vars = append(vars, v)
		}
	}
	return vars
}

func targets(p map[string]any) []map[string]any {
	list, _ := p["targets"].([]any)
	var ts []map[string]any
	for _, item := range list {
		if tg, ok := item.(map[string]any); ok {
			ts = append(ts, tg)
		}
	}
	return ts
}

// queries returns every PromQL expression of the dashboard: the expr of every target of every panel,
// and the queries of its query variables.
func queries(dash map[string]any) ([]query, error) {
	var qs []query
	for _, p := range panels(dash) {
		for _, tg := range targets(p) {
			where := fmt.Sprintf("panel %v %q, target %v", p["id"], p["title"], tg["refId"])
			expr, ok := tg["expr"].(string)
			if !ok || strings.TrimSpace(expr) == "" {
				return nil, fmt.Errorf("%s has no expr", where)
			}
			qs = append(qs, query{where, expr})
		}
	}
	for _, v := range variables(dash) {
		if v["type"] != "query" {
			continue
		}
		where := fmt.Sprintf("variable %v", v["name"])
		q, ok := v["query"].(string)
		if obj, isObj := v["query"].(map[string]any); isObj {
			q, ok = obj["query"].(string)
		}
		if !ok {
			return nil, fmt.Errorf("%s has no query", where)
		}
		expr, err := variableExpr(q)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if expr != "" {
			qs = append(qs, query{where, expr})
		}
	}
	return qs, nil
}

func dashboardExprs(t *testing.T) []string {
	t.Helper()
	qs, err := queries(loadDashboard(t))
	if err != nil {
		t.Fatal(err)
	}
	exprs := make([]string, len(qs))
	for i, q := range qs {
		exprs[i] = q.expr
	}
	return exprs
}

func TestDashboardQueriesOnlyExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	qs, err := queries(loadDashboard(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	t.Logf("%d metric families exported, %d queries", len(exported), len(qs))
	for _, q := range qs {
		sels, err := selectors(q.expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		if len(sels) == 0 {
			t.Errorf("%s queries no metric: %s", q.where, q.expr)
		}
		if unknown, _ := unknownMetrics([]string{q.expr}, exported); len(unknown) > 0 {
			t.Errorf("%s queries metrics the webhook does not export: %v\n\t%s", q.where, unknown, q.expr)
		}
		if unknown, _ := unknownLabels([]string{q.expr}, exported); len(unknown) > 0 {
			t.Errorf("%s matches on labels the metric does not carry: %v\n\t%s", q.where, unknown, q.expr)
		}
	}

	t.Run("an unknown metric or label fails", func(t *testing.T) {
		for _, tc := range []struct {
			expr            string
			metrics, labels []string
		}{
			{expr: "rate(clustertrust_nonexistent_total[5m])", metrics: []string{"clustertrust_nonexistent_total"}},
			{expr: "sum by (result) (rate(clustertrust_tokenreview_total[5m]))", metrics: []string{"clustertrust_tokenreview_total"}},
			// clustertrust_issuers is a gauge: it has no buckets.
			{expr: "sum by (le) (clustertrust_issuers_bucket)", metrics: []string{"clustertrust_issuers_bucket"}},
			{expr: "up", metrics: []string{"up"}},
			{expr: `sum(rate(clustertrust_unknown_kid_refetches_total{result="fetched"}[5m]))`, labels: []string{"clustertrust_unknown_kid_refetches_total{result}"}},
			{expr: `clustertrust_jwks_last_success_timestamp_seconds{namespace="x"}`, labels: []string{"clustertrust_jwks_last_success_timestamp_seconds{namespace}"}},
			{expr: `sum by (le) (rate(clustertrust_tokenreview_duration_seconds_bucket{issuer=~"$issuer"}[5m]))`, labels: []string{"clustertrust_tokenreview_duration_seconds_bucket{issuer}"}},
			// What the dashboard does is accepted.
			{expr: `histogram_quantile(0.99, sum by (le) (rate(clustertrust_tokenreview_duration_seconds_bucket{le!="+Inf",result="error"}[$__rate_interval])))`},
			{expr: `sum(rate(clustertrust_tokenreview_duration_seconds_sum[5m])) / sum(rate(clustertrust_tokenreview_duration_seconds_count[5m]))`},
			{expr: `rate(go_gc_duration_seconds_count[5m]) + go_gc_duration_seconds_sum`},
			{expr: "go_memstats_heap_inuse_bytes and on (job, instance) clustertrust_issuers"},
		} {
			metrics, err := unknownMetrics([]string{tc.expr}, exported)
			if err != nil {
				t.Errorf("%s: %v", tc.expr, err)
				continue
			}
			labels, _ := unknownLabels([]string{tc.expr}, exported)
			if !slices.Equal(metrics, tc.metrics) || !slices.Equal(labels, tc.labels) {
				t.Errorf("%s: unknown metrics %v, labels %v; want %v, %v", tc.expr, metrics, labels, tc.metrics, tc.labels)
			}
		}
	})
}

func TestSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []selector
	}{
		{expr: `sum by (result) (rate(clustertrust_tokenreviews_total[$__rate_interval]))`, want: []selector{{metric: "clustertrust_tokenreviews_total"}}},
		{expr: `SUM BY (le) (rate(a_bucket{x="}",y!~'a\'b'} [5m:1m] offset 1h30m))`, want: []selector{{metric: "a_bucket", labels: []string{"x", "y"}}}},
		{expr: `sum(rate(a{issuer=~"$issuer"}[${__rate_interval}])) / sum without (pod) (b) * on (job) group_left (pod) c`, want: []selector{{metric: "a", labels: []string{"issuer"}}, {metric: "b"}, {metric: "c"}}},
		{expr: `time() - min by (issuer) (ts{issuer=~"$issuer"}) > bool 1e+3 or vector(0x1f) unless d`, want: []selector{{metric: "ts", labels: []string{"issuer"}}, {metric: "d"}}},
		{expr: `topk(5, count_values("v", ns:rule:rate5m)) and label_replace(e, "dst", "$1", "src", "(.*)")`, want: []selector{{metric: "ns:rule:rate5m"}, {metric: "e"}}},
		{expr: `histogram_quantile(0.5, x)`, want: []selector{{metric: "x"}}},
	} {
		got, err := selectors(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`{__name__="x"}`, `x{a="b"`, `x{a}`, `x{a=b}`, `rate(x[5m)`, `x{a="b}`, `sum by (a`} {
		if got, err := selectors(bad); err == nil {
			t.Errorf("%s: got %v, want an error", bad, got)
		}
	}
}

func TestVariableExpr(t *testing.T) {
	for q, want := range map[string]string{
		"label_values(clustertrust_tokenreviews_total, issuer)":            `clustertrust_tokenreviews_total{issuer!=""}`,
		`label_values(clustertrust_tokenreviews_total{result="x"},issuer)`: `clustertrust_tokenreviews_total{result="x",issuer!=""}`,
		"label_values(m{}, l)":         `m{l!=""}`,
		"label_values(issuer)":         "",
		"query_result(sum by (a) (m))": "sum by (a) (m)",
		"label_names()":                "",
	} {
		got, err := variableExpr(q)
		if err != nil || got != want {
			t.Errorf("variableExpr(%q) = %q, %v; want %q", q, got, err, want)
		}
	}
	for _, bad := range []string{"label_values(m, )", "label_values(m, a b)", "up"} {
		if got, err := variableExpr(bad); err == nil {
			t.Errorf("variableExpr(%q) = %q, want an error", bad, got)
		}
	}
}

func TestQueriesWalksRowsAndVariables(t *testing.T) {
	var dash map[string]any
	if err := json.Unmarshal([]byte(`{
  "panels": [
    {"id": 1, "type": "timeseries", "targets": [{"refId": "A", "expr": "a"}]},
    {"id": 2, "type": "row", "collapsed": true, "panels": [
      {"id": 3, "type": "stat", "targets": [{"refId": "A", "expr": "b"}, {"refId": "B", "expr": "c"}]}
    ]}
  ],
  "templating": {"list": [
    {"name": "datasource", "type": "datasource", "query": "prometheus"},
    {"name": "x", "type": "query", "query": "label_values(d, x)"},
    {"name": "y", "type": "query", "query": {"query": "query_result(e)", "refId": "V"}}
  ]}
}`), &dash); err != nil {
		t.Fatal(err)
	}
	qs, err := queries(dash)
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, q := range qs {
		exprs = append(exprs, q.expr)
	}
	if want := []string{"a", "b", "c", `d{x!=""}`, "e"}; !slices.Equal(exprs, want) {
		t.Errorf("queries %q, want %q", exprs, want)
	}
	dash["panels"] = append(dash["panels"].([]any), map[string]any{"id": 4.0, "targets": []any{map[string]any{"refId": "A"}}})
	if _, err := queries(dash); err == nil {
		t.Error("a target without expr was not refused")
	}
}

func TestDashboardCoversTheIssue(t *testing.T) {
	exprs := dashboardExprs(t)
	queried := map[string]bool{}
	for _, expr := range exprs {
		sels, err := selectors(expr)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sels {
			queried[s.metric] = true
		}
	}
	for _, name := range []string{
		"clustertrust_tokenreviews_total",
		"clustertrust_tokenreview_duration_seconds_bucket",
		"clustertrust_jwks_fetches_total",
		"clustertrust_jwks_last_success_timestamp_seconds",
		"clustertrust_cache_requests_total",
		"clustertrust_issuers",
		"clustertrust_unknown_kid_refetches_total",
		"process_resident_memory_bytes",
		"go_memstats_heap_inuse_bytes",
	} {
		if !queried[name] {
			t.Errorf("the dashboard does not query %s", name)
		}
	}
	overloaded := false
	for _, expr := range exprs {
		overloaded = overloaded || strings.Contains(expr, `clustertrust_tokenreviews_total{result="overloaded"}`)
	}
	if !overloaded {
		t.Error(`the dashboard does not query clustertrust_tokenreviews_total{result="overloaded"}`)
	}
}

func TestDashboardPanels(t *testing.T) {
	dash := loadDashboard(t)
	if dash["uid"] != "clustertrust" || dash["title"] != "clustertrust" || dash["schemaVersion"] != 39.0 {
		t.Errorf("uid %v, title %v, schemaVersion %v; want clustertrust, clustertrust, 39", dash["uid"], dash["title"], dash["schemaVersion"])
	}
	ids := map[float64]string{}
	for _, p := range panels(dash) {
		id, ok := p["id"].(float64)
		if !ok || id <= 0 {
			t.Errorf("panel %q has no id", p["title"])
			continue
		}
		if other, dup := ids[id]; dup {
			t.Errorf("panels %q and %q share id %v", other, p["title"], id)
		}
		ids[id] = fmt.Sprint(p["title"])
		if title, _ := p["title"].(string); title == "" {
			t.Errorf("panel %v has no title", id)
		}
		if pos, _ := p["gridPos"].(map[string]any); pos == nil || pos["x"].(float64)+pos["w"].(float64) > 24 {
			t.Errorf("panel %v %q: gridPos %v is not within the 24 columns", id, p["title"], p["gridPos"])
		}
		if p["type"] == "row" {
			if ds, ok := p["datasource"]; ok && !jsonEqual(ds, datasource) {
				t.Errorf("row %v %q: datasource %v, want %v", id, p["title"], ds, datasource)
			}
			continue
		}
		if !jsonEqual(p["datasource"], datasource) {
			t.Errorf("panel %v %q: datasource %v, want %v", id, p["title"], p["datasource"], datasource)
		}
		ts := targets(p)
		if len(ts) == 0 {
			t.Errorf("panel %v %q has no targets", id, p["title"])
		}
		refIDs := map[any]bool{}
		for _, tg := range ts {
			if !jsonEqual(tg["datasource"], datasource) {
				t.Errorf("panel %v %q, target %v: datasource %v, want %v", id, p["title"], tg["refId"], tg["datasource"], datasource)
			}
			if refIDs[tg["refId"]] {
				t.Errorf("panel %v %q: refId %v twice", id, p["title"], tg["refId"])
			}
			refIDs[tg["refId"]] = true
		}
	}

	vars := map[string]map[string]any{}
	for _, v := range variables(dash) {
		vars[fmt.Sprint(v["name"])] = v
		if v["type"] == "query" && !jsonEqual(v["datasource"], datasource) {
			t.Errorf("variable %v: datasource %v, want %v", v["name"], v["datasource"], datasource)
		}
	}
	if ds := vars["datasource"]; ds == nil || ds["type"] != "datasource" || ds["query"] != "prometheus" {
		t.Errorf("variable datasource is %v, want a Prometheus datasource variable", ds)
	}
	if iss := vars["issuer"]; iss == nil || iss["type"] != "query" || iss["multi"] != true || iss["includeAll"] != true {
		t.Errorf("variable issuer is %v, want a multi-value query variable with All", iss)
	}
	if len(vars) != 2 {
		t.Errorf("variables %v, want datasource and issuer only", slices.Sorted(maps.Keys(vars)))
	}
}

// TestDashboardIsFormatted keeps the file as encoding/json indents it, with two spaces, so that a
// change to it diffs as what changed.
func TestDashboardIsFormatted(t *testing.T) {
	var compact, indented bytes.Buffer
	if err := json.Compact(&compact, Dashboard); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&indented, compact.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	indented.WriteByte('\n')
	if !bytes.Equal(indented.Bytes(), Dashboard) {
		t.Error("clustertrust.json is not indented with two spaces, one value a line, and a final newline")
	}
}

func jsonEqual(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// TestAlertsQueryOnlyExportedMetrics holds config/prometheus/alerts.yaml (which the chart ships as its
// PrometheusRule) to the same rule as the dashboard: every metric and label an alert reads is exported.
func TestAlertsQueryOnlyExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := sigsyaml.Unmarshal(b, &rule); err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	n := 0
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			n++
			if unknown, err := unknownMetrics([]string{r.Expr}, exported); err != nil || len(unknown) > 0 {
				t.Errorf("alert %s reads metrics the webhook does not export: %v %v", r.Alert, unknown, err)
			}
			if unknown, err := unknownLabels([]string{r.Expr}, exported); err != nil || len(unknown) > 0 {
				t.Errorf("alert %s matches on labels the metric does not carry: %v %v", r.Alert, unknown, err)
			}
		}
	}
	if n < 5 {
		t.Fatalf("read %d alerts; the file has more", n)
	}
}
