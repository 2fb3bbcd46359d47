package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/convert"
	"github.com/clustertrust/clustertrust/internal/registry"
)

// fullAuthenticationConfig sets every field of a jwt authenticator (internal/convert's round-trip file).
var fullAuthenticationConfig = filepath.Join("..", "..", "..", "internal", "convert", "testdata", "full-authentication-config.yaml")

// runConvert runs the command line with stdin and returns its exit code, stdout and stderr.
func runConvert(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewRootCommand(&out, &errOut)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		// What Main does with an error.
		errOut.WriteString("error: " + err.Error() + "\n")
		return 1, out.String(), errOut.String()
	}
	return 0, out.String(), errOut.String()
}

func TestConvertHelp(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"convert", "--help"}, &out, &errOut); code != 0 {
		t.Fatalf("exit code = %d, stderr = %s", code, errOut.String())
	}
	for _, flag := range []string{"--from", "--to", "--filename", "-f,", "--output", "--name-prefix", "authentication-config"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("convert --help does not mention %s", flag)
		}
	}
}

// TestConvertFromAndBack converts kube-apiserver's configuration into objects (notes on stderr) and the
// objects back through stdin, and gets what the library gives.
func TestConvertFromAndBack(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(fullAuthenticationConfig)
	if err != nil {
		t.Fatal(err)
	}
	code, objs, notes := runConvert(t, "", "convert", "--from", "authentication-config", "-f", fullAuthenticationConfig)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, notes)
	}
	wantObjs, wantNotes, err := convert.FromAuthenticationConfiguration(data)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := convert.MarshalManifests(wantObjs); objs != string(want) {
		t.Fatalf("stdout:\n%s\nwant:\n%s", objs, want)
	}
	var lines []string
	for _, n := range wantNotes {
		lines = append(lines, "note: "+n.String())
	}
	if notes != strings.Join(lines, "\n")+"\n" {
		t.Fatalf("stderr:\n%s\nwant:\n%s", notes, strings.Join(lines, "\n"))
	}
	if !strings.Contains(notes, "note: jwt[0] (https://issuer.example.com): issuer.egressSelectorType has no counterpart: ") {
		t.Fatalf("stderr lacks the egress selector note:\n%s", notes)
	}
	if _, err := registry.ParseManifests([]byte(objs)); err != nil {
		t.Fatalf("the objects do not apply: %v", err)
	}

	output := filepath.Join(t.TempDir(), "authentication-config.yaml")
	code, stdout, stderr := runConvert(t, objs, "convert", "--to", "authentication-config", "-f", "-", "--output", output)
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	back, err := os.ReadFile(output)
	if err != nil {
		t.Fatal(err)
	}
	admitted, err := registry.ParseManifests([]byte(objs))
	if err != nil {
		t.Fatal(err)
	}
	list := make([]v1alpha1.OpenIDConnect, 0, len(admitted))
	for _, o := range admitted {
		list = append(list, *o)
	}
	want, _, err := convert.ToAuthenticationConfiguration(list)
	if err != nil {
		t.Fatal(err)
	}
	if string(back) != string(want) {
		t.Fatalf("--output:\n%s\nwant:\n%s", back, want)
	}
	if !strings.HasPrefix(stderr, "note: AuthenticationConfiguration: kube-apiserver has none of clustertrust's guards") {
		t.Fatalf("stderr %q", stderr)
	}
}

// TestConvertToReadsWhatKubectlPrints: `kubectl get oidc -o yaml` is a List of stored objects, with the
// fields the server fills in and status; those are no part of the conversion.
func TestConvertToReadsWhatKubectlPrints(t *testing.T) {
	t.Parallel()
	const list = `apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: authentication.clustertrust.io/v1alpha1
  kind: OpenIDConnect
  metadata:
    name: hub
    uid: 6f1a3c0e-0000-4000-8000-000000000000
    resourceVersion: "4711"
    generation: 2
    creationTimestamp: "2026-01-01T00:00:00Z"
    managedFields: [{manager: kubectl, operation: Apply, apiVersion: authentication.clustertrust.io/v1alpha1}]
  spec: {issuerURL: "https://hub.example.com", audiences: [downstream], usernamePrefix: "hub:", serviceAccountGroups: false}
  status: {observedGeneration: 2, keyCount: 1}
- apiVersion: authentication.clustertrust.io/v1alpha1
  kind: OpenIDConnect
  metadata: {name: edge}
  spec: {issuerURL: "https://edge.example.com", audiences: [downstream], usernamePrefix: "-", serviceAccountGroups: false}
`
	code, out, stderr := runConvert(t, list, "convert", "--to", "authentication-config", "-f", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := `apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
  - issuer:
      url: https://hub.example.com
      audiences:
        - downstream
    claimMappings:
      username:
        claim: sub
        prefix: 'hub:'
  - issuer:
      url: https://edge.example.com
      audiences:
        - downstream
    claimMappings:
      username:
        claim: sub
        prefix: ""
`
	if out != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", out, want)
	}
	for _, note := range []string{`note: jwt[0] (https://hub.example.com) from OpenIDConnect "hub": metadata.name has no counterpart`, `note: jwt[1] (https://edge.example.com) from OpenIDConnect "edge": metadata.name`} {
		if !strings.Contains(stderr, note) {
			t.Errorf("stderr lacks %q:\n%s", note, stderr)
		}
	}
}

func TestConvertNamePrefix(t *testing.T) {
	t.Parallel()
	code, out, stderr := runConvert(t, "", "convert", "--from", "authentication-config", "-f", fullAuthenticationConfig, "--name-prefix", "kas-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, name := range []string{"name: kas-issuer.example.com\n", "name: kas-accounts.example.org-8443-tenants-a\n", "name: kas-accounts.example.org-8443-tenants-a-2\n"} {
		if !strings.Contains(out, name) {
			t.Errorf("stdout lacks %q", name)
		}
	}
}

// TestConvertFailsWithOneLineReason: bad flags or input give one line on stderr, exit 1 and no output.
func TestConvertFailsWithOneLineReason(t *testing.T) {
	t.Parallel()
	const head = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n"
	const oidc = "apiVersion: authentication.clustertrust.io/v1alpha1\nkind: OpenIDConnect\n"
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{name: "neither direction", args: []string{"-f", "-"}, want: "give exactly one of --from authentication-config and --to authentication-config"},
		{name: "both directions", args: []string{"--from", "authentication-config", "--to", "authentication-config", "-f", "-"}, want: "give exactly one of"},
		{name: "unknown format", args: []string{"--from", "gardener", "-f", "-"}, want: `--from "gardener" is not a format convert knows; use --from authentication-config`},
		{name: "no file", args: []string{"--to", "authentication-config"}, want: "--filename (-f) is required: a file, or - for stdin"},
		{name: "name prefix the wrong way", args: []string{"--to", "authentication-config", "-f", "-", "--name-prefix", "x-"}, want: "--name-prefix goes with --from"},
		{name: "missing file", args: []string{"--from", "authentication-config", "-f", "/nonexistent/config.yaml"}, want: "could not read --filename: open /nonexistent/config.yaml"},
		{name: "not yaml", args: []string{"--from", "authentication-config", "-f", "-"}, stdin: "{{{", want: "could not decode the AuthenticationConfiguration"},
		{name: "kube-apiserver would refuse it", args: []string{"--from", "authentication-config", "-f", "-"},
			stdin: head + "- issuer: {url: 'https://a.example.com', audiences: [a]}\n  claimMappings: {username: {claim: sub}}\n",
			want:  "kube-apiserver would refuse this AuthenticationConfiguration: jwt[0].claimMappings.username.prefix: Required value"},
		{name: "a CEL error on one line", args: []string{"--from", "authentication-config", "-f", "-"},
			stdin: head + "- issuer: {url: 'https://a.example.com', audiences: [a]}\n  claimMappings: {username: {expression: 'claims.'}}\n",
			want:  "jwt[0].claimMappings.username.expression: Invalid value: \"claims.\": compilation failed: ERROR: <input>:1:8: Syntax error: no viable alternative at input '.' | claims. | .......^"},
		{name: "the CRD refuses an object", args: []string{"--from", "authentication-config", "-f", "-"},
			stdin: head + "- issuer: {url: 'https://a.example.com', audiences: [a]}\n  claimMappings: {username: {claim: sub, prefix: 'system:'}}\n",
			want:  `jwt[0] (https://a.example.com) converts to an object clustertrust refuses: OpenIDConnect.authentication.clustertrust.io "a.example.com" is invalid: spec.usernamePrefix`},
		{name: "a prefix an object cannot say", args: []string{"--from", "authentication-config", "-f", "-"},
			stdin: head + "- issuer: {url: 'https://a.example.com', audiences: [a]}\n  claimMappings: {username: {claim: sub, prefix: '-'}}\n",
			want:  `jwt[0] (https://a.example.com): claimMappings.username.prefix "-" cannot be converted`},
		{name: "to: not an OpenIDConnect", args: []string{"--to", "authentication-config", "-f", "-"}, stdin: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
			want: "document 1: holds v1 ConfigMap, want authentication.clustertrust.io/v1alpha1 OpenIDConnect manifests (or a List of them)"},
		{name: "to: no name", args: []string{"--to", "authentication-config", "-f", "-"}, stdin: oidc + "spec: {issuerURL: 'https://a.example.com', audiences: [a]}\n",
			want: "document 1: an OpenIDConnect without metadata.name"},
		{name: "to: the CRD refuses it", args: []string{"--to", "authentication-config", "-f", "-"}, stdin: oidc + "metadata: {name: a}\nspec: {issuerURL: 'http://a.example.com', audiences: [a]}\n",
			want: `OpenIDConnect.authentication.clustertrust.io "a" is invalid: spec.issuerURL`},
		{name: "to: a shared issuer", args: []string{"--to", "authentication-config", "-f", "-"},
			stdin: oidc + "metadata: {name: a}\nspec: {issuerURL: 'https://a.example.com', audiences: [a]}\n---\n" + oidc + "metadata: {name: b}\nspec: {issuerURL: 'https://a.example.com', audiences: [b]}\n",
			want:  `OpenIDConnect "a" and "b" share the issuer https://a.example.com: an AuthenticationConfiguration allows one jwt authenticator per issuer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			output := filepath.Join(t.TempDir(), "out.yaml")
			code, stdout, stderr := runConvert(t, tt.stdin, append([]string{"convert", "--output", output}, tt.args...)...)
			if code != 1 {
				t.Fatalf("exit %d", code)
			}
			if !strings.Contains(stderr, tt.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.HasPrefix(stderr, "error: ") {
				t.Fatalf("stderr = %q\nwant one line containing %q", stderr, tt.want)
			}
			if stdout != "" {
				t.Fatalf("stdout = %q", stdout)
			}
			if _, err := os.Stat(output); !os.IsNotExist(err) {
				t.Fatalf("--output was written: %v", err)
			}
		})
	}
}
