package federation

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/rest"

	"github.com/clustertrust/clustertrust/internal/registry"
	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// fakeAPIServer stands in for an upstream kube-apiserver's issuer endpoints (unit tests may fake it; the
// e2e suite runs the same commands against real ones). The discovery document names issuer, or the
// server itself when issuer is empty; anonymous requests are refused unless anonymous is set.
type fakeAPIServer struct {
	*httptest.Server
	caPEM []byte
	mu    sync.Mutex
	jwks  []byte
}

func (f *fakeAPIServer) setJWKS(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jwks = b
}

func newFakeAPIServer(t *testing.T, issuer string, anonymous bool, jwks []byte) *fakeAPIServer {
	t.Helper()
	f := &fakeAPIServer{jwks: jwks}
	f.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !anonymous && r.Header.Get("Authorization") != "Bearer upstream-admin" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		iss := issuer
		if iss == "" {
			iss = f.URL
		}
		switch r.URL.Path {
		case DiscoveryPath:
			_ = json.NewEncoder(w).Encode(map[string]any{
				"issuer": iss, "jwks_uri": f.URL + JWKSPath, "response_types_supported": []string{"id_token"},
				"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"},
			})
		case JWKSPath:
			f.mu.Lock()
			defer f.mu.Unlock()
			_, _ = w.Write(f.jwks)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.Close)
	f.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw})
	return f
}

func (f *fakeAPIServer) upstream(t *testing.T) *Upstream {
	t.Helper()
	up, err := NewKubernetesUpstream(&rest.Config{Host: f.URL, BearerToken: "upstream-admin", TLSClientConfig: rest.TLSClientConfig{CAData: f.caPEM}})
	if err != nil {
		t.Fatal(err)
	}
	return up
}

func newIssuer(t *testing.T) *testissuer.Issuer {
	t.Helper()
	iss, err := testissuer.New(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	return iss
}

func poolOf(t *testing.T, pemBytes []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate")
	}
	return p
}

func TestPlanTrustChoosesTheMode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	public := newIssuer(t)
	const unreachable = "https://127.0.0.1:1"

	tests := []struct {
		name         string
		api          func(t *testing.T) *fakeAPIServer
		opts         TrustOptions
		wantMode     string
		wantCA       bool
		wantDiscover bool
		wantReason   string
	}{
		{
			name:     "public issuer",
			api:      func(t *testing.T) *fakeAPIServer { return newFakeAPIServer(t, public.URL, false, public.JWKS()) },
			opts:     TrustOptions{Roots: poolOf(t, public.CAPEM())}, // stands for the system roots
			wantMode: ModeIssuer, wantReason: "public CA",
		},
		{
			name:     "issuer is the API server, with the kubeconfig's CA",
			api:      func(t *testing.T) *fakeAPIServer { return newFakeAPIServer(t, "", true, public.JWKS()) },
			wantMode: ModeIssuer, wantCA: true, wantReason: "set as caBundle",
		},
		{
			name:     "issuer unreachable, API server serves discovery anonymously",
			api:      func(t *testing.T) *fakeAPIServer { return newFakeAPIServer(t, unreachable, true, public.JWKS()) },
			wantMode: ModeDiscoveryURL, wantCA: true, wantDiscover: true, wantReason: "discoveryURL points there",
		},
		{
			name:     "nothing anonymous",
			api:      func(t *testing.T) *fakeAPIServer { return newFakeAPIServer(t, unreachable, false, public.JWKS()) },
			wantMode: ModeStatic, wantReason: "read with the kubeconfig's credentials",
		},
		{
			name:     "static asked for",
			api:      func(t *testing.T) *fakeAPIServer { return newFakeAPIServer(t, public.URL, true, public.JWKS()) },
			opts:     TrustOptions{Static: true, Roots: poolOf(t, public.CAPEM())},
			wantMode: ModeStatic, wantReason: "--static",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := tt.api(t)
			o := tt.opts
			o.Name, o.Audience = "hub", "https://downstream.example:6443"
			if o.Roots == nil {
				o.Roots = x509.NewCertPool() // no public CA trusts the test servers
			}
			plan, err := PlanTrust(ctx, api.upstream(t), o)
			if err != nil {
				t.Fatal(err)
			}
			if plan.Mode != tt.wantMode {
				t.Fatalf("mode = %s, want %s; reasons %q", plan.Mode, tt.wantMode, plan.Reasons)
			}
			spec := plan.Object.Spec
			if got := len(spec.CABundle) > 0; got != tt.wantCA {
				t.Errorf("caBundle set = %v, want %v", got, tt.wantCA)
			}
			if got := spec.DiscoveryURL != ""; got != tt.wantDiscover {
				t.Errorf("discoveryURL = %q", spec.DiscoveryURL)
			}
			if got := spec.JWKS != nil; got != (tt.wantMode == ModeStatic) {
				t.Errorf("static keys set = %v", got)
			} else if got && !sameKeys(spec.JWKS.Keys, public.JWKS()) {
				t.Errorf("static keys %s differ from the upstream's", spec.JWKS.Keys)
			}
			if !strings.Contains(strings.Join(plan.Reasons, "\n"), tt.wantReason) {
				t.Errorf("reasons %q do not say %q", plan.Reasons, tt.wantReason)
			}

			// The rendered manifest explains itself and is a valid OpenIDConnect for every source.
			out, err := plan.Render()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(out), "# clustertrust trust: mode "+tt.wantMode) {
				t.Fatalf("output does not start with the mode:\n%s", out)
			}
			objs, err := registry.ParseManifests(out)
			if err != nil || len(objs) != 1 || objs[0].Spec.IssuerURL != plan.Object.Spec.IssuerURL {
				t.Fatalf("ParseManifests(output) = %v, %v\n%s", objs, err, out)
			}
		})
	}
}

func TestPlanTrustRefusesBadInput(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	api := newFakeAPIServer(t, iss.URL, false, iss.JWKS())
	emptyKeys := newFakeAPIServer(t, iss.URL, false, []byte(`{"keys":[]}`))
	for name, tc := range map[string]struct {
		up   *Upstream
		o    TrustOptions
		want string
	}{
		"no name":         {api.upstream(t), TrustOptions{Audience: "a"}, "--name"},
		"bad name":        {api.upstream(t), TrustOptions{Name: "Hub_1", Audience: "a"}, "DNS label"},
		"no audience":     {api.upstream(t), TrustOptions{Name: "hub"}, "audience is required"},
		"system prefix":   {api.upstream(t), TrustOptions{Name: "hub", Audience: "a", Prefix: "system:"}, "would be invalid"},
		"default aud":     {api.upstream(t), TrustOptions{Name: "hub", Audience: "https://kubernetes.default.svc"}, "in-cluster default"},
		"no usable keys":  {emptyKeys.upstream(t), TrustOptions{Name: "hub", Audience: "a"}, "not usable"},
		"bad identity":    {api.upstream(t), TrustOptions{Name: "hub", Audience: "a", SyncIdentity: "sync-keys"}, "namespace/name"},
		"issuer url down": {&Upstream{IssuerURL: "https://127.0.0.1:1"}, TrustOptions{Name: "hub", Audience: "a"}, "discovery document"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc.o.Roots = x509.NewCertPool()
			_, err := PlanTrust(context.Background(), tc.up, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSyncIdentityRBAC(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	api := newFakeAPIServer(t, iss.URL, false, iss.JWKS())
	plan, err := PlanTrust(context.Background(), api.upstream(t), TrustOptions{
		Name: "hub", Audience: "a", Static: true, SyncIdentity: "clustertrust-system/sync-keys", Roots: x509.NewCertPool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.RBAC) != 4 {
		t.Fatalf("RBAC = %v", plan.RBAC)
	}
	policy := plan.RBAC[2].(*admissionregistrationv1.ValidatingAdmissionPolicy)
	expr := policy.Spec.Validations[0].Expression
	for _, field := range []string{"issuerURL", "audiences", "usernamePrefix", "groupsPrefix", "claimMappings", "caBundle", "discoveryURL"} {
		if !strings.Contains(expr, "object.spec."+field+" == oldObject.spec."+field) {
			t.Errorf("the policy does not pin spec.%s:\n%s", field, expr)
		}
	}
	if strings.Contains(expr, "spec.jwks") {
		t.Errorf("the policy pins spec.jwks, which sync-keys must change:\n%s", expr)
	}
	if c := policy.Spec.MatchConditions[0].Expression; c != `request.userInfo.username == "hub:system:serviceaccount:clustertrust-system:sync-keys"` {
		t.Errorf("match condition = %s", c)
	}
	if b := plan.RBAC[3].(*admissionregistrationv1.ValidatingAdmissionPolicyBinding); b.Spec.PolicyName != policy.Name {
		t.Errorf("binding names policy %q, want %q", b.Spec.PolicyName, policy.Name)
	}
	role := plan.RBAC[0].(*rbacv1.ClusterRole)
	if r := role.Rules[0]; len(r.ResourceNames) != 1 || r.ResourceNames[0] != "hub" || strings.Join(r.Verbs, ",") != "get,patch" {
		t.Fatalf("rule = %+v, want get,patch on hub only", r)
	}
	binding := plan.RBAC[1].(*rbacv1.ClusterRoleBinding)
	if s := binding.Subjects[0]; s.Kind != rbacv1.UserKind || s.Name != "hub:system:serviceaccount:clustertrust-system:sync-keys" {
		t.Fatalf("subject = %+v", s)
	}
}

func TestPublishDiscovery(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	api := newFakeAPIServer(t, "", false, iss.JWKS())
	dir := t.TempDir()
	p, err := PublishDiscovery(context.Background(), api.upstream(t), "https://oidc.example.com/hub/", dir)
	if err != nil {
		t.Fatal(err)
	}
	docBytes, err := os.ReadFile(filepath.Join(dir, ".well-known", "openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(docBytes, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["issuer"] != "https://oidc.example.com/hub" || doc["jwks_uri"] != "https://oidc.example.com/hub/openid/v1/jwks" {
		t.Fatalf("doc = %v", doc)
	}
	if doc["subject_types_supported"] == nil {
		t.Fatal("fields other than issuer and jwks_uri were dropped")
	}
	jwks, err := os.ReadFile(filepath.Join(dir, "openid", "v1", "jwks"))
	if err != nil {
		t.Fatal(err)
	}
	if !sameKeys(jwks, iss.JWKS()) {
		t.Fatalf("published keys %s differ from the upstream's", jwks)
	}
	flags := strings.Join(p.Flags, "\n")
	for _, want := range []string{"--service-account-issuer=https://oidc.example.com/hub\n", "--service-account-jwks-uri=https://oidc.example.com/hub/openid/v1/jwks", "--service-account-issuer=" + api.URL} {
		if !strings.Contains(flags+"\n", want) {
			t.Errorf("flags %q lack %q", p.Flags, want)
		}
	}
	for _, bad := range []string{"http://oidc.example.com", "https://oidc.example.com/?x=1", "oidc.example.com"} {
		if _, err := PublishDiscovery(context.Background(), api.upstream(t), bad, t.TempDir()); err == nil {
			t.Errorf("public URL %q accepted", bad)
		}
	}
}

func TestKeySyncer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	iss := newIssuer(t)
	api := newFakeAPIServer(t, "", false, iss.JWKS())
	old := newIssuer(t).JWKS()
	object := func(name string, keys []byte) *unstructured.Unstructured {
		spec := map[string]any{"issuerURL": api.URL, "audiences": []any{"a"}}
		if keys != nil {
			spec["jwks"] = map[string]any{"keys": base64.StdEncoding.EncodeToString(keys)}
		}
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "authentication.clustertrust.io/v1alpha1", "kind": "OpenIDConnect",
			"metadata": map[string]any{"name": name}, "spec": spec,
		}}
	}
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{OpenIDConnects: "OpenIDConnectList"}, object("hub", old), object("fetched", nil))
	keysOf := func(name string) []byte {
		obj, err := client.Resource(OpenIDConnects).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		enc, _, _ := unstructured.NestedString(obj.Object, "spec", "jwks", "keys")
		b, _ := base64.StdEncoding.DecodeString(enc)
		return b
	}
	s := &KeySyncer{Upstream: api.upstream(t), Downstream: client.Resource(OpenIDConnects), Name: "hub", Log: logr.Discard()}
	changed, err := s.SyncOnce(ctx)
	if err != nil || !changed {
		t.Fatalf("first sync: changed %v, err %v", changed, err)
	}
	if !sameKeys(keysOf("hub"), iss.JWKS()) {
		t.Fatalf("keys after sync = %s", keysOf("hub"))
	}
	if changed, err := s.SyncOnce(ctx); err != nil || changed {
		t.Fatalf("second sync: changed %v, err %v; want no change", changed, err)
	}

	// An upstream that serves no usable key never empties the downstream's keys.
	api.setJWKS([]byte(`{"keys":[]}`))
	if _, err := s.SyncOnce(ctx); err == nil {
		t.Fatal("an empty upstream key set was accepted")
	}
	if !sameKeys(keysOf("hub"), iss.JWKS()) {
		t.Fatal("a failed sync changed the object")
	}

	// An object that fetches its keys is not sync-keys' to change.
	api.setJWKS(iss.JWKS())
	s.Name = "fetched"
	if _, err := s.SyncOnce(ctx); err == nil || !strings.Contains(err.Error(), "does not use static keys") {
		t.Fatalf("error = %v", err)
	}
}

// TestIssuerURLUpstream trusts a plain OIDC issuer (no Kubernetes API): discovery runs through go-oidc,
// which refuses a document naming another issuer.
func TestIssuerURLUpstream(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	up := &Upstream{IssuerURL: iss.URL, IssuerCAPEM: iss.CAPEM()}
	plan, err := PlanTrust(context.Background(), up, TrustOptions{Name: "idp", Audience: "prod", Roots: poolOf(t, iss.CAPEM())})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Mode != ModeIssuer || plan.Object.Spec.IssuerURL != iss.URL {
		t.Fatalf("plan = %s %s, want issuer mode for %s", plan.Mode, plan.Object.Spec.IssuerURL, iss.URL)
	}
	static, err := PlanTrust(context.Background(), up, TrustOptions{Name: "idp", Audience: "prod", Static: true})
	if err != nil || !sameKeys(static.Object.Spec.JWKS.Keys, iss.JWKS()) {
		t.Fatalf("static keys from the issuer URL: %v", err)
	}

	impostor := newIssuer(t)
	impostor.SetDiscoveryIssuer("https://someone-else.example")
	_, err = PlanTrust(context.Background(), &Upstream{IssuerURL: impostor.URL, IssuerCAPEM: impostor.CAPEM()}, TrustOptions{Name: "idp", Audience: "prod"})
	if err == nil || !strings.Contains(err.Error(), "did not match") {
		t.Fatalf("error = %v, want an issuer mismatch", err)
	}
}
