package convert_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/convert"
	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// TestRoundTripAuthenticationConfiguration converts a file that sets every field of a jwt authenticator
// into objects the CRD admits and back, and requires the original less the noted fields.
func TestRoundTripAuthenticationConfiguration(t *testing.T) {
	t.Parallel()
	data := readTestdata(t, "full-authentication-config.yaml")
	orig := decodeConfig(t, data)
	if unset := unsetLeaves(orig.JWT); len(unset) > 0 {
		t.Fatalf("the test file leaves jwt authenticator fields unset: %v", unset)
	}

	objs, notes, err := convert.FromAuthenticationConfiguration(data)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.Name)
	}
	if want := []string{"issuer.example.com", "accounts.example.org-8443-tenants-a", "accounts.example.org-8443-tenants-a-2"}; !slices.Equal(names, want) {
		t.Fatalf("names = %v, want %v", names, want)
	}
	wantNotes := []string{"-1 ", "-1 anonymous", "0 claimMappings.uid.claim", "0 issuer.egressSelectorType", "1 issuer.audiences"}
	if got := noteKeys(notes); !slices.Equal(got, wantNotes) {
		t.Fatalf("notes %v, want %v:\n%v", got, wantNotes, notes)
	}

	back, backNotes, err := convert.ToAuthenticationConfiguration(admit(t, objs))
	if err != nil {
		t.Fatal(err)
	}
	// Only the configuration-wide note: nothing of a converted authenticator is lost going back.
	if got := noteKeys(backNotes); !slices.Equal(got, []string{"-1 "}) {
		t.Fatalf("notes going back: %v", backNotes)
	}
	want := orig.DeepCopy()
	want.Anonymous = nil                       // noted: anonymous
	want.JWT[0].Issuer.EgressSelectorType = "" // noted: issuer.egressSelectorType
	got := decodeConfig(t, back)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip differs:\n%s\nthe file:\n%s", diff(got, want), back)
	}
}

// TestAuthenticationConfigurationVersions: every version kube-apiserver reads converts alike.
func TestAuthenticationConfigurationVersions(t *testing.T) {
	t.Parallel()
	data := readTestdata(t, "full-authentication-config.yaml")
	want, _, err := convert.FromAuthenticationConfiguration(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range []string{"apiserver.config.k8s.io/v1beta1", "apiserver.config.k8s.io/v1alpha1"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			got, _, err := convert.FromAuthenticationConfiguration([]byte(strings.Replace(string(data), "apiserver.config.k8s.io/v1", version, 1)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatal(diff(got, want))
			}
		})
	}
}

// fullObjects returns objects that set every field of an OpenIDConnect between them.
func fullObjects(t *testing.T) []v1alpha1.OpenIDConnect {
	t.Helper()
	iss, err := testissuer.New(jose.ES256) // for a real CA and real keys; never contacted
	if err != nil {
		t.Fatal(err)
	}
	iss.Close()
	return []v1alpha1.OpenIDConnect{
		{ObjectMeta: objectMeta("hub"), Spec: v1alpha1.OpenIDConnectSpec{
			IssuerURL:                 "https://hub.example.com",
			DiscoveryURL:              "https://10.0.0.1/.well-known/openid-configuration",
			Audiences:                 []string{"https://prod.example.com:6443", "downstream"},
			ClientID:                  "downstream",
			AllowDefaultAudiences:     true,
			CABundle:                  iss.CAPEM(),
			SupportedSigningAlgs:      []string{"RS256", "ES256"},
			UsernameClaim:             "email",
			GroupsClaim:               "groups",
			GroupsPrefix:              "hub-groups:",
			RequiredClaims:            map[string]string{"tier": "gold", "hd": "example.com"},
			ExtraClaims:               []string{"team", "region"},
			MaxTokenExpirationSeconds: ptr.To[int64](3600),
			ClaimValidationRules: []v1alpha1.ClaimValidationRule{
				{Expression: "claims.email_verified == true", Message: "email must be verified"},
				{Claim: "org", RequiredValue: "acme"},
			},
			ClaimMappings: &v1alpha1.ClaimMappings{
				UID:   &v1alpha1.CELExpression{Expression: "claims.oid"},
				Extra: []v1alpha1.ExtraMapping{{Key: "example.com/tenant", ValueExpression: "claims.tenant"}},
			},
			UserValidationRules: []v1alpha1.UserValidationRule{{Expression: "!user.username.startsWith('hub:admin')", Message: "admins sign in elsewhere"}},
		}},
		{ObjectMeta: objectMeta("edge.example.com"), Spec: v1alpha1.OpenIDConnectSpec{
			IssuerURL:             "https://edge.example.com",
			Audiences:             []string{"kubernetes"},
			AllowDefaultAudiences: true,
			JWKS:                  &v1alpha1.JWKSSpec{Keys: iss.JWKS()},
			ServiceAccountGroups:  ptr.To(false),
			ClaimMappings: &v1alpha1.ClaimMappings{
				Username: &v1alpha1.CELExpression{Expression: `"edge:" + claims.sub`},
				Groups:   &v1alpha1.CELExpression{Expression: "claims.groups"},
				UID:      &v1alpha1.CELExpression{Expression: convert.UIDClaimExpression("sub")},
			},
		}},
		{ObjectMeta: objectMeta("ci"), Spec: v1alpha1.OpenIDConnectSpec{
			IssuerURL:            "https://ci.example.com/tenants/x",
			Audiences:            []string{"ci"},
			UsernamePrefix:       v1alpha1.PrefixDisabled,
			GroupsPrefix:         "ci-groups:",
			ServiceAccountGroups: ptr.To(true),
		}},
	}
}

// TestRoundTripOpenIDConnect converts objects that set every field into an AuthenticationConfiguration
// and back, and requires the objects (as the CRD admits them) less exactly the noted fields, each
// changed as its note says.
func TestRoundTripOpenIDConnect(t *testing.T) {
	t.Parallel()
	orig := admit(t, fullObjects(t))
	specs := make([]v1alpha1.OpenIDConnectSpec, 0, len(orig))
	for _, o := range orig {
		specs = append(specs, o.Spec)
	}
	if unset := unsetLeaves(specs); len(unset) > 0 {
		t.Fatalf("the test objects leave fields unset: %v", unset)
	}

	data, notes, err := convert.ToAuthenticationConfiguration(orig)
	if err != nil {
		t.Fatal(err)
	}
	decodeConfig(t, data)
	wantNotes := []string{
		"-1 ",
		"0 metadata.name", "0 spec.clientID", "0 spec.allowDefaultAudiences", "0 spec.supportedSigningAlgs", "0 spec.requiredClaims",
		"0 spec.usernamePrefix", "0 spec.serviceAccountGroups", "0 spec.extraClaims", "0 spec.maxTokenExpirationSeconds",
		"1 spec.jwks",
		"2 metadata.name", "2 spec.groupsPrefix", "2 spec.serviceAccountGroups",
	}
	slices.Sort(wantNotes)
	if got := noteKeys(notes); !slices.Equal(got, wantNotes) {
		t.Fatalf("notes %v\nwant %v:\n%v", got, wantNotes, notes)
	}

	objs, _, err := convert.FromAuthenticationConfiguration(data)
	if err != nil {
		t.Fatal(err)
	}
	back := admit(t, objs)

	// What each note says becomes of its field.
	effects := map[string]func(o *v1alpha1.OpenIDConnect, name string){
		"metadata.name":                  func(o *v1alpha1.OpenIDConnect, name string) { o.Name = name },
		"spec.clientID":                  func(o *v1alpha1.OpenIDConnect, _ string) { o.Spec.ClientID = "" }, // already in audiences
		"spec.jwks":                      func(o *v1alpha1.OpenIDConnect, _ string) { o.Spec.JWKS = nil },
		"spec.extraClaims":               func(o *v1alpha1.OpenIDConnect, _ string) { o.Spec.ExtraClaims = nil },
		"spec.allowDefaultAudiences":     func(o *v1alpha1.OpenIDConnect, _ string) { o.Spec.AllowDefaultAudiences = false },
		"spec.supportedSigningAlgs":      func(o *v1alpha1.OpenIDConnect, _ string) { o.Spec.SupportedSigningAlgs = nil },
		"spec.serviceAccountGroups":      func(o *v1alpha1.OpenIDConnect, _ string) { o.Spec.ServiceAccountGroups = ptr.To(false) },
		"spec.maxTokenExpirationSeconds": func(o *v1alpha1.OpenIDConnect, _ string) { o.Spec.MaxTokenExpirationSeconds = nil },
		"spec.groupsPrefix": func(o *v1alpha1.OpenIDConnect, _ string) {
			if o.Spec.GroupsClaim == "" {
				o.Spec.GroupsPrefix = "" // without groupsClaim: not carried
			} else {
				o.Spec.GroupsPrefix = v1alpha1.EffectivePrefix(o.Spec.GroupsPrefix, o.Name) // written out
			}
		},
		"spec.usernamePrefix": func(o *v1alpha1.OpenIDConnect, _ string) {
			o.Spec.UsernamePrefix = v1alpha1.EffectivePrefix(o.Spec.UsernamePrefix, o.Name)
		},
		"spec.requiredClaims": func(o *v1alpha1.OpenIDConnect, _ string) {
			for _, claim := range []string{"hd", "tier"} { // sorted
				o.Spec.ClaimValidationRules = append(o.Spec.ClaimValidationRules, v1alpha1.ClaimValidationRule{Claim: claim, RequiredValue: o.Spec.RequiredClaims[claim]})
			}
			o.Spec.RequiredClaims = nil
		},
	}
	// An object's metadata.name note comes after its other notes, so the prefixes written out resolve
	// against the original name.
	for i := range orig {
		want := *orig[i].DeepCopy()
		for _, n := range notes {
			if n.Index != i {
				continue
			}
			effect, ok := effects[n.Field]
			if !ok {
				t.Fatalf("no effect known for the note %s", n)
			}
			effect(&want, back[i].Name)
		}
		if !reflect.DeepEqual(back[i].Spec, want.Spec) || back[i].Name != want.Name {
			t.Errorf("object %d differs beyond its notes:\n%s", i, diff(back[i], want))
		}
	}
}

// TestToAuthenticationConfigurationOutput pins the shape of the file: apiVersion and kind first, the
// issuer first in each authenticator, no empty objects, a PEM block kept readable.
func TestToAuthenticationConfigurationOutput(t *testing.T) {
	t.Parallel()
	data, _, err := convert.ToAuthenticationConfiguration(admit(t, fullObjects(t)[1:2]))
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
  - issuer:
      url: https://edge.example.com
      audiences:
        - kubernetes
    claimMappings:
      username:
        expression: '"edge:" + claims.sub'
      groups:
        expression: claims.groups
      uid:
        claim: sub
`
	if string(data) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", data, want)
	}
	empty, notes, err := convert.ToAuthenticationConfiguration(nil)
	if err != nil || len(notes) != 0 {
		t.Fatalf("no objects: %v, notes %v", err, notes)
	}
	if cfg := decodeConfig(t, empty); len(cfg.JWT) != 0 {
		t.Fatalf("no objects gave %+v", cfg)
	}
}

func TestFromAuthenticationConfigurationRefuses(t *testing.T) {
	t.Parallel()
	const head = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n"
	jwt := func(claimMappings string) string {
		return head + "jwt:\n- issuer: {url: https://a.example.com, audiences: [a]}\n  claimMappings: " + claimMappings + "\n"
	}
	tests := []struct {
		name, data, want string
		opts             convert.Options
	}{
		{name: "empty", data: "# nothing\n", want: "the AuthenticationConfiguration is empty"},
		{name: "two documents", data: jwt("{username: {claim: sub, prefix: ''}}") + "---\n" + jwt("{username: {claim: sub, prefix: ''}}"), want: "holds 2 YAML documents; kube-apiserver reads one"},
		{name: "unknown field", data: jwt("{username: {claim: sub, prefix: ''}, userName: {}}"), want: `strict decoding error: unknown field "jwt[0].claimMappings.userName"`},
		{name: "repeated field", data: jwt("{username: {claim: sub, prefix: ''}, username: {claim: sub, prefix: ''}}"), want: `already set in map`},
		{name: "other kind", data: "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthorizationConfiguration\nauthorizers: []\n", want: "the document is a AuthorizationConfiguration, want an AuthenticationConfiguration"},
		{name: "unknown version", data: strings.Replace(jwt("{username: {claim: sub, prefix: ''}}"), "/v1", "/v2", 1), want: `no kind "AuthenticationConfiguration" is registered for version "apiserver.config.k8s.io/v2"`},
		{name: "no prefix", data: jwt("{username: {claim: sub}}"), want: "kube-apiserver would refuse this AuthenticationConfiguration: jwt[0].claimMappings.username.prefix: Required value"},
		{name: "bad CEL", data: jwt("{username: {expression: 'claims.'}}"), want: "jwt[0].claimMappings.username.expression: Invalid value"},
		{name: "http issuer", data: strings.Replace(jwt("{username: {claim: sub, prefix: ''}}"), "https://", "http://", 1), want: "URL scheme must be https"},
		{name: "username prefix -", data: jwt("{username: {claim: sub, prefix: '-'}}"), want: `jwt[0] (https://a.example.com): claimMappings.username.prefix "-" cannot be converted: an OpenIDConnect reads "-" as no prefix at all`},
		{name: "groups prefix -", data: jwt("{username: {claim: sub, prefix: ''}, groups: {claim: g, prefix: '-'}}"), want: `claimMappings.groups.prefix "-" cannot be converted`},
		{name: "invalid name prefix", data: jwt("{username: {claim: sub, prefix: ''}}"), opts: convert.Options{NamePrefix: "Kas_"}, want: `jwt[0] (https://a.example.com): the object name "Kas_a.example.com" is invalid (check the name prefix "Kas_")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			objs, _, err := tt.opts.FromAuthenticationConfiguration([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q (objects %v)", err, tt.want, objs)
			}
		})
	}
}

func TestToAuthenticationConfigurationRefuses(t *testing.T) {
	t.Parallel()
	obj := func(name, issuer, discovery string) v1alpha1.OpenIDConnect {
		return v1alpha1.OpenIDConnect{ObjectMeta: objectMeta(name), Spec: v1alpha1.OpenIDConnectSpec{IssuerURL: issuer, DiscoveryURL: discovery, Audiences: []string{"a"}}}
	}
	badCEL := obj("c", "https://c.example.com", "")
	badCEL.Spec.UserValidationRules = []v1alpha1.UserValidationRule{{Expression: "user."}}
	tests := []struct {
		name string
		objs []v1alpha1.OpenIDConnect
		want string
	}{
		{name: "shared issuer", objs: []v1alpha1.OpenIDConnect{obj("a", "https://x.example.com", ""), obj("b", "https://x.example.com", "")},
			want: `OpenIDConnect "a" and "b" share the issuer https://x.example.com: an AuthenticationConfiguration allows one jwt authenticator per issuer`},
		{name: "shared discoveryURL", objs: []v1alpha1.OpenIDConnect{obj("a", "https://x.example.com", "https://d.example.com/"), obj("b", "https://y.example.com", "https://d.example.com/")},
			want: `OpenIDConnect "a" and "b" share the discoveryURL https://d.example.com/`},
		{name: "bad CEL", objs: []v1alpha1.OpenIDConnect{badCEL}, want: `OpenIDConnect "c": kube-apiserver would refuse its jwt authenticator: userValidationRules[0].expression: Invalid value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := convert.ToAuthenticationConfiguration(tt.objs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestObjectNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		issuers []string
		prefix  string
		want    []string
	}{
		{name: "host", issuers: []string{"https://token.actions.githubusercontent.com"}, want: []string{"token.actions.githubusercontent.com"}},
		{name: "port and path", issuers: []string{"https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B7"}, want: []string{"oidc.eks.us-west-2.amazonaws.com-id-exampled539d4633e53de1b7"}},
		{name: "ip and port", issuers: []string{"https://127.0.0.1:6443"}, want: []string{"127.0.0.1-6443"}},
		{name: "odd characters", issuers: []string{"https://a_b.example.com/x y/%7Ez/"}, want: []string{"a-b.example.com-x-y-z"}},
		{name: "ipv6", issuers: []string{"https://[::1]:8443"}, want: []string{"1-8443"}},
		{name: "collisions", issuers: []string{"https://a.example.com/X", "https://a.example.com/x", "https://A.example.com/x"}, want: []string{"a.example.com-x", "a.example.com-x-2", "a.example.com-x-3"}},
		{name: "never system", issuers: []string{"https://system"}, want: []string{"system-2"}},
		{name: "prefix", issuers: []string{"https://a.example.com", "https://b.example.com"}, prefix: "kas-", want: []string{"kas-a.example.com", "kas-b.example.com"}},
		{name: "long", issuers: []string{"https://a.example.com/" + strings.Repeat("x", 300)}, want: []string{"a.example.com-" + strings.Repeat("x", 243-len("a.example.com-"))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var jwts []apiserver.JWTAuthenticator
			for _, iss := range tt.issuers {
				jwts = append(jwts, apiserver.JWTAuthenticator{Issuer: apiserver.Issuer{URL: iss}})
			}
			got, err := convert.Options{NamePrefix: tt.prefix}.ObjectNames(jwts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("names = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestUIDClaimExpression: the expression written for a uid claim compiles for any claim name and
// converts back to the very claim.
func TestUIDClaimExpression(t *testing.T) {
	t.Parallel()
	for _, claim := range []string{"sub", "https://example.com/uid", `q"uote`, `back\slash`, "new\nline", "ünïcödé", "tab\there", "\x00"} {
		obj := v1alpha1.OpenIDConnect{ObjectMeta: objectMeta("u"), Spec: v1alpha1.OpenIDConnectSpec{
			IssuerURL: "https://u.example.com", Audiences: []string{"a"},
			ClaimMappings: &v1alpha1.ClaimMappings{UID: &v1alpha1.CELExpression{Expression: convert.UIDClaimExpression(claim)}},
		}}
		data, _, err := convert.ToAuthenticationConfiguration([]v1alpha1.OpenIDConnect{obj})
		if err != nil {
			t.Fatalf("claim %q: %v", claim, err)
		}
		if got := decodeConfig(t, data).JWT[0].ClaimMappings.UID; got != (apiserver.ClaimOrExpression{Claim: claim}) {
			t.Fatalf("claim %q came back as %+v", claim, got)
		}
	}
	// A hand-written expression of another shape stays an expression.
	for _, expr := range []string{`claims["a"] == null ? "" : claims["b"]`, `claims["a"] == null ? "x" : claims["a"]`, "claims.sub"} {
		obj := v1alpha1.OpenIDConnect{ObjectMeta: objectMeta("u"), Spec: v1alpha1.OpenIDConnectSpec{
			IssuerURL: "https://u.example.com", Audiences: []string{"a"},
			ClaimMappings: &v1alpha1.ClaimMappings{UID: &v1alpha1.CELExpression{Expression: expr}},
		}}
		data, _, err := convert.ToAuthenticationConfiguration([]v1alpha1.OpenIDConnect{obj})
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeConfig(t, data).JWT[0].ClaimMappings.UID; got != (apiserver.ClaimOrExpression{Expression: expr}) {
			t.Fatalf("%s came back as %+v", expr, got)
		}
	}
}

func TestNoteString(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		note convert.Note
		want string
	}{
		{convert.Note{Index: 0, Issuer: "https://a", Field: "issuer.egressSelectorType", Message: "has no counterpart: why"},
			"jwt[0] (https://a): issuer.egressSelectorType has no counterpart: why"},
		{convert.Note{Index: 2, Issuer: "https://a", Object: "hub", Field: "spec.jwks", Message: "has no counterpart: why"},
			`jwt[2] (https://a) from OpenIDConnect "hub": spec.jwks has no counterpart: why`},
		{convert.Note{Index: -1, Field: "anonymous", Message: "has no counterpart: why"}, "AuthenticationConfiguration: anonymous has no counterpart: why"},
		{convert.Note{Index: -1, Message: "something general"}, "AuthenticationConfiguration: something general"},
	} {
		if got := tt.note.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// TestManifest: the manifest of an object holds what an apply needs and nothing the server fills in.
func TestManifest(t *testing.T) {
	t.Parallel()
	obj := fullObjects(t)[0]
	obj.ResourceVersion, obj.UID = "7", "uid"
	obj.Status.KeyCount = 3
	m, err := convert.Manifest(&obj)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(m)
	var back v1alpha1.OpenIDConnect
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(m["metadata"]) != "map[name:hub]" || m["status"] != nil || !reflect.DeepEqual(back.Spec, obj.Spec) {
		t.Fatalf("manifest %v", m)
	}
}
