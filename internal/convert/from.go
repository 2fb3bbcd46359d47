package convert

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/apis/apiserver/validation"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
)

// Options tune FromAuthenticationConfiguration.
type Options struct {
	// NamePrefix is prepended to every object name derived from an issuer, so that converted objects
	// stand apart from others (see ObjectNames).
	NamePrefix string
}

// FromAuthenticationConfiguration converts the jwt authenticators of an AuthenticationConfiguration
// (apiserver.config.k8s.io v1, v1beta1 or v1alpha1, YAML or JSON) into OpenIDConnect objects, one per
// authenticator and in the same order, named after their issuers (see ObjectNames).
//
// The file must be one kube-apiserver accepts: it is decoded as kube-apiserver decodes it (strictly:
// an unknown or repeated field is an error) and validated with kube-apiserver's own validation, CEL
// compilation included. The objects are not yet checked against the OpenIDConnect CRD; a caller
// admits them as any other object (the file source and `webhook convert` do).
func FromAuthenticationConfiguration(data []byte) ([]v1alpha1.OpenIDConnect, []Note, error) {
	return Options{}.FromAuthenticationConfiguration(data)
}

// FromAuthenticationConfiguration is the package's FromAuthenticationConfiguration with o's options.
func (o Options) FromAuthenticationConfiguration(data []byte) ([]v1alpha1.OpenIDConnect, []Note, error) {
	cfg, err := decode(data)
	if err != nil {
		return nil, nil, err
	}
	if errs := validation.ValidateAuthenticationConfiguration(compiler(), cfg, nil); len(errs) > 0 {
		return nil, nil, fmt.Errorf("kube-apiserver would refuse this %s: %w", Kind, errs.ToAggregate())
	}
	names, err := o.ObjectNames(cfg.JWT)
	if err != nil {
		return nil, nil, err
	}
	var notes []Note
	if cfg.Anonymous != nil {
		notes = append(notes, Note{Index: -1, Field: "anonymous", Message: "has no counterpart: clustertrust authenticates bearer tokens only, " +
			"so requests without one stay kube-apiserver's to allow or refuse; it is skipped"})
	}
	if len(cfg.JWT) == 0 {
		notes = append(notes, Note{Index: -1, Field: "jwt", Message: "is empty: there is no JWT authenticator, so no OpenIDConnect object is made"})
	}
	objs := make([]v1alpha1.OpenIDConnect, 0, len(cfg.JWT))
	for i, j := range cfg.JWT {
		obj, objNotes, err := fromJWT(i, j, names[i])
		if err != nil {
			return nil, nil, err
		}
		objs = append(objs, obj)
		notes = append(notes, objNotes...)
	}
	if len(objs) > 0 {
		notes = append(notes, Note{Index: -1, Message: "clustertrust departs from kube-apiserver where no field says so: it refuses a " +
			"username in system: and a blank one, drops groups in system:, and adds the authentication.clustertrust.io/* extras " +
			"(for a ServiceAccount token also a uid when the mapping gives none); serviceAccountGroups is written as false, " +
			"since kube-apiserver adds no ServiceAccount groups to a JWT user"})
	}
	return objs, notes, nil
}

// decode reads one AuthenticationConfiguration document as kube-apiserver does
// (loadAuthenticationConfigFromData) and converts it to the internal version.
func decode(data []byte) (*apiserver.AuthenticationConfiguration, error) {
	docs := 0
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("could not read the %s: %w", Kind, err)
		}
		if !blank(doc) {
			docs++
		}
	}
	switch {
	case docs == 0:
		return nil, fmt.Errorf("the %s is empty", Kind)
	case docs > 1:
		// kube-apiserver would read the first document and ignore the rest without a word.
		return nil, fmt.Errorf("the %s file holds %d YAML documents; kube-apiserver reads one", Kind, docs)
	}
	obj, gvk, err := codecs.UniversalDecoder().Decode(data, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("could not decode the %s: %w", Kind, err)
	}
	cfg, ok := obj.(*apiserver.AuthenticationConfiguration)
	if !ok {
		return nil, fmt.Errorf("the document is a %s, want an %s", gvk.Kind, Kind)
	}
	return cfg, nil
}

// blank tells whether a YAML document holds nothing but comments, separators and space.
func blank(doc []byte) bool {
	for line := range bytes.Lines(doc) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && !bytes.Equal(line, []byte("---")) {
			return false
		}
	}
	return true
}

// fromJWT converts the authenticator at index i into the object called name.
func fromJWT(i int, j apiserver.JWTAuthenticator, name string) (v1alpha1.OpenIDConnect, []Note, error) {
	var notes []Note
	note := func(field, format string, args ...any) {
		notes = append(notes, Note{Index: i, Issuer: j.Issuer.URL, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	fail := func(field, format string, args ...any) error {
		return fmt.Errorf("jwt[%d] (%s): %s %s", i, j.Issuer.URL, field, fmt.Sprintf(format, args...))
	}
	serviceAccountGroups := false
	spec := v1alpha1.OpenIDConnectSpec{
		IssuerURL:    j.Issuer.URL,
		DiscoveryURL: j.Issuer.DiscoveryURL,
		Audiences:    slices.Clone(j.Issuer.Audiences),
		// kube-apiserver adds no ServiceAccount groups to a JWT user (see the configuration-wide note).
		ServiceAccountGroups: &serviceAccountGroups,
		ClaimValidationRules: claimValidationRulesFrom(j.ClaimValidationRules),
		UserValidationRules:  userValidationRulesFrom(j.UserValidationRules),
	}
	if ca := j.Issuer.CertificateAuthority; ca != "" {
		spec.CABundle = []byte(ca)
	}
	// issuer.audienceMatchPolicy needs no counterpart: MatchAny is its only value, and it is what an
	// OpenIDConnect always does with several audiences (a token's aud must contain one of them).
	for _, a := range spec.Audiences {
		if isDefaultAudience(a) {
			spec.AllowDefaultAudiences = true
			note("issuer.audiences", "holds the in-cluster default audience %q, which clustertrust refuses unless allowDefaultAudiences "+
				"is true: it is set, to accept what kube-apiserver accepts, but every ordinary pod token of the issuer carries that "+
				"audience; prefer one that names this cluster", a)
			break
		}
	}
	if e := j.Issuer.EgressSelectorType; e != "" {
		note("issuer.egressSelectorType", "has no counterpart: clustertrust is not kube-apiserver and has no egress selector; "+
			"it fetches discovery and keys over its own network, so the issuer must be reachable from where clustertrust runs "+
			"(%q is skipped)", e)
	}

	m := &v1alpha1.ClaimMappings{}
	if u := j.ClaimMappings.Username; u.Expression != "" {
		m.Username = &v1alpha1.CELExpression{Expression: u.Expression}
	} else {
		prefix, err := prefixFrom(u.Prefix)
		if err != nil {
			return v1alpha1.OpenIDConnect{}, nil, fail("claimMappings.username.prefix", "%v", err)
		}
		spec.UsernameClaim, spec.UsernamePrefix = u.Claim, prefix
	}
	switch g := j.ClaimMappings.Groups; {
	case g.Expression != "":
		m.Groups = &v1alpha1.CELExpression{Expression: g.Expression}
	case g.Claim != "":
		prefix, err := prefixFrom(g.Prefix)
		if err != nil {
			return v1alpha1.OpenIDConnect{}, nil, fail("claimMappings.groups.prefix", "%v", err)
		}
		spec.GroupsClaim, spec.GroupsPrefix = g.Claim, prefix
	}
	switch uid := j.ClaimMappings.UID; {
	case uid.Expression != "":
		m.UID = &v1alpha1.CELExpression{Expression: uid.Expression}
	case uid.Claim != "":
		expr := UIDClaimExpression(uid.Claim)
		m.UID = &v1alpha1.CELExpression{Expression: expr}
		note("claimMappings.uid.claim", "has no counterpart as a claim: it is written as claimMappings.uid.expression %s, "+
			"which maps the same tokens to the same uid (a missing claim or one not a string refuses the token, null is an empty "+
			"uid) and converts back to the claim", expr)
	}
	for _, x := range j.ClaimMappings.Extra {
		m.Extra = append(m.Extra, v1alpha1.ExtraMapping{Key: x.Key, ValueExpression: x.ValueExpression})
	}
	if m.Username != nil || m.Groups != nil || m.UID != nil || len(m.Extra) > 0 {
		spec.ClaimMappings = m
	}
	obj := v1alpha1.OpenIDConnect{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "OpenIDConnect"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       spec,
	}
	return obj, notes, nil
}

// prefixFrom translates an authenticator's username or groups prefix, which kube-apiserver requires
// with a claim (an empty one turning prefixing off), into an OpenIDConnect's, where empty means
// "<metadata.name>:" and "-" turns prefixing off.
func prefixFrom(prefix *string) (string, error) {
	switch {
	case prefix == nil: // validation refuses a claim without a prefix; kube-apiserver then adds none
		return v1alpha1.PrefixDisabled, nil
	case *prefix == "":
		return v1alpha1.PrefixDisabled, nil
	case *prefix == v1alpha1.PrefixDisabled:
		return "", fmt.Errorf("%q cannot be converted: an OpenIDConnect reads %q as no prefix at all", *prefix, *prefix)
	default:
		return *prefix, nil
	}
}

func claimValidationRulesFrom(rules []apiserver.ClaimValidationRule) []v1alpha1.ClaimValidationRule {
	var out []v1alpha1.ClaimValidationRule
	for _, r := range rules {
		out = append(out, v1alpha1.ClaimValidationRule{Claim: r.Claim, RequiredValue: r.RequiredValue, Expression: r.Expression, Message: r.Message})
	}
	return out
}

func userValidationRulesFrom(rules []apiserver.UserValidationRule) []v1alpha1.UserValidationRule {
	var out []v1alpha1.UserValidationRule
	for _, r := range rules {
		out = append(out, v1alpha1.UserValidationRule{Expression: r.Expression, Message: r.Message})
	}
	return out
}

func isDefaultAudience(a string) bool { return slices.Contains(v1alpha1.DefaultAudiences, a) }
