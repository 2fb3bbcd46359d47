//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/apis/apiserver/install"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/cmd/webhook/app"
	"github.com/clustertrust/clustertrust/internal/testissuer"
	"github.com/clustertrust/clustertrust/test/framework"
)

// decodeAuthenticationConfig decodes as kube-apiserver does (strictly, any version, to the internal type).
func decodeAuthenticationConfig(t *testing.T, data []byte) *apiserver.AuthenticationConfiguration {
	t.Helper()
	scheme := runtime.NewScheme()
	install.Install(scheme)
	obj, err := runtime.Decode(serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDecoder(), data)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, data)
	}
	cfg, ok := obj.(*apiserver.AuthenticationConfiguration)
	if !ok {
		t.Fatalf("decoded a %T", obj)
	}
	return cfg
}

// convertCommand runs `webhook convert` in-process and returns stdout and stderr.
func convertCommand(t *testing.T, args ...string) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := app.Main(context.Background(), append([]string{"convert"}, args...), &out, &errOut); code != 0 {
		t.Fatalf("webhook convert %s: exit %d\n%s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String(), errOut.String()
}

// TestConvertedObjectsApply converts an AuthenticationConfiguration that sets every field of a jwt
// authenticator, applies the objects to the real API server with kubectl (strict field validation, the
// CRD's schema and CEL rules), converts the stored objects back and requires the original file, less
// the fields the notes name.
func TestConvertedObjectsApply(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join("..", "..", "internal", "convert", "testdata", "full-authentication-config.yaml")
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	manifests, notes := convertCommand(t, "--from", "authentication-config", "-f", path, "--name-prefix", "convert-")
	for _, want := range []string{"note: AuthenticationConfiguration: anonymous has no counterpart", "note: jwt[0] (https://issuer.example.com): issuer.egressSelectorType has no counterpart"} {
		if !strings.Contains(notes, want) {
			t.Errorf("stderr lacks %q:\n%s", want, notes)
		}
	}
	names := []string{"convert-issuer.example.com", "convert-accounts.example.org-8443-tenants-a", "convert-accounts.example.org-8443-tenants-a-2"}
	t.Cleanup(func() {
		for _, name := range names {
			_ = adminClient.Delete(context.Background(), &v1alpha1.OpenIDConnect{ObjectMeta: metav1.ObjectMeta{Name: name}})
		}
	})

	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	apply := exec.CommandContext(ctx, kubectl, "--kubeconfig", adminKubeconfig, "apply", "--validate=strict", "-f", "-") //nolint:gosec // G204: our own kubectl
	apply.Stdin = strings.NewReader(manifests)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s\nthe manifests:\n%s", err, out, manifests)
	}

	// The stored objects, as `kubectl get oidc -o yaml` gives them: a List with the server's fields.
	list := &v1alpha1.OpenIDConnectList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "List"}}
	for _, name := range names {
		var obj v1alpha1.OpenIDConnect
		if err := adminClient.Get(ctx, client.ObjectKey{Name: name}, &obj); err != nil {
			t.Fatal(err)
		}
		obj.APIVersion, obj.Kind = v1alpha1.GroupVersion.String(), "OpenIDConnect"
		if obj.ResourceVersion == "" || obj.Spec.UsernameClaim == "" && obj.Spec.ClaimMappings == nil {
			t.Fatalf("not a stored object: %+v", obj)
		}
		list.Items = append(list.Items, obj)
	}
	stored, err := yaml.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	storedFile := filepath.Join(t.TempDir(), "stored.yaml")
	if err := os.WriteFile(storedFile, stored, 0o600); err != nil {
		t.Fatal(err)
	}
	back, backNotes := convertCommand(t, "--to", "authentication-config", "-f", storedFile)

	want := decodeAuthenticationConfig(t, original)
	want.Anonymous = nil                       // noted: anonymous
	want.JWT[0].Issuer.EgressSelectorType = "" // noted: issuer.egressSelectorType
	if got := decodeAuthenticationConfig(t, []byte(back)); !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Fatalf("converted back from the stored objects:\n%s\nwant:\n%s", g, w)
	}
	// Going back loses only the names (and clustertrust's unwritten guards, the configuration-wide note).
	for _, line := range strings.Split(strings.TrimSpace(backNotes), "\n") {
		if !strings.Contains(line, "metadata.name has no counterpart") && !strings.HasPrefix(line, "note: AuthenticationConfiguration: kube-apiserver has none of clustertrust's guards") {
			t.Errorf("unexpected note going back: %s", line)
		}
	}
}

// TestConvertedObjectAuthenticatesThroughKubeAPIServer: an authenticator of kube-apiserver's configuration,
// converted and applied, authenticates a token through the real kube-apiserver as kube-apiserver itself
// would map it.
func TestConvertedObjectAuthenticatesThroughKubeAPIServer(t *testing.T) {
	ctx := context.Background()
	iss, err := testissuer.New(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	ca, _ := json.Marshal(string(iss.CAPEM()))
	config := fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: %s
    certificateAuthority: %s
    audiences: [%q]
  claimValidationRules:
  - expression: claims.team == "ci"
    message: only the ci team
  claimMappings:
    username: {claim: sub, prefix: "kas:"}
    groups: {expression: '["kas:" + claims.team]'}
`, iss.URL, ca, audience)
	file := filepath.Join(t.TempDir(), "authentication-config.yaml")
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	manifests, _ := convertCommand(t, "--from", "authentication-config", "-f", file, "--name-prefix", "convert-live-")
	var obj v1alpha1.OpenIDConnect
	if err := yaml.UnmarshalStrict([]byte(manifests), &obj); err != nil {
		t.Fatalf("%v\n%s", err, manifests)
	}
	createOIDC(t, &obj)
	framework.WaitCondition(t, adminClient, obj.Name, v1alpha1.ConditionReady, metav1.ConditionTrue, "", "")

	ci, err := iss.Mint(testissuer.Claims{"sub": "runner", "aud": audience, "team": "ci"})
	if err != nil {
		t.Fatal(err)
	}
	web, err := iss.Mint(testissuer.Claims{"sub": "runner", "aud": audience, "team": "web"})
	if err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 30*time.Second, "the converted object authenticates through kube-apiserver", func() error {
		name, err := whoami(ctx, ci)
		if err != nil {
			return err
		}
		if name != "kas:runner" {
			return fmt.Errorf("username %q, want kas:runner", name)
		}
		return nil
	})
	if status := reviewDirect(t, ci); !status.Authenticated || !slices.Contains(status.User.Groups, "kas:ci") {
		t.Fatalf("review %+v, want the groups expression's kas:ci", status)
	}
	if name, err := whoami(ctx, web); err == nil {
		t.Fatalf("a token the claim validation rule refuses authenticated as %q", name)
	}
}
