package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseValues(t *testing.T) {
	for _, tc := range []struct {
		name         string
		values       string
		rows         []row
		undocumented []string
	}{{
		name: "nested paths",
		values: `
tls:
  certManager:
    # -- How long a certificate lives.
    duration: 2160h
  # -- Secret holding the serving certificate.
  secretName: serving
`,
		rows: []row{
			{"`tls.certManager.duration`", "string", "`\"2160h\"`", "How long a certificate lives."},
			{"`tls.secretName`", "string", "`\"serving\"`", "Secret holding the serving certificate."},
		},
	}, {
		name: "multi-line description",
		values: `
# Ordinary comment, not part of the description.
# -- Number of webhook pods;
# more than one needs
#
#   a PodDisruptionBudget.
replicas: 2
`,
		rows: []row{{"`replicas`", "int", "`2`", "Number of webhook pods; more than one needs a PodDisruptionBudget."}},
	}, {
		name: "@default",
		values: `
image:
  # -- Image tag.
  # @default -- the chart's appVersion
  tag: ""
`,
		rows: []row{{"`image.tag`", "string", "the chart's appVersion", "Image tag."}},
	}, {
		name: "type override",
		values: `
# -- (object) Resources of the webhook container.
resources: null
# -- (int)
maxConcurrentReviews: 256
`,
		rows: []row{
			{"`resources`", "object", "`null`", "Resources of the webhook container."},
			{"`maxConcurrentReviews`", "int", "`256`", ""},
		},
		// A type with no words describes nothing: -strict refuses it.
		undocumented: []string{"maxConcurrentReviews"},
	}, {
		name: "types and defaults",
		values: `
# -- s
s: secret
# -- i
i: 2
# -- f
f: 0.5
# -- b
b: false
# -- l
l: [a, b]
# -- el
el: []
# -- eo
eo: {}
# -- n
n:
# -- html
html: "<a&b>"
`,
		rows: []row{
			{"`s`", "string", "`\"secret\"`", "s"},
			{"`i`", "int", "`2`", "i"},
			{"`f`", "float", "`0.5`", "f"},
			{"`b`", "bool", "`false`", "b"},
			{"`l`", "list", "`[\"a\",\"b\"]`", "l"},
			{"`el`", "list", "`[]`", "el"},
			{"`eo`", "object", "`{}`", "eo"},
			{"`n`", "string", "`null`", "n"},
			{"`html`", "string", "`\"<a&b>\"`", "html"},
		},
	}, {
		name: "undocumented leaves",
		values: `
# An ordinary comment.
plain: 1
# -- Separated from its key by a blank line, so not its description.

separated: 2
# --flag is a commented-out argument, not a description.
flag: 3

# -- A description a paragraph away from its key.

# Ordinary.
stale: 4
serve:
  # -- Documented.
  port: 9443
  address: ""
  nested:
    deep: true
# -- Empty flow mapping, a leaf.
empty: {}
flow: {a: 1}
`,
		rows: []row{
			{"`serve.port`", "int", "`9443`", "Documented."},
			{"`empty`", "object", "`{}`", "Empty flow mapping, a leaf."},
		},
		undocumented: []string{"plain", "separated", "flag", "stale", "serve.address", "serve.nested.deep", "flow"},
	}, {
		name: "parent-only documentation",
		values: `
# -- Pod security context.
podSecurityContext:
  runAsNonRoot: true
  seccompProfile:
    type: RuntimeDefault
after: 1
`,
		rows:         []row{{"`podSecurityContext`", "object", "`{\"runAsNonRoot\":true,\"seccompProfile\":{\"type\":\"RuntimeDefault\"}}`", "Pod security context."}},
		undocumented: []string{"after"},
	}, {
		name: "parent and children documented",
		values: `
# -- Metrics endpoint.
metrics:
  # -- Port to serve metrics on.
  port: 8080
  path: /metrics
`,
		rows: []row{
			{"`metrics`", "object", "`{\"path\":\"/metrics\",\"port\":8080}`", "Metrics endpoint."},
			{"`metrics.port`", "int", "`8080`", "Port to serve metrics on."},
		},
		undocumented: []string{"metrics.path"},
	}, {
		name: "grandchild documented",
		values: `
# -- Outer.
a:
  b:
    # -- Inner.
    c: 1
    d: 2
`,
		rows: []row{
			{"`a`", "object", "`{\"b\":{\"c\":1,\"d\":2}}`", "Outer."},
			{"`a.b.c`", "int", "`1`", "Inner."},
		},
		undocumented: []string{"a.b.d"},
	}, {
		name: "pipe escaping",
		values: `
# -- (a|b) One | the other.
# @default -- x | y
choice: a
# -- Pattern.
pattern: "a|b"
`,
		rows: []row{
			{"`choice`", `a\|b`, `x \| y`, `One \| the other.`},
			{"`pattern`", "string", "`\"a\\|b\"`", "Pattern."},
		},
	}, {
		name: "dashed and dotted keys",
		values: `
serve:
  # -- Reviews served at once.
  max-concurrent-reviews: 256
annotations:
  # -- An annotation.
  example.com/owner: team
`,
		rows: []row{
			{"`serve.max-concurrent-reviews`", "int", "`256`", "Reviews served at once."},
			{"`annotations.example.com/owner`", "string", "`\"team\"`", "An annotation."},
		},
	}, {
		name:   "empty file",
		values: "# just a comment\n",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rows, undocumented, err := parseValues([]byte(tc.values))
			if err != nil {
				t.Fatalf("parseValues: %v", err)
			}
			if !reflect.DeepEqual(rows, tc.rows) {
				t.Errorf("rows:\n got %q\nwant %q", rows, tc.rows)
			}
			var paths []string
			for _, u := range undocumented {
				paths = append(paths, u.path)
			}
			if !reflect.DeepEqual(paths, tc.undocumented) {
				t.Errorf("undocumented: got %q, want %q", paths, tc.undocumented)
			}
		})
	}
}

func TestParseValuesErrors(t *testing.T) {
	for name, values := range map[string]string{
		"not YAML":      "a: [\n",
		"not a mapping": "- a\n- b\n",
	} {
		if _, _, err := parseValues([]byte(values)); err == nil {
			t.Errorf("%s: parseValues succeeded", name)
		}
	}
}

func TestUndocumentedLines(t *testing.T) {
	_, undocumented, err := parseValues([]byte("# -- a\na: 1\nb:\n  c: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []undocumentedValue{{path: "b.c", line: 4}}
	if !reflect.DeepEqual(undocumented, want) {
		t.Errorf("got %+v, want %+v", undocumented, want)
	}
}

func TestBareMarkerIsUndocumented(t *testing.T) {
	_, undocumented, err := parseValues([]byte("# -- a\na: 1\n# --\nb: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []undocumentedValue{{path: "b", line: 4}}
	if !reflect.DeepEqual(undocumented, want) {
		t.Errorf("got %+v, want %+v", undocumented, want)
	}
}

func TestRenderTable(t *testing.T) {
	got := renderTable([]row{{"`a`", "int", "`1`", "One."}, {"`b`", "string", "see below", ""}})
	want := "| Key | Type | Default | Description |\n" +
		"|-----|------|---------|-------------|\n" +
		"| `a` | int | `1` | One. |\n" +
		"| `b` | string | see below |  |\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestReplaceTable(t *testing.T) {
	const table = "| T |\n"
	readme := "# Chart\n\n" + startMarker + "\n| old |\n| rows |\n" + endMarker + "\n\nAfter.\n"
	want := "# Chart\n\n" + startMarker + "\n| T |\n" + endMarker + "\n\nAfter.\n"
	got, err := replaceTable(readme, table)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	again, err := replaceTable(got, table)
	if err != nil {
		t.Fatal(err)
	}
	if again != got {
		t.Errorf("not idempotent: second pass gave\n%s", again)
	}

	// Adjacent markers, at the very start and end of the file.
	got, err = replaceTable(startMarker+"\n"+endMarker, table)
	if err != nil {
		t.Fatal(err)
	}
	if want := startMarker + "\n| T |\n" + endMarker; got != want {
		t.Errorf("adjacent markers: got %q, want %q", got, want)
	}
}

func TestReplaceTableMissingMarkers(t *testing.T) {
	for name, readme := range map[string]string{
		"no markers":          "# Chart\n",
		"no start":            "# Chart\n" + endMarker + "\n",
		"no end":              "# Chart\n" + startMarker + "\n",
		"end before start":    endMarker + "\n" + startMarker + "\n",
		"start not own line":  "see " + startMarker + "\n" + endMarker + "\n",
		"end not own line":    startMarker + "\n" + endMarker + " x\n",
		"start at end of end": startMarker,
	} {
		if got, err := replaceTable(readme, "| T |\n"); err == nil {
			t.Errorf("%s: replaceTable succeeded: %q", name, got)
		} else if !strings.Contains(err.Error(), "values-table:") {
			t.Errorf("%s: error does not name the missing marker: %v", name, err)
		}
	}
}

// writeChart writes a values.yaml and a README under dir/charts/clustertrust, the default paths.
func writeChart(t *testing.T, dir, values, readme string) (valuesPath, readmePath string) {
	t.Helper()
	chart := filepath.Join(dir, "charts", "clustertrust")
	if err := os.MkdirAll(chart, 0o755); err != nil {
		t.Fatal(err)
	}
	valuesPath, readmePath = filepath.Join(chart, "values.yaml"), filepath.Join(chart, "README.md")
	if err := os.WriteFile(valuesPath, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(readmePath, []byte(readme), 0o644); err != nil {
		t.Fatal(err)
	}
	return valuesPath, readmePath
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRunCheckAndWrite(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	stale := "# Chart\n" + startMarker + "\n| old |\n" + endMarker + "\n"
	_, readmePath := writeChart(t, dir, "# -- Replicas.\nreplicas: 2\n", stale)
	var stderr bytes.Buffer

	err := run([]string{"-check"}, &stderr)
	if err == nil || err.Error() != "charts/clustertrust/README.md is out of date: run make chart-docs" {
		t.Fatalf("-check on a stale README: got %v", err)
	}
	if got := readFile(t, readmePath); got != stale {
		t.Fatalf("-check wrote the README:\n%s", got)
	}

	if err := run(nil, &stderr); err != nil {
		t.Fatalf("run: %v", err)
	}
	want := "# Chart\n" + startMarker + "\n" +
		"| Key | Type | Default | Description |\n" +
		"|-----|------|---------|-------------|\n" +
		"| `replicas` | int | `2` | Replicas. |\n" +
		endMarker + "\n"
	if got := readFile(t, readmePath); got != want {
		t.Fatalf("README:\n%s\nwant\n%s", got, want)
	}
	if err := run([]string{"-check"}, &stderr); err != nil {
		t.Errorf("-check on the README just written: %v", err)
	}
	if err := run(nil, &stderr); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if got := readFile(t, readmePath); got != want {
		t.Errorf("second run changed the README:\n%s", got)
	}
	if stderr.Len() != 0 {
		t.Errorf("unexpected stderr: %s", stderr.String())
	}
}

func TestRunPaths(t *testing.T) {
	dir := t.TempDir()
	valuesPath, readmePath := writeChart(t, dir, "# -- A.\na: x\n", startMarker+"\n"+endMarker+"\n")
	var stderr bytes.Buffer
	if err := run([]string{"-values", valuesPath, "-readme", readmePath}, &stderr); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, readmePath); !strings.Contains(got, "\n| `a` | string | `\"x\"` | A. |\n") {
		t.Errorf("README has no row for a:\n%s", got)
	}
}

func TestRunMissingMarkers(t *testing.T) {
	dir := t.TempDir()
	valuesPath, readmePath := writeChart(t, dir, "# -- A.\na: 1\n", "# Chart\n")
	var stderr bytes.Buffer
	err := run([]string{"-values", valuesPath, "-readme", readmePath}, &stderr)
	if err == nil || !strings.Contains(err.Error(), readmePath+": no "+startMarker+" line") {
		t.Errorf("got %v, want the missing start marker named", err)
	}
}

func TestRunUndocumented(t *testing.T) {
	dir := t.TempDir()
	readme := startMarker + "\n" + endMarker + "\n"
	valuesPath, readmePath := writeChart(t, dir, "# -- A.\na: 1\nb: 2\nc:\n  d: 3\n", readme)
	args := []string{"-values", valuesPath, "-readme", readmePath}

	var stderr bytes.Buffer
	if err := run(args, &stderr); err != nil {
		t.Fatalf("without -strict: %v", err)
	}
	wantWarnings := "chartdoc: warning: " + valuesPath + ":3: b has no `# --` description\n" +
		"chartdoc: warning: " + valuesPath + ":5: c.d has no `# --` description\n"
	if stderr.String() != wantWarnings {
		t.Errorf("warnings:\n%s\nwant\n%s", stderr.String(), wantWarnings)
	}

	if err := os.WriteFile(readmePath, []byte(readme), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run(append(args, "-strict"), &bytes.Buffer{})
	if err == nil || err.Error() != valuesPath+": values with no `# --` description: b, c.d" {
		t.Errorf("-strict: got %v", err)
	}
	if got := readFile(t, readmePath); got != readme {
		t.Errorf("-strict wrote the README despite failing:\n%s", got)
	}
}

func TestRunBadArgs(t *testing.T) {
	for _, args := range [][]string{{"extra"}, {"-nope"}} {
		var stderr bytes.Buffer
		if err := run(args, &stderr); err == nil {
			t.Errorf("%q: run succeeded", args)
		}
		if !strings.Contains(stderr.String(), usageLine) {
			t.Errorf("%q: no usage on stderr: %s", args, stderr.String())
		}
	}
}
