package registry

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/authn"
	"github.com/clustertrust/clustertrust/internal/testissuer"
)

func TestParseManifests(t *testing.T) {
	t.Parallel()
	const valid = `apiVersion: authentication.clustertrust.io/v1alpha1
kind: OpenIDConnect
metadata: {name: %s}
spec: {issuerURL: "https://hub.example", audiences: [downstream]}
`
	tests := []struct {
		name    string
		data    string
		want    []string // names
		wantErr string
	}{
		{name: "one", data: fmt.Sprintf(valid, "hub"), want: []string{"hub"}},
		{name: "several with comments and empty documents", data: "# issuers\n---\n" + fmt.Sprintf(valid, "a") + "---\n# nothing\n---\n" + fmt.Sprintf(valid, "b"), want: []string{"a", "b"}},
		{name: "json", data: `{"apiVersion":"authentication.clustertrust.io/v1alpha1","kind":"OpenIDConnect","metadata":{"name":"j"},"spec":{"issuerURL":"https://j.example","audiences":["d"]}}`, want: []string{"j"}},
		{name: "empty file", data: "", want: nil},
		{name: "not yaml", data: "{{{", wantErr: "document 1"},
		{name: "unknown field", data: strings.Replace(fmt.Sprintf(valid, "hub"), "audiences", "audience", 1), wantErr: `unknown field "audience"`},
		{name: "other kind", data: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", wantErr: "want authentication.clustertrust.io/v1alpha1 OpenIDConnect"},
		{name: "no name", data: strings.Replace(fmt.Sprintf(valid, "hub"), "metadata: {name: hub}", "metadata: {}", 1), wantErr: "metadata.name is required"},
		{name: "namespaced", data: strings.Replace(fmt.Sprintf(valid, "hub"), "name: hub", "name: hub, namespace: x", 1), wantErr: "cluster-scoped"},
		{name: "twice", data: fmt.Sprintf(valid, "hub") + "---\n" + fmt.Sprintf(valid, "hub"), wantErr: "declared twice"},
		{name: "invalid spec", data: strings.Replace(fmt.Sprintf(valid, "hub"), "https://", "http://", 1), wantErr: `OpenIDConnect "hub": issuerURL must be an https URL`},
		{name: "system prefix", data: strings.Replace(fmt.Sprintf(valid, "hub"), "audiences:", "usernamePrefix: 'system:', audiences:", 1), wantErr: "must not start with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			objs, err := ParseManifests([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, o := range objs {
				names = append(names, o.Name)
			}
			if fmt.Sprint(names) != fmt.Sprint(tt.want) {
				t.Fatalf("names = %v, want %v", names, tt.want)
			}
		})
	}
}

// TestFileSource drives a directory through the changes an operator makes: a first good file, a broken
// edit (the last good objects stay and the file is counted invalid), a second file, a fixed edit that
// changes the mapping, and a removal.
func TestFileSource(t *testing.T) {
	t.Parallel()
	hub, err := testissuer.New(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	edge, err := testissuer.New(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(edge.Close)

	dir := t.TempDir()
	manifest := func(name string, iss *testissuer.Issuer, prefix string) string {
		return fmt.Sprintf(`apiVersion: authentication.clustertrust.io/v1alpha1
kind: OpenIDConnect
metadata:
  name: %s
spec:
  issuerURL: %q
  audiences: [downstream]
  usernamePrefix: %q
  jwks:
    keys: %s # base64, as every []byte field of a Kubernetes object
`, name, iss.URL, prefix, base64.StdEncoding.EncodeToString(iss.JWKS()))
	}
	write := func(file, content string) {
		t.Helper()
		// Write then rename, as editors and ConfigMap updates do, so a reload never sees half a file.
		tmp := filepath.Join(dir, ".tmp-"+file)
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
			t.Fatal(err)
		}
	}
	write("hub.yaml", manifest("hub", hub, "hub:"))

	router := authn.NewRouter()
	r := &Reconciler{Router: router, Log: logr.Discard(), EntryOptions: authn.EntryOptions{Compiler: compiler}}
	src := &FileSource{Dir: dir, Reconciler: r, Log: logr.Discard(), Debounce: 10 * time.Millisecond, Rescan: time.Hour}
	r.Objects = src
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		for _, name := range []string{"hub", "edge"} {
			router.Delete(name)
		}
	})

	hubToken, err := hub.Mint(testissuer.ServiceAccountClaims("tenant-a", "reconciler", "downstream"))
	if err != nil {
		t.Fatal(err)
	}
	username := func(token string) string {
		resp, ok, err := router.AuthenticateToken(context.Background(), token)
		if err != nil || !ok {
			return ""
		}
		return resp.User.GetName()
	}
	eventually(t, "hub routed and ready", func() bool {
		return src.ReadyChecker()(nil) == nil && username(hubToken) == "hub:system:serviceaccount:tenant-a:reconciler"
	})
	obj, err := src.Get(ctx, "hub")
	if err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("Ready = %+v", c)
	}

	// A broken edit: refused as a whole, the last good hub stays routed.
	write("hub.yaml", "apiVersion: authentication.clustertrust.io/v1alpha1\nkind: OpenIDConnect\nmetadata: {name: hub\n")
	eventually(t, "invalid file counted", func() bool {
		return testutil.ToFloat64(src.metrics.invalid) == 1 && testutil.ToFloat64(src.metrics.reloads.WithLabelValues("invalid_files")) >= 1
	})
	if got := username(hubToken); got != "hub:system:serviceaccount:tenant-a:reconciler" {
		t.Fatalf("after a broken edit username = %q, want the last good mapping", got)
	}

	// A second file is picked up while the first stays broken.
	write("edge.yaml", manifest("edge", edge, "edge:"))
	edgeToken, err := edge.Mint(testissuer.ServiceAccountClaims("ci", "runner", "downstream"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "edge routed", func() bool { return username(edgeToken) == "edge:system:serviceaccount:ci:runner" })

	// Fixing the file with a new prefix bumps the generation and the mapping.
	write("hub.yaml", manifest("hub", hub, "upstream:"))
	eventually(t, "hub remapped", func() bool {
		return username(hubToken) == "upstream:system:serviceaccount:tenant-a:reconciler" && testutil.ToFloat64(src.metrics.invalid) == 0
	})
	if obj, err := src.Get(ctx, "hub"); err != nil || obj.Generation != 2 || obj.Status.ObservedGeneration != 2 {
		t.Fatalf("hub after the fix: generation %d, observed %d, err %v; want 2, 2", obj.Generation, obj.Status.ObservedGeneration, err)
	}

	// Removing a file removes its issuers.
	if err := os.Remove(filepath.Join(dir, "hub.yaml")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "hub removed", func() bool { _, ok := router.Get("hub"); return !ok && username(hubToken) == "" })
	if username(edgeToken) == "" {
		t.Fatal("removing hub.yaml removed edge too")
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
