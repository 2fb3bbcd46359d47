// Command chartdoc is `make chart-docs`: it generates the values table of the Helm chart's README from
// the comments in its values.yaml, in the style of helm-docs.
//
// A key is documented by the comment block directly above it, from a line starting `# --` down to the
// key (comment lines above the `# --` line are ordinary comments and ignored):
//
//	# -- (int) Reviews served at once; the description may go on
//	# over several lines.
//	# @default -- twice the CPUs
//	maxConcurrentReviews: 0
//
// The optional `(type)` overrides the type read from the value, and `@default -- text` the default
// shown (otherwise the value as compact JSON). The path of a nested key is dotted (`tls.duration`). A
// documented mapping none of whose keys is documented is one row, the whole mapping its default;
// otherwise each documented key below it has a row of its own. Rows follow values.yaml's order.
//
// The table replaces what lies between the README lines `<!-- values-table:start -->` and
// `<!-- values-table:end -->`. Each undocumented value (a key with no mapping below it, outside a
// mapping documented as a whole) is warned about on stderr; -strict makes them an error, and -check
// fails instead of writing when the README is out of date, so that `make verify` catches both.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

const (
	startMarker = "<!-- values-table:start -->"
	endMarker   = "<!-- values-table:end -->"
	tableHeader = "| Key | Type | Default | Description |\n|-----|------|---------|-------------|\n"
	usageLine   = "usage: chartdoc [-values path] [-readme path] [-check] [-strict]"
)

var (
	// descLine starts a description: `# --` then a space or the end of the line (so `# --flag`, a
	// commented-out argument, is not one).
	descLine = regexp.MustCompile(`^#\s*--(?:\s+(.*))?$`)
	// defaultLine overrides the default shown.
	defaultLine = regexp.MustCompile(`^#\s*@default\s*--\s*(.*)$`)
	// typePrefix overrides the type, at the start of the description.
	typePrefix = regexp.MustCompile(`^\(([^()\s]+)\)\s*`)
)

func main() {
	err := run(os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		// -h: the usage is printed.
	case err != nil:
		fmt.Fprintf(os.Stderr, "chartdoc: %v\n", err)
		os.Exit(1)
	}
}

// run is the command: it parses args, writes warnings to stderr and returns what fails.
func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("chartdoc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	valuesPath := fs.String("values", "charts/clustertrust/values.yaml", "the chart's values.yaml")
	readmePath := fs.String("readme", "charts/clustertrust/README.md", "the README whose values table to generate")
	check := fs.Bool("check", false, "do not write; fail if the README is out of date")
	strict := fs.Bool("strict", false, "fail if a value has no # -- description")
	fs.Usage = func() {
		fmt.Fprintln(stderr, usageLine)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	values, err := os.ReadFile(*valuesPath)
	if err != nil {
		return fmt.Errorf("reading values: %w", err)
	}
	rows, undocumented, err := parseValues(values)
	if err != nil {
		return fmt.Errorf("%s: %w", *valuesPath, err)
	}
	for _, u := range undocumented {
		fmt.Fprintf(stderr, "chartdoc: warning: %s:%d: %s has no `# --` description\n", *valuesPath, u.line, u.path)
	}
	if *strict && len(undocumented) > 0 {
		paths := make([]string, len(undocumented))
		for i, u := range undocumented {
			paths[i] = u.path
		}
		return fmt.Errorf("%s: values with no `# --` description: %s", *valuesPath, strings.Join(paths, ", "))
	}

	readme, err := os.ReadFile(*readmePath)
	if err != nil {
		return fmt.Errorf("reading README: %w", err)
	}
	updated, err := replaceTable(string(readme), renderTable(rows))
	if err != nil {
		return fmt.Errorf("%s: %w", *readmePath, err)
	}
	if updated == string(readme) {
		return nil
	}
	if *check {
		return fmt.Errorf("%s is out of date: run make chart-docs", *readmePath)
	}
	info, err := os.Stat(*readmePath)
	if err != nil {
		return fmt.Errorf("writing README: %w", err)
	}
	if err := os.WriteFile(*readmePath, []byte(updated), info.Mode().Perm()); err != nil {
		return fmt.Errorf("writing README: %w", err)
	}
	return nil
}

// row is one line of the values table, its cells ready for Markdown.
type row struct {
	key, typ, def, desc string
}

// undocumentedValue is a value with no description.
type undocumentedValue struct {
	path string
	line int
}

// doc is what a `# --` comment block says of a key.
type doc struct {
	typ, desc  string
	def        string
	hasDefault bool
}

// parseValues returns the table rows of the documented keys of a values.yaml and its undocumented
// values, both in the file's order.
func parseValues(data []byte) ([]row, []undocumentedValue, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, fmt.Errorf("parsing YAML: %w", err)
	}
	if len(root.Content) == 0 {
		return nil, nil, nil // no document
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("line %d: the values are not a mapping", top.Line)
	}
	var w walker
	if err := w.mapping(top, ""); err != nil {
		return nil, nil, err
	}
	return w.rows, w.undocumented, nil
}

// walker collects rows and undocumented values over nested mappings.
type walker struct {
	rows         []row
	undocumented []undocumentedValue
}

func (w *walker) mapping(m *yaml.Node, prefix string) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, value := m.Content[i], m.Content[i+1]
		path := key.Value
		if prefix != "" {
			path = prefix + "." + key.Value
		}
		d, documented := parseDoc(key.HeadComment)
		if documented && d.desc == "" {
			// A bare `# --` describes nothing: count it as undocumented.
			w.undocumented = append(w.undocumented, undocumentedValue{path: path, line: key.Line})
		}
		if documented {
			r, err := makeRow(path, value, d)
			if err != nil {
				return fmt.Errorf("line %d: %s: %w", key.Line, path, err)
			}
			w.rows = append(w.rows, r)
		}
		switch {
		case isBlockMapping(value) && (!documented || hasDocumentedKey(value)):
			if err := w.mapping(value, path); err != nil {
				return err
			}
		case !documented && !isBlockMapping(value):
			w.undocumented = append(w.undocumented, undocumentedValue{path: path, line: key.Line})
		}
	}
	return nil
}

// isBlockMapping reports whether n is a mapping whose keys are documented on lines of their own, as
// opposed to a flow mapping like `{}` or `{a: 1}`, which is one value.
func isBlockMapping(n *yaml.Node) bool {
	return n.Kind == yaml.MappingNode && n.Style&yaml.FlowStyle == 0 && len(n.Content) > 0
}

// hasDocumentedKey reports whether any key of the mapping m, at any depth, is documented.
func hasDocumentedKey(m *yaml.Node) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if _, ok := parseDoc(m.Content[i].HeadComment); ok {
			return true
		}
		if v := m.Content[i+1]; isBlockMapping(v) && hasDocumentedKey(v) {
			return true
		}
	}
	return false
}

// parseDoc reads a key's head comment: the description starts at the last `# --` line of the
// paragraph directly above the key. ok is false when there is none.
func parseDoc(comment string) (d doc, ok bool) {
	var words []string
	for _, line := range strings.Split(comment, "\n") {
		line = strings.TrimSpace(line)
		switch m := descLine.FindStringSubmatch(line); {
		case line == "": // a blank line ends a paragraph not directly above the key
			d, ok, words = doc{}, false, nil
		case m != nil:
			d, ok, words = doc{}, true, strings.Fields(m[1])
		case !ok:
			// An ordinary comment.
		case defaultLine.MatchString(line):
			d.def, d.hasDefault = strings.TrimSpace(defaultLine.FindStringSubmatch(line)[1]), true
		default:
			words = append(words, strings.Fields(strings.TrimPrefix(line, "#"))...)
		}
	}
	d.desc = strings.Join(words, " ")
	if m := typePrefix.FindStringSubmatch(d.desc); m != nil {
		d.typ, d.desc = m[1], d.desc[len(m[0]):]
	}
	return d, ok
}

// makeRow renders the row of the key at path whose value is v.
func makeRow(path string, v *yaml.Node, d doc) (row, error) {
	r := row{key: "`" + escapeCell(path) + "`", typ: escapeCell(d.typ), desc: escapeCell(d.desc)}
	if r.typ == "" {
		r.typ = typeOf(v)
	}
	if d.hasDefault {
		r.def = escapeCell(d.def)
		return r, nil
	}
	def, err := compactJSON(v)
	if err != nil {
		return row{}, err
	}
	r.def = "`" + escapeCell(def) + "`"
	return r, nil
}

// typeOf names the type of a value. A null is a string, as helm-docs has it: `# -- (type)` says
// otherwise.
func typeOf(v *yaml.Node) string {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	switch v.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "object"
	}
	switch v.ShortTag() {
	case "!!int":
		return "int"
	case "!!float":
		return "float"
	case "!!bool":
		return "bool"
	}
	return "string"
}

// compactJSON renders a value as compact JSON, mapping keys sorted.
func compactJSON(v *yaml.Node) (string, error) {
	var value any
	if err := v.Decode(&value); err != nil {
		return "", fmt.Errorf("decoding the value: %w", err)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(value); err != nil {
		return "", fmt.Errorf("rendering the default as JSON: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// escapeCell keeps a `|` from ending a table cell (GitHub Markdown honours `\|` in code spans too).
func escapeCell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}

// renderTable renders the values table, header included, each line ending in a newline.
func renderTable(rows []row) string {
	var b strings.Builder
	b.WriteString(tableHeader)
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.key, r.typ, r.def, r.desc)
	}
	return b.String()
}

// replaceTable returns readme with what lies between its marker lines replaced by table.
func replaceTable(readme, table string) (string, error) {
	start := findLine(readme, startMarker, 0)
	if start < 0 {
		return "", fmt.Errorf("no %s line: put the lines %s and %s where the values table goes", startMarker, startMarker, endMarker)
	}
	bodyStart := start + len(startMarker) + 1 // after the marker's newline
	if bodyStart > len(readme) {
		bodyStart = len(readme)
	}
	end := findLine(readme, endMarker, bodyStart)
	if end < 0 {
		return "", fmt.Errorf("no %s line after the %s line", endMarker, startMarker)
	}
	return readme[:start] + startMarker + "\n" + table + readme[end:], nil
}

// findLine returns the offset of the first line of s, at or after offset from, that is exactly line, or
// -1.
func findLine(s, line string, from int) int {
	for i := from; i <= len(s); {
		j := strings.Index(s[i:], line)
		if j < 0 {
			return -1
		}
		j += i
		end := j + len(line)
		if (j == 0 || s[j-1] == '\n') && (end == len(s) || s[end] == '\n') {
			return j
		}
		i = j + 1
	}
	return -1
}
