package registry

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apiserver/pkg/apis/apiserver"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/authn"
)

// ToConfig translates an OpenIDConnect object into an authn.Config, applying the API's defaults.
//
// The CRD's rules are not repeated here: the API server enforces them on objects from the API, and the
// file source enforces them on objects from files with the CRD itself (crdValidator). What ToConfig
// still checks is what the CRD cannot say directly or did not always say:
//   - the effective prefixes, which only ToConfig computes (an empty prefix means "<name>:"), must not
//     start with "system:": the one guarantee everything else rests on, that an upstream can never mint a
//     downstream system identity. The CRD covers it only indirectly, through its rule on an object named
//     "system".
//   - the in-cluster default audiences and the exclusivity of claimMappings.username/groups with the flat
//     claim and prefix fields: the CRD gained these rules after v1alpha1 first shipped, and the API server
//     never re-validates an object stored under the older CRD.
//
// The https issuerURL and the non-empty audiences were in the CRD from the start (authn.NewEntry also
// refuses an entry without audiences), so they are no longer checked here.
func ToConfig(obj *v1alpha1.OpenIDConnect) (authn.Config, error) {
	spec := &obj.Spec
	var errs []error
	usernamePrefix := v1alpha1.EffectivePrefix(spec.UsernamePrefix, obj.Name)
	groupsPrefix := v1alpha1.EffectivePrefix(spec.GroupsPrefix, obj.Name)
	if strings.HasPrefix(usernamePrefix, "system:") {
		errs = append(errs, fmt.Errorf("usernamePrefix %q must not start with \"system:\"", usernamePrefix))
	}
	if strings.HasPrefix(groupsPrefix, "system:") {
		errs = append(errs, fmt.Errorf("groupsPrefix %q must not start with \"system:\"", groupsPrefix))
	}
	audiences := spec.EffectiveAudiences()
	if !spec.AllowDefaultAudiences {
		for _, a := range audiences {
			if slices.Contains(v1alpha1.DefaultAudiences, a) {
				errs = append(errs, fmt.Errorf("audience %q is an in-cluster default that every pod token of the upstream carries; set allowDefaultAudiences to accept it anyway", a))
			}
		}
	}
	usernameClaim := spec.UsernameClaim
	if usernameClaim == "" {
		usernameClaim = "sub"
	}
	cfg := authn.Config{
		Name:                 obj.Name,
		UID:                  string(obj.UID),
		CreatedAt:            obj.CreationTimestamp.Time,
		Issuer:               spec.IssuerURL,
		DiscoveryURL:         spec.DiscoveryURL,
		Audiences:            audiences,
		CABundle:             spec.CABundle,
		SigningAlgs:          spec.SupportedSigningAlgs,
		UsernameClaim:        usernameClaim,
		UsernamePrefix:       usernamePrefix,
		GroupsClaim:          spec.GroupsClaim,
		GroupsPrefix:         groupsPrefix,
		ServiceAccountGroups: spec.ServiceAccountGroups == nil || *spec.ServiceAccountGroups,
		RequiredClaims:       spec.RequiredClaims,
		ExtraClaims:          spec.ExtraClaims,
	}
	if spec.JWKS != nil {
		cfg.StaticJWKS = spec.JWKS.Keys
	}
	if spec.MaxTokenExpirationSeconds != nil {
		cfg.MaxTokenLifetime = time.Duration(*spec.MaxTokenExpirationSeconds) * time.Second
	}
	for _, r := range spec.ClaimValidationRules {
		cfg.ClaimValidationRules = append(cfg.ClaimValidationRules, apiserver.ClaimValidationRule{
			Claim: r.Claim, RequiredValue: r.RequiredValue, Expression: r.Expression, Message: r.Message,
		})
	}
	for _, r := range spec.UserValidationRules {
		cfg.UserValidationRules = append(cfg.UserValidationRules, apiserver.UserValidationRule{Expression: r.Expression, Message: r.Message})
	}
	if m := spec.ClaimMappings; m != nil {
		if m.Username != nil {
			if spec.UsernamePrefix != "" || (spec.UsernameClaim != "" && spec.UsernameClaim != "sub") {
				errs = append(errs, errors.New("claimMappings.username and usernameClaim/usernamePrefix are mutually exclusive"))
			}
			cfg.ClaimMappings.Username.Expression = m.Username.Expression
		}
		if m.Groups != nil {
			if spec.GroupsClaim != "" || spec.GroupsPrefix != "" {
				errs = append(errs, errors.New("claimMappings.groups and groupsClaim/groupsPrefix are mutually exclusive"))
			}
			cfg.ClaimMappings.Groups.Expression = m.Groups.Expression
		}
		if m.UID != nil {
			cfg.ClaimMappings.UID.Expression = m.UID.Expression
		}
		for _, x := range m.Extra {
			cfg.ClaimMappings.Extra = append(cfg.ClaimMappings.Extra, apiserver.ExtraMapping{Key: x.Key, ValueExpression: x.ValueExpression})
		}
	}
	return cfg, errors.Join(errs...)
}

// ExampleUsername shows what a ServiceAccount token from this issuer maps to, or "" when a CEL
// expression or a non-sub claim decides the username.
func ExampleUsername(cfg authn.Config) string {
	if cfg.ClaimMappings.Username.Expression != "" || cfg.UsernameClaim != "sub" {
		return ""
	}
	return cfg.UsernamePrefix + "system:serviceaccount:<namespace>:<name>"
}
