package convert

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apiserver/pkg/apis/apiserver"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/apiserver/pkg/apis/apiserver/validation"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
)

// ToAuthenticationConfiguration converts objects into an apiserver.config.k8s.io/v1
// AuthenticationConfiguration (YAML), one jwt authenticator per object and in the same order.
//
// The objects are expected to have passed the OpenIDConnect CRD (the API server or the file source
// admitted them); the result is validated with kube-apiserver's own validation, so it is a file
// kube-apiserver accepts, or an error says why not (two objects sharing an issuer, for one: an
// AuthenticationConfiguration allows one authenticator per issuer).
func ToAuthenticationConfiguration(objs []v1alpha1.OpenIDConnect) ([]byte, []Note, error) {
	cfg := &apiserver.AuthenticationConfiguration{JWT: make([]apiserver.JWTAuthenticator, 0, len(objs))}
	var notes []Note
	issuers, discoveryURLs := map[string]string{}, map[string]string{}
	for i := range objs {
		obj := &objs[i]
		if other, ok := issuers[obj.Spec.IssuerURL]; ok {
			return nil, nil, fmt.Errorf("OpenIDConnect %q and %q share the issuer %s: an %s allows one jwt authenticator per issuer", other, obj.Name, obj.Spec.IssuerURL, Kind)
		}
		issuers[obj.Spec.IssuerURL] = obj.Name
		if d := obj.Spec.DiscoveryURL; d != "" {
			if other, ok := discoveryURLs[d]; ok {
				return nil, nil, fmt.Errorf("OpenIDConnect %q and %q share the discoveryURL %s: an %s allows one jwt authenticator per discoveryURL", other, obj.Name, d, Kind)
			}
			discoveryURLs[d] = obj.Name
		}
		j, objNotes := toJWT(i, obj)
		if _, errs := validation.CompileAndValidateJWTAuthenticator(compiler(), j, nil); len(errs) > 0 {
			return nil, nil, fmt.Errorf("OpenIDConnect %q: kube-apiserver would refuse its jwt authenticator: %w", obj.Name, errs.ToAggregate())
		}
		cfg.JWT = append(cfg.JWT, j)
		notes = append(notes, objNotes...)
	}
	// The whole file once more, for what no single authenticator shows.
	if errs := validation.ValidateAuthenticationConfiguration(compiler(), cfg, nil); len(errs) > 0 {
		return nil, nil, fmt.Errorf("kube-apiserver would refuse the %s: %w", Kind, errs.ToAggregate())
	}
	names, err := Options{}.ObjectNames(cfg.JWT)
	if err != nil {
		return nil, nil, err
	}
	for i := range objs {
		if names[i] != objs[i].Name {
			notes = append(notes, Note{Index: i, Issuer: objs[i].Spec.IssuerURL, Object: objs[i].Name, Field: "metadata.name",
				Message: fmt.Sprintf("has no counterpart: a jwt authenticator has no name; converted back, the object is called %q", names[i])})
		}
	}
	if len(objs) > 0 {
		notes = append(notes, Note{Index: -1, Message: "kube-apiserver has none of clustertrust's guards that no field states: it accepts a " +
			"username and groups in system: (a userValidationRules expression such as !user.username.startsWith('system:') refuses " +
			"the first) and a blank username from a claim, and adds no authentication.clustertrust.io/* extras"})
	}
	data, err := encode(cfg)
	if err != nil {
		return nil, nil, err
	}
	return data, notes, nil
}

// toJWT converts the object at index i.
func toJWT(i int, obj *v1alpha1.OpenIDConnect) (apiserver.JWTAuthenticator, []Note) {
	s := &obj.Spec
	var notes []Note
	note := func(field, format string, args ...any) {
		notes = append(notes, Note{Index: i, Issuer: s.IssuerURL, Object: obj.Name, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	j := apiserver.JWTAuthenticator{
		Issuer: apiserver.Issuer{
			URL:                  s.IssuerURL,
			DiscoveryURL:         s.DiscoveryURL,
			CertificateAuthority: string(s.CABundle),
			Audiences:            s.EffectiveAudiences(),
		},
	}
	if len(j.Issuer.Audiences) > 1 {
		// kube-apiserver requires the policy with several audiences; MatchAny is what an OpenIDConnect does.
		j.Issuer.AudienceMatchPolicy = apiserver.AudienceMatchPolicyMatchAny
	}
	if s.ClientID != "" {
		note("spec.clientID", "has no counterpart: it is a deprecated alias of one audience, and issuer.audiences holds %q", s.ClientID)
	}
	if s.AllowDefaultAudiences && !slices.ContainsFunc(j.Issuer.Audiences, isDefaultAudience) {
		// With a default audience listed, kube-apiserver accepts it as the object does, and converting
		// back sets allowDefaultAudiences again: only an opt-in that nothing uses is lost.
		note("spec.allowDefaultAudiences", "has no counterpart, and no effect here: none of the audiences is an in-cluster default")
	}
	if s.JWKS != nil {
		note("spec.jwks", "has no counterpart: kube-apiserver gets keys only through discovery, from issuer.url (or issuer.discoveryURL); "+
			"the static keys are dropped, so the issuer must serve them")
	}
	if len(s.SupportedSigningAlgs) > 0 {
		note("spec.supportedSigningAlgs", "has no counterpart: kube-apiserver accepts RS256/384/512, ES256/384/512 and PS256/384/512 for "+
			"a jwt authenticator; the restriction to %s is dropped", strings.Join(s.SupportedSigningAlgs, ", "))
	}

	for _, r := range s.ClaimValidationRules {
		j.ClaimValidationRules = append(j.ClaimValidationRules, apiserver.ClaimValidationRule{Claim: r.Claim, RequiredValue: r.RequiredValue, Expression: r.Expression, Message: r.Message})
	}
	if len(s.RequiredClaims) > 0 {
		// In the order clustertrust hands them to the apiserver's authenticator: after the rules, by claim.
		for _, claim := range slices.Sorted(maps.Keys(s.RequiredClaims)) {
			j.ClaimValidationRules = append(j.ClaimValidationRules, apiserver.ClaimValidationRule{Claim: claim, RequiredValue: s.RequiredClaims[claim]})
		}
		note("spec.requiredClaims", "has no counterpart of its own: it is written as claimValidationRules with claim and requiredValue, the same check")
	}

	m := s.ClaimMappings
	if m == nil {
		m = &v1alpha1.ClaimMappings{}
	}
	if m.Username != nil {
		j.ClaimMappings.Username.Expression = m.Username.Expression
	} else {
		claim := s.UsernameClaim
		if claim == "" {
			claim = "sub" // the CRD's default
		}
		prefix := v1alpha1.EffectivePrefix(s.UsernamePrefix, obj.Name)
		j.ClaimMappings.Username = apiserver.PrefixedClaimOrExpression{Claim: claim, Prefix: &prefix}
		if s.UsernamePrefix == "" {
			note("spec.usernamePrefix", "is empty, which means the object's name: it is written out as the prefix %q", prefix)
		}
	}
	groupsPrefix := v1alpha1.EffectivePrefix(s.GroupsPrefix, obj.Name)
	switch {
	case m.Groups != nil:
		j.ClaimMappings.Groups.Expression = m.Groups.Expression
	case s.GroupsClaim != "":
		j.ClaimMappings.Groups = apiserver.PrefixedClaimOrExpression{Claim: s.GroupsClaim, Prefix: &groupsPrefix}
		if s.GroupsPrefix == "" {
			note("spec.groupsPrefix", "is empty, which means the object's name: it is written out as the prefix %q", groupsPrefix)
		}
	case s.GroupsPrefix != "":
		note("spec.groupsPrefix", "has no counterpart without groupsClaim: it prefixes only the ServiceAccount groups")
	}
	if s.ServiceAccountGroups == nil || *s.ServiceAccountGroups {
		if m.Groups != nil {
			note("spec.serviceAccountGroups", "has no counterpart, and no effect here either: a groups expression replaces them")
		} else {
			note("spec.serviceAccountGroups", "has no counterpart: kube-apiserver adds no groups of its own, so ServiceAccount tokens of "+
				"this issuer lose %[1]ssystem:serviceaccounts and %[1]ssystem:serviceaccounts:<namespace>", groupsPrefix)
		}
	}
	if m.UID != nil {
		if claim, ok := uidClaimFromExpression(m.UID.Expression); ok {
			j.ClaimMappings.UID.Claim = claim // what FromAuthenticationConfiguration wrote for a uid claim
		} else {
			j.ClaimMappings.UID.Expression = m.UID.Expression
		}
	}
	for _, x := range m.Extra {
		j.ClaimMappings.Extra = append(j.ClaimMappings.Extra, apiserver.ExtraMapping{Key: x.Key, ValueExpression: x.ValueExpression})
	}
	if len(s.ExtraClaims) > 0 {
		note("spec.extraClaims", "has no counterpart: kube-apiserver fills extra only through claimMappings.extra expressions, so %s "+
			"are no longer copied under %sclaims/", strings.Join(s.ExtraClaims, ", "), "authentication.clustertrust.io/")
	}
	if s.MaxTokenExpirationSeconds != nil {
		note("spec.maxTokenExpirationSeconds", "has no counterpart: kube-apiserver checks exp but bounds no token lifetime, so tokens "+
			"living longer than %ds are accepted", *s.MaxTokenExpirationSeconds)
	}
	for _, r := range s.UserValidationRules {
		j.UserValidationRules = append(j.UserValidationRules, apiserver.UserValidationRule{Expression: r.Expression, Message: r.Message})
	}
	return j, notes
}

// encode writes cfg as apiserver.config.k8s.io/v1 YAML.
func encode(cfg *apiserver.AuthenticationConfiguration) ([]byte, error) {
	var out apiserverv1.AuthenticationConfiguration
	if err := scheme.Convert(cfg, &out, nil); err != nil {
		return nil, fmt.Errorf("could not convert to %s: %w", apiserverv1.SchemeGroupVersion, err)
	}
	for i := range out.JWT {
		if d := out.JWT[i].Issuer.DiscoveryURL; d != nil && *d == "" {
			out.JWT[i].Issuer.DiscoveryURL = nil // the conversion from the internal type gives "" for unset
		}
	}
	return marshalYAML(struct {
		APIVersion string                         `json:"apiVersion"`
		Kind       string                         `json:"kind"`
		JWT        []apiserverv1.JWTAuthenticator `json:"jwt"`
	}{apiserverv1.SchemeGroupVersion.String(), Kind, out.JWT})
}
