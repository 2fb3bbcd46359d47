package convert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"crypto/tls"
	"net/http"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	authenticationcel "k8s.io/apiserver/pkg/authentication/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/oidc"
	certutil "k8s.io/client-go/util/cert"

	"github.com/clustertrust/clustertrust/internal/authn"
	"github.com/clustertrust/clustertrust/internal/convert"
	"github.com/clustertrust/clustertrust/internal/registry"
	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// The behavioural check of the conversion. Each case is a jwt authenticator in the shape of a case of
// k8s.io/apiserver's TestToken (plugin/pkg/authenticator/token/oidc/oidc_test.go; the case name is
// upstream's, verbatim, where the shape is taken from one) and a set of tokens. The authenticator runs
// twice on every token:
//
//   - as kube-apiserver runs it: k8s.io/apiserver's oidc.New on the AuthenticationConfiguration's
//     authenticator, with its certificateAuthority and every signing algorithm, as kube-apiserver
//     configures a structured JWT authenticator;
//   - as clustertrust runs it after conversion: FromAuthenticationConfiguration, the CRD's admission
//     (registry.ParseManifests), registry.ToConfig, authn.NewEntry behind a Router, as the webhook does.
//
// Both fetch discovery and keys over TLS from the same testissuer, and must give the same answer: the
// same user, groups, uid and extra, or both a refusal. The exceptions are clustertrust's documented
// departures, each marked on its token (stricter: clustertrust refuses; ours: clustertrust's user) with
// the reason. clustertrust's own extras (authentication.clustertrust.io/*) are left out of the
// comparison: they are additions, documented, and tested in internal/authn.
//
// The expected answers are not transcribed from upstream: kube-apiserver's authenticator computes them
// live, so this table cannot drift from it. internal/authn's conformance table holds the transcribed
// upstream cases; it is unexported in package authn (which must not import this one), so this table
// reproduces the shapes that matter for a conversion rather than reusing it.

type behaviourCase struct {
	name string
	// audiences default to my-client; issuerExtra is YAML added to the issuer ({{URL}} is the issuer's).
	audiences   []string
	issuerExtra string
	// rest is the authenticator after its issuer: claimMappings and the rules, indented two spaces.
	rest   string
	tokens []behaviourToken
}

type behaviourToken struct {
	name   string
	claims testissuer.Claims
	// forged signs the token with a key the issuer does not publish.
	forged bool
	// stricter is why clustertrust refuses a token kube-apiserver accepts.
	stricter string
	// ours is clustertrust's user where it documents a different one than kube-apiserver's, with why.
	ours *user.DefaultInfo
	why  string
}

func behaviourCases() []behaviourCase {
	const blank = "stricter: clustertrust refuses a blank username (kube-apiserver only refuses an empty one from CEL)"
	const system = "stricter: clustertrust refuses a username in system:"
	null := json.RawMessage("null")
	now := time.Now()
	turtle := map[string]any{"foo": map[string]any{"1": "a", "2": "b", "other1": map[string]any{"bit1": true, "bit2": false, "bit3": 1},
		"bar": map[string]any{"3": "c", "4": "d", "other1": map[string]any{"bit1": true, "bit2": false, "bit3": 1},
			"baz": map[string]any{"5": "e", "6": "f", "panda": []string{"snorlax", "007", "santa", "claus"}, "other1": map[string]any{"bit1": true, "bit2": false, "bit3": 1}}}}}
	sa := testissuer.ServiceAccountClaims("tenant-a", "runner", "my-client")
	return []behaviourCase{
		{name: "token", rest: `claimMappings: {username: {claim: username, prefix: ""}}`, tokens: []behaviourToken{
			{name: "token", claims: testissuer.Claims{"aud": "my-client", "username": "jane"}},
			{name: "no-username", claims: testissuer.Claims{"aud": "my-client"}},
			{name: "username not a string", claims: testissuer.Claims{"aud": "my-client", "username": 5}},
			{name: "empty username is allowed via claim", claims: testissuer.Claims{"aud": "my-client", "username": ""}, stricter: blank},
			{name: "null username", claims: testissuer.Claims{"aud": "my-client", "username": null}, stricter: blank},
			{name: "system username", claims: testissuer.Claims{"aud": "my-client", "username": "system:admin"}, stricter: system},
			{name: "invalid-aud", claims: testissuer.Claims{"aud": "not-my-client", "username": "jane"}},
			{name: "expired", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "exp": now.Add(-time.Hour).Unix(), "iat": now.Add(-2 * time.Hour).Unix(), "nbf": now.Add(-2 * time.Hour).Unix()}},
			{name: "invalid-signature", claims: testissuer.Claims{"aud": "my-client", "username": "jane"}, forged: true},
			{name: "credential id set in extra even when no extra claim mappings are defined", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "jti": "1234"}},
			{name: "non-string jti claim does not set credential id in extra or error", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "jti": 1234}},
		}},
		{name: "username-prefix", rest: `claimMappings: {username: {claim: username, prefix: "oidc:"}, groups: {claim: groups, prefix: "groups:"}}`, tokens: []behaviourToken{
			{name: "groups-prefix", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1", "team2"}}},
			{name: "group-string-claim", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": "team1"}},
			{name: "no-groups-claim", claims: testissuer.Claims{"aud": "my-client", "username": "jane"}},
			{name: "invalid-groups-claim", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": 42}},
			{name: "null groups", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": null}},
			{name: "prefixed system group", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"system:masters"}}},
		}},
		{name: "email", rest: `claimMappings: {username: {claim: email, prefix: ""}}`, tokens: []behaviourToken{
			{name: "email", claims: testissuer.Claims{"aud": "my-client", "email": "jane@example.com", "email_verified": true}},
			{name: "email-not-verified", claims: testissuer.Claims{"aud": "my-client", "email": "jane@example.com", "email_verified": false}},
			{name: "no-email-verified-claim", claims: testissuer.Claims{"aud": "my-client", "email": "jane@example.com"}},
			{name: "invalid-email-verified-claim", claims: testissuer.Claims{"aud": "my-client", "email": "jane@example.com", "email_verified": "false"}},
		}},
		{name: "groups", rest: `claimMappings: {username: {claim: username, prefix: ""}, groups: {claim: groups, prefix: ""}}`, tokens: []behaviourToken{
			{name: "groups", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1", "team2"}}},
			{name: "system group", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1", "system:masters"}},
				ours: &user.DefaultInfo{Name: "jane", Groups: []string{"team1"}}, why: "clustertrust drops groups in system:"},
		}},
		{name: "required-claim", rest: "claimMappings: {username: {claim: username, prefix: \"\"}}\nclaimValidationRules: [{claim: hd, requiredValue: example.com}]", tokens: []behaviourToken{
			{name: "required-claim", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "hd": "example.com"}},
			{name: "no-required-claim", claims: testissuer.Claims{"aud": "my-client", "username": "jane"}},
			{name: "invalid-required-claim", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "hd": "example.org"}},
			{name: "required claim not a string", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "hd": []string{"example.com"}}},
		}},
		{name: "claim validation rule with mix of expression and claim", rest: `claimMappings: {username: {claim: username, prefix: ""}}
claimValidationRules:
- {expression: 'claims.foo.bar == "baz"', message: foo.bar claim must be baz}
- {claim: hd, requiredValue: example.com}`, tokens: []behaviourToken{
			{name: "both hold", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "hd": "example.com", "foo": map[string]string{"bar": "baz"}}},
			{name: "claim validation rule with expression fails", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "hd": "example.com", "foo": map[string]string{"bar": "qux"}}},
			{name: "expression over a missing claim", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "hd": "example.com"}},
			{name: "required claim fails", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "hd": "example.org", "foo": map[string]string{"bar": "baz"}}},
		}},
		{name: "nuanced audience validation using claim validation rules", audiences: []string{"bar", "foo", "baz"}, rest: `claimMappings: {username: {claim: username, prefix: ""}}
claimValidationRules:
- {expression: 'sets.equivalent(claims.aud, ["bar", "foo", "baz"])', message: "audience must exactly contain [bar, foo, baz]"}`, tokens: []behaviourToken{
			{name: "nuanced audience validation using claim validation rules", claims: testissuer.Claims{"aud": []string{"foo", "bar", "baz"}, "username": "jane"}},
			{name: "audience validation using claim validation rules fails", claims: testissuer.Claims{"aud": []string{"foo", "bar"}, "username": "jane"}},
			{name: "a single audience as a string", claims: testissuer.Claims{"aud": "foo", "username": "jane"}},
		}},
		{name: "multiple-audiences in authentication config", audiences: []string{"random-client", "my-client"}, rest: `claimMappings: {username: {claim: username, prefix: ""}}`, tokens: []behaviourToken{
			{name: "multiple-audiences in authentication config", claims: testissuer.Claims{"aud": []string{"not-my-client", "my-client"}, "username": "jane"}},
			{name: "multiple-audiences in authentication config, multiple matches", claims: testissuer.Claims{"aud": []string{"random-client", "my-client", "other-client"}, "username": "jane"}},
			{name: "multiple-audiences in authentication config, no match", claims: testissuer.Claims{"aud": []string{"not-my-client"}, "username": "jane"}},
			{name: "one of them as a string", claims: testissuer.Claims{"aud": "random-client", "username": "jane"}},
		}},
		{name: "claim mappings with expressions and deeply nested claim - success", rest: `claimValidationRules:
- {expression: 'claims.turtle.foo.other1.bit1 && !claims.turtle.foo.bar.other1.bit2'}
claimMappings:
  username: {expression: 'claims.turtle.foo.bar.baz.panda[0]'}
  groups: {expression: 'claims.turtle.foo.bar.baz.panda'}
  uid: {expression: 'claims.turtle.foo.bar.baz.panda[1]'}
  extra:
  - {key: bio.snorlax.org/1, valueExpression: 'string(claims.turtle.foo.bar.other1.bit2)'}
  - {key: bio.snorlax.org/2, valueExpression: 'string(claims.turtle.foo.bar.baz.other1.bit3)'}
  - {key: bio.snorlax.org/3, valueExpression: "[string(claims.turtle.foo.bar.baz.other1.bit1)] + ['a', 'b', 'c']"}
userValidationRules:
- {expression: 'user.username != "bad"'}
- {expression: 'user.uid == "007"'}
- {expression: '"claus" in user.groups'}
- {expression: 'user.extra.bio__dot__snorlax__dot__org__slash__3.size() == 4'}`, tokens: []behaviourToken{
			{name: "turtle", claims: testissuer.Claims{"aud": "my-client", "turtle": turtle}},
			{name: "claim mappings with expressions and deeply nested claim - failure without optional", claims: testissuer.Claims{"aud": "my-client", "turtle": map[string]any{"foo": map[string]any{}}}},
		}},
		{name: "claim mappings with expressions and deeply nested claim - success - service account payload", rest: `claimValidationRules:
- {expression: 'claims.sub == ("system:serviceaccount:" + claims.kubernetes__dot__io.namespace + ":" + claims.kubernetes__dot__io.serviceaccount.name)'}
- {expression: 'has(claims.kubernetes__dot__io.pod.uid)'}
claimMappings:
  username: {expression: '"system:serviceaccount:" + claims.kubernetes__dot__io.namespace + ":" + claims.kubernetes__dot__io.serviceaccount.name'}
  uid: {expression: claims.kubernetes__dot__io.serviceaccount.uid}
  groups: {expression: '[ "system:serviceaccounts", "system:serviceaccounts:" + claims.kubernetes__dot__io.namespace ]'}
  extra:
  - {key: authentication.x-kubernetes.io/pod-name, valueExpression: claims.kubernetes__dot__io.pod.name}`, tokens: []behaviourToken{
			{name: "service account token", claims: sa, stricter: system},
		}},
		{name: "service account token under a prefix", rest: `claimMappings: {username: {claim: sub, prefix: "hub:"}, uid: {expression: 'claims.kubernetes__dot__io.serviceaccount.uid'}, extra: [{key: example.com/namespace, valueExpression: claims.kubernetes__dot__io.namespace}]}`, tokens: []behaviourToken{
			{name: "service account token", claims: sa},
		}},
		{name: "service account token without a uid mapping", rest: `claimMappings: {username: {claim: sub, prefix: "hub:"}}`, tokens: []behaviourToken{
			{name: "service account token", claims: sa, ours: &user.DefaultInfo{Name: "hub:system:serviceaccount:tenant-a:runner", UID: "hub:uid-runner", Extra: map[string][]string{"authentication.kubernetes.io/credential-id": {"JTI=jti-runner"}}},
				why: "clustertrust gives a ServiceAccount token the prefixed ServiceAccount uid when the mapping sets none"},
		}},
		{name: "uid claim mapping with claim", rest: `claimMappings: {username: {expression: claims.username}, groups: {expression: claims.groups}, uid: {claim: uid}}`, tokens: []behaviourToken{
			{name: "uid claim mapping with claim", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1", "team2"}, "uid": "1234"}},
			{name: "null uid", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1"}, "uid": null}},
			{name: "empty uid", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1"}, "uid": ""}},
			{name: "no uid", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1"}}},
			{name: "numeric uid", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1"}, "uid": 1234}},
			{name: "list uid", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1"}, "uid": []string{"1234"}}},
			{name: "object uid", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1"}, "uid": map[string]string{"a": "b"}}},
			{name: "boolean uid", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1"}, "uid": true}},
		}},
		{name: "uid claim with an unusual name", rest: `claimMappings: {username: {claim: username, prefix: ""}, uid: {claim: "https://example.com/u\"id"}}`, tokens: []behaviourToken{
			{name: "set", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "https://example.com/u\"id": "1234"}},
			{name: "missing", claims: testissuer.Claims{"aud": "my-client", "username": "jane"}},
		}},
		{name: "extra claim mapping, empty string value for key", rest: `claimMappings:
  username: {expression: claims.username}
  groups: {expression: claims.groups}
  uid: {expression: claims.uid}
  extra:
  - {key: example.org/foo, valueExpression: claims.foo}
  - {key: example.org/bar, valueExpression: claims.bar}`, tokens: []behaviourToken{
			{name: "extra claim mapping, empty string value for key", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1", "team2"}, "uid": "1234", "foo": "", "bar": "bar"}},
			{name: "extra claim mapping with expression", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1", "team2"}, "uid": "1234", "foo": "bar", "bar": []string{"baz", "qux"}}},
			{name: "missing extra claim", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1"}, "uid": "1234", "foo": "bar"}},
			{name: "groups expression returns null", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": null, "uid": "1234", "foo": "a", "bar": "b"}},
			{name: "username expression gives an empty string", claims: testissuer.Claims{"aud": "my-client", "username": "", "groups": []string{"team1"}, "uid": "1234", "foo": "a", "bar": "b"}},
		}},
		{name: "user validation rule fails for user.groups", rest: `claimMappings: {username: {claim: username, prefix: ""}, groups: {claim: groups, prefix: ""}}
userValidationRules:
- {expression: "user.groups.all(group, !group.startsWith('system:'))", message: groups cannot used reserved system- prefix}
- {expression: "!user.username.startsWith('admin')", message: no admins}`, tokens: []behaviourToken{
			{name: "user validation rule fails for user.groups", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1", "system:foo"}}},
			{name: "user validation rule fails for user.username", claims: testissuer.Claims{"aud": "my-client", "username": "admin-jane", "groups": []string{"team1"}}},
			{name: "both hold", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "groups": []string{"team1"}}},
		}},
		{name: "using credential id and user validation rule to simulate revocation", rest: `claimMappings: {username: {claim: username, prefix: ""}}
userValidationRules:
- {expression: "user.extra[?'authentication.kubernetes.io/credential-id'].orValue([]) != ['JTI=revoked']", message: revoked}`, tokens: []behaviourToken{
			{name: "revoked", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "jti": "revoked"}},
			{name: "not revoked", claims: testissuer.Claims{"aud": "my-client", "username": "jane", "jti": "fine"}},
		}},
		{name: "discovery-url", issuerExtra: "discoveryURL: {{URL}}/.well-known/openid-configuration", rest: `claimMappings: {username: {claim: username, prefix: ""}}`, tokens: []behaviourToken{
			{name: "discovery-url", claims: testissuer.Claims{"aud": "my-client", "username": "jane"}},
		}},
		{name: "email username expression", rest: `claimMappings: {username: {expression: 'claims.email_verified ? claims.email : ""'}}`, tokens: []behaviourToken{
			{name: "verified", claims: testissuer.Claims{"aud": "my-client", "email": "jane@example.com", "email_verified": true}},
			{name: "not verified", claims: testissuer.Claims{"aud": "my-client", "email": "jane@example.com", "email_verified": false}},
		}},
	}
}

// config is the case's AuthenticationConfiguration for issuer iss.
func (c behaviourCase) config(iss *testissuer.Issuer) []byte {
	audiences := c.audiences
	if len(audiences) == 0 {
		audiences = []string{"my-client"}
	}
	auds, _ := json.Marshal(audiences)
	extra := ""
	if c.issuerExtra != "" {
		extra = "\n    " + strings.ReplaceAll(c.issuerExtra, "{{URL}}", iss.URL)
	}
	ca, _ := json.Marshal(string(iss.CAPEM()))
	rest := "  " + strings.ReplaceAll(c.rest, "\n", "\n  ")
	return fmt.Appendf(nil, `apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: %s
    certificateAuthority: %s
    audiences: %s
    audienceMatchPolicy: MatchAny%s
%s
`, iss.URL, ca, auds, extra, rest)
}

// TestConvertedObjectsAuthenticateAsKubeAPIServer: see the comment at the top of this file.
func TestConvertedObjectsAuthenticateAsKubeAPIServer(t *testing.T) {
	t.Parallel()
	iss, err := testissuer.New(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	forger, err := testissuer.NewKey(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	compiler := authn.NewCompiler()
	tokens := 0
	for _, tc := range behaviourCases() {
		tokens += len(tc.tokens)
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := tc.config(iss)
			orig := decodeConfig(t, data).JWT[0]
			reference := kubeAPIServerAuthenticator(t, orig, compiler)

			objs, _, err := convert.FromAuthenticationConfiguration(data)
			if err != nil {
				t.Fatal(err)
			}
			obj := admit(t, objs)[0]
			cfg, err := registry.ToConfig(&obj)
			if err != nil {
				t.Fatal(err)
			}
			checkEffectiveAuthenticator(t, cfg, orig)
			ours := clustertrustRouter(t, cfg, compiler)
			accepted := 0 // by kube-apiserver: a case where every token is refused would prove little
			defer func() {
				if accepted == 0 {
					t.Error("kube-apiserver accepted none of the case's tokens")
				}
			}()

			for _, tok := range tc.tokens {
				var token string
				if tok.forged {
					token, err = testissuer.MintFor(forger, iss.URL, tok.claims)
				} else {
					token, err = iss.Mint(tok.claims)
				}
				if err != nil {
					t.Fatal(err)
				}
				want := answerOf(reference.AuthenticateToken(context.Background(), token))
				got := answerOf(ours.AuthenticateToken(context.Background(), token))
				if want.user != nil {
					accepted++
				}
				switch {
				case tok.stricter != "":
					if want.user == nil || got.user != nil {
						t.Errorf("%s: kube-apiserver %s, clustertrust %s; want kube-apiserver to accept and clustertrust to refuse (%s)", tok.name, want, got, tok.stricter)
					}
				case tok.ours != nil:
					if want.user == nil || reflect.DeepEqual(want.user, tok.ours) || !reflect.DeepEqual(got.user, tok.ours) {
						t.Errorf("%s: kube-apiserver %s, clustertrust %s; want clustertrust %+v where kube-apiserver differs (%s)", tok.name, want, got, *tok.ours, tok.why)
					}
				case (want.user == nil) != (got.user == nil) || !reflect.DeepEqual(want.user, got.user):
					t.Errorf("%s: kube-apiserver %s, clustertrust %s", tok.name, want, got)
				}
			}
		})
	}
	t.Logf("%d authenticators, %d tokens", len(behaviourCases()), tokens)
}

// acceptJWKS adds the Accept header testissuer's JWKS endpoint requires (it answers like
// kube-apiserver's own /openid/v1/jwks, which go-oidc's default request would not satisfy).
type acceptJWKS struct{ next http.RoundTripper }

func (a acceptJWKS) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	return a.next.RoundTrip(req)
}

// kubeAPIServerAuthenticator builds j as kube-apiserver builds a structured JWT authenticator
// (k8s.io/kubernetes pkg/kubeapiserver/authenticator, newJWTAuthenticator: every signing algorithm) and
// waits for it. Its HTTP client trusts certificateAuthority alone, as kube-apiserver's does, and
// asks for a JWK set (see acceptJWKS).
func kubeAPIServerAuthenticator(t *testing.T, j apiserver.JWTAuthenticator, compiler authenticationcel.Compiler) authenticator.Token {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	opts := oidc.Options{JWTAuthenticator: j, SupportedSigningAlgs: oidc.AllValidSigningAlgorithms(), Compiler: compiler}
	roots, err := certutil.NewPoolFromBytes([]byte(j.Issuer.CertificateAuthority))
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	t.Cleanup(transport.CloseIdleConnections)
	opts.Client = &http.Client{Transport: acceptJWKS{transport}, Timeout: 10 * time.Second}
	a, err := oidc.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.HealthCheck() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver's authenticator never initialized: %v", a.HealthCheck())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return a
}

// clustertrustRouter serves cfg as the webhook does and waits for its keys.
func clustertrustRouter(t *testing.T, cfg authn.Config, compiler authenticationcel.Compiler) *authn.Router {
	t.Helper()
	entry, err := authn.NewEntry(cfg, authn.EntryOptions{Compiler: compiler, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	entry.Start()
	router := authn.NewRouter()
	router.Store(cfg.Name, entry)
	t.Cleanup(func() { router.Delete(cfg.Name) })
	deadline := time.Now().Add(10 * time.Second)
	for s := entry.KeyStatus(); !s.Attempted || len(s.Keys) == 0; s = entry.KeyStatus() {
		if time.Now().After(deadline) {
			t.Fatalf("clustertrust's entry never loaded keys: %v", s.LastError)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return router
}

// checkEffectiveAuthenticator compares, field by field, what the webhook hands k8s.io/apiserver's
// authenticator for the converted object (authn.Config: its claims and effective prefixes, CEL and rules)
// with the original authenticator, and that none of clustertrust's additions is on.
func checkEffectiveAuthenticator(t *testing.T, cfg authn.Config, j apiserver.JWTAuthenticator) {
	t.Helper()
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", what, got, want)
		}
	}
	check("issuer", cfg.Issuer, j.Issuer.URL)
	check("discoveryURL", cfg.DiscoveryURL, j.Issuer.DiscoveryURL)
	check("audiences", cfg.Audiences, j.Issuer.Audiences)
	check("caBundle", string(cfg.CABundle), j.Issuer.CertificateAuthority)
	check("claimValidationRules", cfg.ClaimValidationRules, j.ClaimValidationRules)
	check("userValidationRules", cfg.UserValidationRules, j.UserValidationRules)
	check("extra", cfg.ClaimMappings.Extra, j.ClaimMappings.Extra)
	if u := j.ClaimMappings.Username; u.Expression != "" {
		check("username expression", cfg.ClaimMappings.Username, u)
	} else {
		check("username claim and prefix", []string{cfg.ClaimMappings.Username.Expression, cfg.UsernameClaim, cfg.UsernamePrefix}, []string{"", u.Claim, *u.Prefix})
	}
	switch g := j.ClaimMappings.Groups; {
	case g.Expression != "":
		check("groups expression", cfg.ClaimMappings.Groups, g)
	case g.Claim != "":
		check("groups claim and prefix", []string{cfg.ClaimMappings.Groups.Expression, cfg.GroupsClaim, cfg.GroupsPrefix}, []string{"", g.Claim, *g.Prefix})
	default:
		check("groups", []string{cfg.ClaimMappings.Groups.Expression, cfg.GroupsClaim}, []string{"", ""})
	}
	wantUID := j.ClaimMappings.UID
	if wantUID.Claim != "" {
		wantUID = apiserver.ClaimOrExpression{Expression: convert.UIDClaimExpression(wantUID.Claim)}
	}
	check("uid", cfg.ClaimMappings.UID, wantUID)
	check("clustertrust's additions", []any{cfg.StaticJWKS, cfg.SigningAlgs, cfg.ServiceAccountGroups, cfg.RequiredClaims, cfg.ExtraClaims, cfg.MaxTokenLifetime},
		[]any{[]byte(nil), []string(nil), false, map[string]string(nil), []string(nil), time.Duration(0)})
}

// answer is an authenticator's answer: a user, or nil for a refusal (an error or "not mine").
type answer struct {
	user *user.DefaultInfo
	err  error
}

func answerOf(resp *authenticator.Response, ok bool, err error) answer {
	if !ok || err != nil || resp == nil {
		return answer{err: err}
	}
	u := &user.DefaultInfo{Name: resp.User.GetName(), UID: resp.User.GetUID(), Groups: slices.Clone(resp.User.GetGroups())}
	if len(u.Groups) == 0 {
		u.Groups = nil
	}
	extra := maps.Clone(resp.User.GetExtra())
	maps.DeleteFunc(extra, func(k string, _ []string) bool { return strings.HasPrefix(k, authn.ExtraPrefix) })
	if len(extra) > 0 {
		u.Extra = extra
	}
	return answer{user: u}
}

func (a answer) String() string {
	if a.user == nil {
		return fmt.Sprintf("refused (%v)", a.err)
	}
	return fmt.Sprintf("accepted %+v", *a.user)
}
