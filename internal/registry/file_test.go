package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

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
		{name: "unknown field", data: strings.Replace(fmt.Sprintf(valid, "hub"), "audiences", "audience", 1), wantErr: `OpenIDConnect "hub": OpenIDConnect in version "v1alpha1" cannot be handled as a OpenIDConnect: strict decoding error: unknown field "spec.audience"`},
		{name: "repeated key", data: strings.Replace(fmt.Sprintf(valid, "hub"), "audiences:", "issuerURL: https://other.example, audiences:", 1), wantErr: `line 4: key "issuerURL" already set in map`},
		{name: "not an object", data: "- a\n- b\n", wantErr: "document 1: json: cannot unmarshal array"},
		{name: "metadata not an object", data: strings.Replace(fmt.Sprintf(valid, "hub"), "metadata: {name: hub}", "metadata: hub", 1), wantErr: "document 1: metadata.name is required"},
		{name: "other kind", data: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", wantErr: "want authentication.clustertrust.io/v1alpha1 OpenIDConnect"},
		{name: "no name", data: strings.Replace(fmt.Sprintf(valid, "hub"), "metadata: {name: hub}", "metadata: {}", 1), wantErr: "metadata.name is required"},
		{name: "namespaced", data: strings.Replace(fmt.Sprintf(valid, "hub"), "name: hub", "name: hub, namespace: x", 1), wantErr: "cluster-scoped"},
		{name: "twice", data: fmt.Sprintf(valid, "hub") + "---\n" + fmt.Sprintf(valid, "hub"), wantErr: "declared twice"},
		{name: "invalid spec", data: strings.Replace(fmt.Sprintf(valid, "hub"), "https://", "http://", 1), wantErr: `OpenIDConnect.authentication.clustertrust.io "hub" is invalid: spec.issuerURL: Invalid value: "http://hub.example": issuerURL must be an https URL`},
		{name: "system prefix", data: strings.Replace(fmt.Sprintf(valid, "hub"), "audiences:", "usernamePrefix: 'system:', audiences:", 1), wantErr: `"hub" is invalid: spec.usernamePrefix: Invalid value: "system:": usernamePrefix must not start with system:`},
		{name: "one invalid document refuses all", data: fmt.Sprintf(valid, "a") + "---\n" + strings.Replace(fmt.Sprintf(valid, "b"), "[downstream]", "[\"\"]", 1), wantErr: `"b" is invalid: spec.audiences[0]`},
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

	src, router := startFileSource(t, dir, logr.Discard(), "hub", "edge")

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
	obj, err := src.Get(context.Background(), "hub")
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
	if obj, err := src.Get(context.Background(), "hub"); err != nil || obj.Generation != 2 || obj.Status.ObservedGeneration != 2 {
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

// crdCase is one entry of testdata/crd/{invalid,valid}.yaml, which test/integration also reads.
type crdCase struct {
	Name   string         `json:"name"`
	Want   string         `json:"want"`
	Object map[string]any `json:"object"`
}

func loadCRDCases(t *testing.T, file string) []crdCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "crd", file))
	if err != nil {
		t.Fatal(err)
	}
	var cases []crdCase
	if err := yaml.UnmarshalStrict(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatalf("no cases in %s", file)
	}
	return cases
}

// manifest is the case's object as a file holds it.
func (c crdCase) manifest(t *testing.T) []byte {
	t.Helper()
	obj := maps.Clone(c.Object)
	obj["apiVersion"], obj["kind"] = v1alpha1.GroupVersion.String(), "OpenIDConnect"
	data, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestParseManifestsRefusesWhatTheCRDRefuses: every object the CRD refuses is refused with the API
// server's message (test/integration compares the messages with a real API server's).
func TestParseManifestsRefusesWhatTheCRDRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range loadCRDCases(t, "invalid.yaml") {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			objs, err := ParseManifests(tc.manifest(t))
			if err == nil {
				t.Fatalf("accepted %+v", objs[0].Spec)
			}
			if !strings.Contains(err.Error(), tc.Want) {
				t.Fatalf("error = %v\nwant one containing %s", err, tc.Want)
			}
			name := tc.Object["metadata"].(map[string]any)["name"].(string)
			var status apierrors.APIStatus
			if !errors.As(err, &status) {
				t.Fatalf("error %v is not the API server's", err)
			}
			if apierrors.IsInvalid(err) {
				if prefix := fmt.Sprintf("OpenIDConnect.authentication.clustertrust.io %q is invalid: ", name); !strings.HasPrefix(err.Error(), prefix) {
					t.Fatalf("error = %v, want it to start with %s", err, prefix)
				}
			} else if !apierrors.IsBadRequest(err) || !strings.HasPrefix(err.Error(), fmt.Sprintf("OpenIDConnect %q: OpenIDConnect in version \"v1alpha1\" cannot be handled as a OpenIDConnect: ", name)) {
				t.Fatalf("error = %v (reason %s), want Invalid, or a BadRequest for what does not decode", err, apierrors.ReasonForError(err))
			}
		})
	}
}

// TestParseManifestsAcceptsWhatTheCRDAccepts checks testdata/crd/valid.yaml and the shipped samples.
func TestParseManifestsAcceptsWhatTheCRDAccepts(t *testing.T) {
	t.Parallel()
	for _, tc := range loadCRDCases(t, "valid.yaml") {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			if _, err := ParseManifests(tc.manifest(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
	samples, err := filepath.Glob(filepath.Join("..", "..", "config", "samples", "*.yaml"))
	if err != nil || len(samples) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	for _, sample := range samples {
		t.Run(filepath.Base(sample), func(t *testing.T) {
			t.Parallel()
			objs, _, err := parseManifestFile(sample)
			if err != nil || len(objs) == 0 {
				t.Fatalf("objects %d, error %v", len(objs), err)
			}
		})
	}
}

// TestParseManifestsAppliesTheCRD checks what admission changes: the CRD's defaults, explicit values
// kept, explicit nulls and status dropped.
func TestParseManifestsAppliesTheCRD(t *testing.T) {
	t.Parallel()
	objs, err := ParseManifests([]byte(`apiVersion: authentication.clustertrust.io/v1alpha1
kind: OpenIDConnect
metadata: {name: defaults}
spec: {issuerURL: "https://hub.example", audiences: [a], discoveryURL: null}
status: {observedGeneration: 9, keyCount: 3}
---
apiVersion: authentication.clustertrust.io/v1alpha1
kind: OpenIDConnect
metadata: {name: explicit}
spec: {issuerURL: "https://hub.example", audiences: [b], usernameClaim: email, serviceAccountGroups: false}
`))
	if err != nil {
		t.Fatal(err)
	}
	defaults, explicit := objs[0], objs[1]
	if defaults.Spec.UsernameClaim != "sub" || defaults.Spec.ServiceAccountGroups == nil || !*defaults.Spec.ServiceAccountGroups {
		t.Fatalf("defaults not applied: usernameClaim %q, serviceAccountGroups %v", defaults.Spec.UsernameClaim, defaults.Spec.ServiceAccountGroups)
	}
	if !equality.Semantic.DeepEqual(defaults.Status, v1alpha1.OpenIDConnectStatus{}) || defaults.Spec.DiscoveryURL != "" {
		t.Fatalf("status %+v or discoveryURL %q kept", defaults.Status, defaults.Spec.DiscoveryURL)
	}
	if explicit.Spec.UsernameClaim != "email" || explicit.Spec.ServiceAccountGroups == nil || *explicit.Spec.ServiceAccountGroups {
		t.Fatalf("explicit values overridden: usernameClaim %q, serviceAccountGroups %v", explicit.Spec.UsernameClaim, explicit.Spec.ServiceAccountGroups)
	}
}

// TestFileSourceRefusesWhatTheCRDRefuses: an edit that only the CRD's rules catch (the old hand-written
// checks passed it) refuses the file with the API server's message, and the last good object stays.
func TestFileSourceRefusesWhatTheCRDRefuses(t *testing.T) {
	t.Parallel()
	hub, err := testissuer.New(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	dir := t.TempDir()
	manifest := func(extra string) []byte {
		return fmt.Appendf(nil, `apiVersion: authentication.clustertrust.io/v1alpha1
kind: OpenIDConnect
metadata: {name: crd-hub}
spec:
  issuerURL: %q
  audiences: [downstream]
  usernamePrefix: "hub:"
  jwks: {keys: %s}
%s`, hub.URL, base64.StdEncoding.EncodeToString(hub.JWKS()), extra)
	}
	if err := os.WriteFile(filepath.Join(dir, "hub.yaml"), manifest(""), 0o600); err != nil {
		t.Fatal(err)
	}
	var logged struct {
		sync.Mutex
		errs []string
	}
	log := funcr.New(func(_, args string) {
		logged.Lock()
		defer logged.Unlock()
		logged.errs = append(logged.errs, args)
	}, funcr.Options{})
	src, router := startFileSource(t, dir, log, "crd-hub")
	eventually(t, "crd-hub routed", func() bool { _, ok := router.Get("crd-hub"); return ok })

	// Each of these passed the old hand-written checks.
	for _, edit := range []struct{ extra, want string }{
		{"  discoveryURL: http://10.0.0.1/.well-known/openid-configuration\n", `spec.discoveryURL: Invalid value: \"http://10.0.0.1/.well-known/openid-configuration\": discoveryURL must be an https URL without query, fragment or user info`},
		{"  extraClaims: [Email]\n", `OpenIDConnect.authentication.clustertrust.io \"crd-hub\" is invalid: spec.extraClaims[0]: Invalid value: \"Email\"`},
		{"  audience: downstream\n", `OpenIDConnect \"crd-hub\": OpenIDConnect in version \"v1alpha1\" cannot be handled as a OpenIDConnect: strict decoding error: unknown field \"spec.audience\"`},
	} {
		refusals := testutil.ToFloat64(src.metrics.reloads.WithLabelValues("invalid_files"))
		if err := os.WriteFile(filepath.Join(dir, "hub.yaml"), manifest(edit.extra), 0o600); err != nil {
			t.Fatal(err)
		}
		eventually(t, "refusal counted", func() bool {
			return testutil.ToFloat64(src.metrics.invalid) == 1 && testutil.ToFloat64(src.metrics.reloads.WithLabelValues("invalid_files")) > refusals
		})
		logged.Lock()
		last := ""
		if len(logged.errs) > 0 {
			last = logged.errs[len(logged.errs)-1]
		}
		logged.Unlock()
		if !strings.Contains(last, edit.want) {
			t.Fatalf("logged %s\nwant it to contain %s", last, edit.want)
		}
		if obj, err := src.Get(context.Background(), "crd-hub"); err != nil || obj.Spec.DiscoveryURL != "" || len(obj.Spec.ExtraClaims) != 0 {
			t.Fatalf("after a refused edit: %v, %+v; want the last good object", err, obj)
		}
		if _, ok := router.Get("crd-hub"); !ok {
			t.Fatal("the last good object is no longer routed")
		}
	}
}

// startFileSource serves dir through a FileSource and a router of its own until the test ends; names
// are the objects whose entries are closed then.
func startFileSource(t *testing.T, dir string, log logr.Logger, names ...string) (*FileSource, *authn.Router) {
	t.Helper()
	router := authn.NewRouter()
	r := &Reconciler{Router: router, Log: logr.Discard(), EntryOptions: authn.EntryOptions{Compiler: compiler}}
	src := &FileSource{Dir: dir, Reconciler: r, Log: log, Debounce: 10 * time.Millisecond, Rescan: time.Hour}
	r.Objects = src
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		for _, name := range names {
			router.Delete(name)
		}
	})
	return src, router
}

// TestParseManifestsAuthenticationConfiguration: a kube-apiserver AuthenticationConfiguration document
// is converted and each of its objects admitted like any other; what either step refuses refuses the
// file, with a message naming the document and the authenticator.
func TestParseManifestsAuthenticationConfiguration(t *testing.T) {
	t.Parallel()
	read := func(file string) string {
		data, err := os.ReadFile(filepath.Join("testdata", "authnconfig", file))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	const jwt = `apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer: {url: "https://accounts.example.com", audiences: [downstream]}
  claimMappings: {username: %s}
`
	tests := []struct {
		name      string
		data      string
		want      []string // names
		wantNotes []string // "index field"
		wantErr   string
	}{
		{name: "beside an OpenIDConnect", data: read("static.yaml"),
			want:      []string{"accounts.example.com", "token.actions.githubusercontent.com", "hub"},
			wantNotes: []string{"0 issuer.egressSelectorType", "-1 "}},
		{name: "no authenticators", data: "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt: []\n", wantNotes: []string{"-1 jwt"}},
		{name: "the CRD refuses an object", data: read("invalid-system-prefix.yaml"),
			wantErr: `document 1: AuthenticationConfiguration jwt[1] (https://masters.example.com): OpenIDConnect.authentication.clustertrust.io "masters.example.com" is invalid: spec.usernamePrefix: Invalid value: "system:": usernamePrefix must not start with system:`},
		{name: "kube-apiserver refuses the file", data: read("invalid-no-prefix.yaml"),
			wantErr: "document 1: kube-apiserver would refuse this AuthenticationConfiguration: jwt[0].claimMappings.username.prefix: Required value"},
		{name: "unknown field", data: strings.Replace(fmt.Sprintf(jwt, "{claim: sub, prefix: ''}"), "audiences", "audience", 1),
			wantErr: `document 1: could not decode the AuthenticationConfiguration: strict decoding error: unknown field "jwt[0].issuer.audience"`},
		{name: "a prefix an object cannot say", data: fmt.Sprintf(jwt, "{claim: sub, prefix: '-'}"),
			wantErr: `document 1: jwt[0] (https://accounts.example.com): claimMappings.username.prefix "-" cannot be converted`},
		{name: "a name taken in the same file", data: fmt.Sprintf(jwt, "{claim: sub, prefix: ''}") + "---\n" + strings.Replace(read("static.yaml")[strings.Index(read("static.yaml"), "apiVersion: authentication"):], "name: hub", "name: accounts.example.com", 1),
			wantErr: `OpenIDConnect "accounts.example.com" is declared twice`},
		{name: "another configuration kind", data: "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthorizationConfiguration\nauthorizers: []\n",
			wantErr: "document 1: is apiserver.config.k8s.io/v1 AuthorizationConfiguration, want authentication.clustertrust.io/v1alpha1 OpenIDConnect (or an apiserver.config.k8s.io AuthenticationConfiguration)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			objs, notes, err := parseManifests([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v\nwant one containing %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names, noteKeys []string
			for _, o := range objs {
				names = append(names, o.Name)
			}
			for _, n := range notes {
				noteKeys = append(noteKeys, fmt.Sprintf("%d %s", n.Index, n.Field))
			}
			if fmt.Sprint(names) != fmt.Sprint(tt.want) || fmt.Sprint(noteKeys) != fmt.Sprint(tt.wantNotes) {
				t.Fatalf("names %v, notes %v; want %v, %v", names, noteKeys, tt.want, tt.wantNotes)
			}
		})
	}

	// The converted objects are admitted with the CRD's defaults, like any other.
	objs, err := ParseManifests([]byte(read("static.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	gha := objs[1].Spec
	if gha.UsernameClaim != "sub" || gha.UsernamePrefix != "gha:" || gha.ServiceAccountGroups == nil || *gha.ServiceAccountGroups ||
		fmt.Sprint(gha.ClaimValidationRules) != "[{repository_owner example  }]" {
		t.Fatalf("converted spec %+v", gha)
	}
	if accounts := objs[0].Spec; accounts.UsernameClaim != "email" || accounts.UsernamePrefix != v1alpha1.PrefixDisabled {
		t.Fatalf("converted spec %+v", accounts)
	}
}

// TestFileSourceServesAnAuthenticationConfiguration shares a kube-apiserver --authentication-config file
// with the file source: its issuers are routed and map tokens as kube-apiserver would, the notes are
// logged once per content, a bad edit is refused as a whole (the last good objects stay), and a name
// another file takes is refused by the usual rule.
func TestFileSourceServesAnAuthenticationConfiguration(t *testing.T) {
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
	template, err := os.ReadFile(filepath.Join("testdata", "authnconfig", "kube-apiserver.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	quote := func(b []byte) string { q, _ := json.Marshal(string(b)); return string(q) }
	config := strings.NewReplacer("{{HUB}}", hub.URL, "{{EDGE}}", edge.URL, "{{HUB_CA}}", quote(hub.CAPEM()), "{{EDGE_CA}}", quote(edge.CAPEM())).Replace(string(template))
	hubName := "127.0.0.1-" + hub.URL[strings.LastIndex(hub.URL, ":")+1:]
	edgeName := "127.0.0.1-" + edge.URL[strings.LastIndex(edge.URL, ":")+1:]

	dir := t.TempDir()
	write := func(file, content string) {
		t.Helper()
		tmp := filepath.Join(dir, ".tmp-"+file)
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
			t.Fatal(err)
		}
	}
	write("kube-apiserver.yaml", config)
	var logged struct {
		sync.Mutex
		lines []string
	}
	log := funcr.New(func(_, args string) {
		logged.Lock()
		defer logged.Unlock()
		logged.lines = append(logged.lines, args)
	}, funcr.Options{Verbosity: 1})
	count := func(substr string) (n int, last string) {
		logged.Lock()
		defer logged.Unlock()
		for _, l := range logged.lines {
			if strings.Contains(l, substr) {
				n++
				last = l
			}
		}
		return n, last
	}
	src, router := startFileSource(t, dir, log, hubName, edgeName)

	answer := func(token string) string {
		resp, ok, err := router.AuthenticateToken(context.Background(), token)
		if err != nil || !ok {
			return fmt.Sprintf("refused: %v", err)
		}
		return fmt.Sprintf("%s uid=%q groups=%v", resp.User.GetName(), resp.User.GetUID(), resp.User.GetGroups())
	}
	hubToken, err := hub.Mint(testissuer.Claims{"sub": "alice", "aud": "downstream", "groups": []string{"dev"}})
	if err != nil {
		t.Fatal(err)
	}
	edgeToken, err := edge.Mint(testissuer.Claims{"sub": "runner", "aud": "other", "team": "ci"})
	if err != nil {
		t.Fatal(err)
	}
	otherTeam, err := edge.Mint(testissuer.Claims{"sub": "runner", "aud": "other", "team": "web"})
	if err != nil {
		t.Fatal(err)
	}
	const hubUser, edgeUser = `hub:alice uid="" groups=[hub:dev]`, `edge:runner uid="runner" groups=[]`
	eventually(t, "both issuers ready and mapping as kube-apiserver would", func() bool {
		return src.ReadyChecker()(nil) == nil && answer(hubToken) == hubUser && answer(edgeToken) == edgeUser
	})
	if got := answer(otherTeam); !strings.Contains(got, "only the ci team") {
		t.Fatalf("a token the claim validation rule refuses: %s", got)
	}
	obj, err := src.Get(context.Background(), hubName)
	if err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("Ready = %+v", c)
	}
	if obj.Spec.IssuerURL != hub.URL || string(obj.Spec.CABundle) != string(hub.CAPEM()) || obj.Spec.UsernamePrefix != "hub:" {
		t.Fatalf("served spec %+v", obj.Spec)
	}
	// anonymous, edge's uid claim and the configuration-wide note: logged once, not again on a reload of
	// the same content.
	const noteLog = "Not carried over from an AuthenticationConfiguration"
	if n, _ := count(noteLog); n != 3 {
		t.Fatalf("%d notes logged, want 3: %v", n, logged.lines)
	}
	reloads := testutil.ToFloat64(src.metrics.reloads.WithLabelValues("ok"))
	write("kube-apiserver.yaml", config)
	eventually(t, "a reload of the same content", func() bool { return testutil.ToFloat64(src.metrics.reloads.WithLabelValues("ok")) > reloads })
	if n, _ := count(noteLog); n != 3 {
		t.Fatalf("the notes were logged again for the same content: %d", n)
	}

	// A bad edit (a CEL rule kube-apiserver would not compile) refuses the whole file: both issuers stay.
	write("kube-apiserver.yaml", strings.Replace(config, `claims.team == "ci"`, `claims.team ==`, 1))
	eventually(t, "the bad edit refused", func() bool { return testutil.ToFloat64(src.metrics.invalid) == 1 })
	if _, last := count("Refusing an invalid file"); !strings.Contains(last, "document 1: kube-apiserver would refuse this AuthenticationConfiguration: jwt[1].claimValidationRules[0].expression: Invalid value") {
		t.Fatalf("logged %s", last)
	}
	if answer(hubToken) != hubUser || answer(edgeToken) != edgeUser {
		t.Fatalf("after a refused edit: %s, %s", answer(hubToken), answer(edgeToken))
	}

	// Fixed, and another file claiming a converted object's name: that file is refused.
	write("kube-apiserver.yaml", config)
	write("zz-hub.yaml", fmt.Sprintf("apiVersion: authentication.clustertrust.io/v1alpha1\nkind: OpenIDConnect\nmetadata: {name: %s}\nspec: {issuerURL: %q, audiences: [x]}\n", hubName, hub.URL))
	eventually(t, "the name clash refused", func() bool {
		_, last := count("Refusing an invalid file")
		return testutil.ToFloat64(src.metrics.invalid) == 1 && strings.Contains(last, fmt.Sprintf(`OpenIDConnect \"%s\" is also declared in kube-apiserver.yaml`, hubName))
	})
	if answer(hubToken) != hubUser {
		t.Fatalf("after the clash: %s", answer(hubToken))
	}
}

// TestFileSourceConflictWinnerIsDeterministic: files have no creation order, so of two conflicting
// objects (one issuer, overlapping audiences, different usernames) the one whose name sorts first wins,
// whichever file declares it, whether both were there at start or one came later. Before, the winner
// was the first loaded, so replicas started at different times could map one token to different users.
func TestFileSourceConflictWinnerIsDeterministic(t *testing.T) {
	t.Parallel()
	iss, err := testissuer.New(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	manifest := func(name string) string {
		return fmt.Sprintf(`apiVersion: authentication.clustertrust.io/v1alpha1
kind: OpenIDConnect
metadata: {name: %s}
spec:
  issuerURL: %q
  audiences: [downstream]
  jwks: {keys: %s}
`, name, iss.URL, base64.StdEncoding.EncodeToString(iss.JWKS()))
	}
	winner := func(t *testing.T, router *authn.Router) string {
		t.Helper()
		var w string
		eventually(t, "both objects routed", func() bool {
			_, zetaRouted := router.Get("zeta")
			_, alphaRouted := router.Get("alpha")
			_, zetaLost := router.Conflict("zeta")
			_, alphaLost := router.Conflict("alpha")
			switch {
			case !zetaRouted || !alphaRouted:
				return false
			case zetaLost && !alphaLost:
				w = "alpha"
			case alphaLost && !zetaLost:
				w = "zeta"
			default:
				return false
			}
			return true
		})
		return w
	}
	// zeta in a.yaml (read first), alpha in b.yaml: both at start.
	both := t.TempDir()
	writeFileT(t, filepath.Join(both, "a.yaml"), manifest("zeta"))
	writeFileT(t, filepath.Join(both, "b.yaml"), manifest("alpha"))
	_, router := startFileSource(t, both, logr.Discard(), "zeta", "alpha")
	if w := winner(t, router); w != "alpha" {
		t.Fatalf("both files at start: %s wins, want alpha", w)
	}
	// alpha first, zeta added while running: the same winner.
	later := t.TempDir()
	writeFileT(t, filepath.Join(later, "b.yaml"), manifest("alpha"))
	_, router2 := startFileSource(t, later, logr.Discard(), "zeta", "alpha")
	eventually(t, "alpha routed", func() bool { _, ok := router2.Get("alpha"); return ok })
	writeFileT(t, filepath.Join(later, "a.yaml"), manifest("zeta"))
	if w := winner(t, router2); w != "alpha" {
		t.Fatalf("zeta added later: %s wins, want alpha", w)
	}
}

func writeFileT(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
