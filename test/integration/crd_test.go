//go:build integration

package integration

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
)

// TestCRDValidation checks the OpenAPI and CEL rules of the installed CRD against a real API server.
func TestCRDValidation(t *testing.T) {
	valid := func() v1alpha1.OpenIDConnectSpec {
		return v1alpha1.OpenIDConnectSpec{IssuerURL: "https://hub.example.com", Audiences: []string{"https://downstream.example:6443"}}
	}
	tests := []struct {
		name    string
		objName string
		mutate  func(*v1alpha1.OpenIDConnectSpec)
		wantErr string // "" means accepted
	}{
		{name: "valid", mutate: func(*v1alpha1.OpenIDConnectSpec) {}},
		{name: "issuer with path", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.IssuerURL = "https://hub.example.com/tenants/a" }},
		{name: "clientID alone", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.Audiences = nil; s.ClientID = "aud" }},
		{name: "clientID within audiences", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.ClientID = s.Audiences[0] }},
		{name: "prefix disabled", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.UsernamePrefix = "-" }},
		{name: "http issuer", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.IssuerURL = "http://hub.example.com" }, wantErr: "issuerURL must be an https URL"},
		{name: "issuer with query", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.IssuerURL = "https://hub.example.com/?a=b" }, wantErr: "issuerURL must be an https URL"},
		{name: "issuer with fragment", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.IssuerURL = "https://hub.example.com#x" }, wantErr: "issuerURL must be an https URL"},
		{name: "issuer with userinfo", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.IssuerURL = "https://user:pw@hub.example.com" }, wantErr: "issuerURL must be an https URL"},
		{name: "no audience", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.Audiences = nil }, wantErr: "at least one audience"},
		{name: "clientID outside audiences", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.ClientID = "other" }, wantErr: "clientID must be one of audiences"},
		{name: "system username prefix", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.UsernamePrefix = "system:hub:" }, wantErr: "usernamePrefix must not start with system:"},
		{name: "system groups prefix", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.GroupsPrefix = "system:" }, wantErr: "groupsPrefix must not start with system:"},
		{name: "symmetric algorithm", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.SupportedSigningAlgs = []string{"HS256"} }, wantErr: "Unsupported value"},
		{name: "alg none", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.SupportedSigningAlgs = []string{"none"} }, wantErr: "Unsupported value"},
		{name: "http discovery URL", mutate: func(s *v1alpha1.OpenIDConnectSpec) {
			s.DiscoveryURL = "http://10.0.0.1/.well-known/openid-configuration"
		}, wantErr: "discoveryURL must be an https URL"},
		{name: "static keys and discovery URL", mutate: func(s *v1alpha1.OpenIDConnectSpec) {
			s.DiscoveryURL = "https://10.0.0.1/.well-known/openid-configuration"
			s.JWKS = &v1alpha1.JWKSSpec{Keys: []byte(`{"keys":[]}`)}
		}, wantErr: "mutually exclusive"},
		{name: "claim rule with both claim and expression", mutate: func(s *v1alpha1.OpenIDConnectSpec) {
			s.ClaimValidationRules = []v1alpha1.ClaimValidationRule{{Claim: "a", Expression: "true"}}
		}, wantErr: "exactly one of claim or expression"},
		{name: "zero max token expiration", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.MaxTokenExpirationSeconds = ptr.To[int64](0) }, wantErr: "should be greater than or equal to 1"},
		{name: "default in-cluster audience", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.Audiences = []string{"https://kubernetes.default.svc"} }, wantErr: "in-cluster default audience"},
		{name: "default audience as clientID", mutate: func(s *v1alpha1.OpenIDConnectSpec) { s.Audiences = nil; s.ClientID = "kubernetes" }, wantErr: "in-cluster default audience"},
		{name: "default audience with opt-in", mutate: func(s *v1alpha1.OpenIDConnectSpec) {
			s.Audiences = []string{"https://kubernetes.default.svc.cluster.local"}
			s.AllowDefaultAudiences = true
		}},
		{name: "CEL username with usernamePrefix", mutate: func(s *v1alpha1.OpenIDConnectSpec) {
			s.UsernamePrefix = "hub:"
			s.ClaimMappings = &v1alpha1.ClaimMappings{Username: &v1alpha1.CELExpression{Expression: "claims.sub"}}
		}, wantErr: "claimMappings.username replaces"},
		{name: "CEL username with usernameClaim", mutate: func(s *v1alpha1.OpenIDConnectSpec) {
			s.UsernameClaim = "email"
			s.ClaimMappings = &v1alpha1.ClaimMappings{Username: &v1alpha1.CELExpression{Expression: "claims.sub"}}
		}, wantErr: "claimMappings.username replaces"},
		{name: "CEL username alone", mutate: func(s *v1alpha1.OpenIDConnectSpec) {
			s.ClaimMappings = &v1alpha1.ClaimMappings{Username: &v1alpha1.CELExpression{Expression: "'x:' + claims.sub"}}
		}},
		{name: "CEL groups with groupsClaim", mutate: func(s *v1alpha1.OpenIDConnectSpec) {
			s.GroupsClaim = "groups"
			s.ClaimMappings = &v1alpha1.ClaimMappings{Groups: &v1alpha1.CELExpression{Expression: "claims.groups"}}
		}, wantErr: "claimMappings.groups replaces"},
		{name: "object named system without prefixes", objName: "system", mutate: func(*v1alpha1.OpenIDConnectSpec) {}, wantErr: "an object named system needs explicit"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := valid()
			tt.mutate(&spec)
			name := tt.objName
			if name == "" {
				name = "crd-" + strings.ToLower(strings.ReplaceAll(tt.name, " ", "-"))
			}
			obj := &v1alpha1.OpenIDConnect{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
			err := adminClient.Create(context.Background(), obj, client.DryRunAll)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("case %d: rejected a valid object: %v", i, err)
				}
				return
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want Invalid containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestCRDDefaults checks the defaults the API server applies.
func TestCRDDefaults(t *testing.T) {
	obj := &v1alpha1.OpenIDConnect{
		ObjectMeta: metav1.ObjectMeta{Name: "defaults"},
		Spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: "https://hub.example.com", Audiences: []string{"a"}},
	}
	if err := adminClient.Create(context.Background(), obj, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if obj.Spec.UsernameClaim != "sub" || obj.Spec.ServiceAccountGroups == nil || !*obj.Spec.ServiceAccountGroups {
		t.Fatalf("defaults not applied: %+v", obj.Spec)
	}
}
