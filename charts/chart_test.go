// Package charts_test keeps the Helm chart in step with what it packages: the binary's version and
// flags, the generated CRD, the alerts and the dashboard.
package charts_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/clustertrust/clustertrust/cmd/webhook/app"
)

const chart = "clustertrust"

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path) //nolint:gosec // G304: files of this repository
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestChartVersionIsTheBinarys(t *testing.T) {
	var c struct {
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	readYAML(t, filepath.Join(chart, "Chart.yaml"), &c)
	if c.Version != app.Version || c.AppVersion != app.Version {
		t.Errorf("Chart.yaml has version %q and appVersion %q; the binary is %q: move them together", c.Version, c.AppVersion, app.Version)
	}
}

// chartSetFlags are the serve flags the chart's templates set from other values (where the files,
// ports and the kubeconfig are), so they are not in `serve`.
var chartSetFlags = map[string]bool{
	"source": true, "config-dir": true, "kubeconfig": true, "bind-address": true, "secure-port": true,
	"tls-cert-file": true, "tls-private-key-file": true, "client-ca-file": true, "client-allowed-names": true,
	"metrics-bind-address": true, "health-probe-bind-address": true, "leader-elect": true,
	"leader-election-namespace": true,
}

// serveValueProblems compares the chart's serve values with the binary's serve flags: each value must
// be a flag that parses to the flag's default, and each flag the chart does not set itself must be a value.
func serveValueProblems(values map[string]any, fs *pflag.FlagSet) []string {
	var problems []string
	for name, v := range values {
		f := fs.Lookup(name)
		if f == nil || chartSetFlags[name] {
			problems = append(problems, fmt.Sprintf("serve.%s is not a serve flag the chart leaves to operators", name))
			continue
		}
		s := fmt.Sprint(v)
		if n, ok := v.(float64); ok && n == float64(int64(n)) {
			s = fmt.Sprint(int64(n)) // as the template prints it
		}
		probe := pflag.NewFlagSet("probe", pflag.ContinueOnError)
		app.NewServeOptions().AddFlags(probe)
		if err := probe.Set(name, s); err != nil {
			problems = append(problems, fmt.Sprintf("serve.%s: %q does not parse as --%s: %v", name, s, name, err))
			continue
		}
		if got := probe.Lookup(name).Value.String(); got != f.DefValue {
			problems = append(problems, fmt.Sprintf("serve.%s is %s; the binary's default is %s", name, got, f.DefValue))
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if _, ok := values[f.Name]; !ok && !chartSetFlags[f.Name] {
			problems = append(problems, fmt.Sprintf("--%s is neither a serve value of the chart nor set by its templates", f.Name))
		}
	})
	sort.Strings(problems)
	return problems
}

func TestServeValuesAreTheBinarysFlagsAndDefaults(t *testing.T) {
	var values struct {
		Serve map[string]any `json:"serve"`
	}
	readYAML(t, filepath.Join(chart, "values.yaml"), &values)
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	app.NewServeOptions().AddFlags(fs)
	for _, p := range serveValueProblems(values.Serve, fs) {
		t.Error(p)
	}

	t.Run("a drifted default, a made-up flag and a missing flag are found", func(t *testing.T) {
		drifted := map[string]any{}
		for k, v := range values.Serve {
			drifted[k] = v
		}
		drifted["cache-ttl"] = "20s"
		drifted["max-concurrency"] = float64(3)
		delete(drifted, "max-token-bytes")
		got := serveValueProblems(drifted, fs)
		if len(got) != 3 {
			t.Fatalf("want 3 problems, got %d: %q", len(got), got)
		}
	})
}

func TestChartCopiesAreCurrent(t *testing.T) {
	for _, c := range []struct{ copy, source string }{
		{filepath.Join(chart, "crds", "authentication.clustertrust.io_openidconnects.yaml"), filepath.Join("..", "config", "crd", "bases", "authentication.clustertrust.io_openidconnects.yaml")},
		{filepath.Join(chart, "dashboards", "clustertrust.json"), filepath.Join("..", "config", "grafana", "clustertrust.json")},
	} {
		a, errA := os.ReadFile(c.copy)
		b, errB := os.ReadFile(c.source)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run make chart-docs", c.copy, c.source)
		}
	}
	var rules, alerts struct {
		Groups any `json:"groups"`
		Spec   struct {
			Groups any `json:"groups"`
		} `json:"spec"`
	}
	readYAML(t, filepath.Join(chart, "files", "prometheus-rules.yaml"), &rules)
	readYAML(t, filepath.Join("..", "config", "prometheus", "alerts.yaml"), &alerts)
	if rules.Groups == nil || !reflect.DeepEqual(rules.Groups, alerts.Spec.Groups) {
		t.Errorf("the chart's files/prometheus-rules.yaml groups differ from config/prometheus/alerts.yaml: run make chart-docs")
	}
}
