package federation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/registry"
)

// The ways a downstream can get an upstream's keys, from the one needing least to the one needing most
// upkeep.
const (
	ModeIssuer       = "issuer"       // clustertrust fetches discovery and keys from the issuer URL
	ModeDiscoveryURL = "discoveryURL" // ... from the upstream API server, which is reachable when the issuer URL is not
	ModeStatic       = "static"       // the keys are copied into the object; nothing is fetched
)

// TrustOptions say what `webhook trust` should declare.
type TrustOptions struct {
	// Name of the OpenIDConnect object; also the default username and groups prefix ("<name>:").
	Name string
	// Audience is what the upstream's tokens for the downstream carry: the downstream API server's
	// address as clients write it.
	Audience string
	// Prefix overrides the username and groups prefix.
	Prefix string
	// Static copies the keys instead of letting clustertrust fetch them.
	Static bool
	// SyncIdentity, "namespace/name" of an upstream ServiceAccount, adds RBAC that lets that identity
	// (as mapped by this object) get and patch this object only: what `webhook sync-keys` needs.
	SyncIdentity string
	// Roots are the roots a "public" certificate chains to; nil means the system roots.
	Roots *x509.CertPool
}

// Plan is what `webhook trust` found and would apply.
type Plan struct {
	Object *v1alpha1.OpenIDConnect
	// RBAC, with TrustOptions.SyncIdentity: a ClusterRole and its binding, and a ValidatingAdmissionPolicy
	// and its binding that confine that identity's patches to spec.jwks.
	RBAC    []client.Object
	Mode    string
	Reasons []string
}

// PlanTrust reads the upstream and decides how the downstream should trust it. The reachability probes
// run from where this runs; they stand for clustertrust's view only when both share a network view.
func PlanTrust(ctx context.Context, up *Upstream, o TrustOptions) (*Plan, error) {
	if err := validateName(o.Name); err != nil {
		return nil, err
	}
	if o.Audience == "" {
		return nil, errors.New("an audience is required: the downstream API server's address as the upstream's clients write it")
	}
	_, doc, err := up.Discovery(ctx)
	if err != nil {
		return nil, err
	}
	jwks, err := up.JWKS(ctx)
	if err != nil {
		return nil, err
	}
	obj := &v1alpha1.OpenIDConnect{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "OpenIDConnect"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name},
		Spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: doc.Issuer, Audiences: []string{o.Audience}},
	}
	if o.Prefix != "" {
		obj.Spec.UsernamePrefix, obj.Spec.GroupsPrefix = o.Prefix, o.Prefix
	}
	p := &Plan{Object: obj}

	static := func(reason string) {
		p.Mode = ModeStatic
		obj.Spec.JWKS = &v1alpha1.JWKSSpec{Keys: compactJSON(jwks)}
		p.Reasons = append(p.Reasons, reason,
			"clustertrust never contacts the issuer; when the upstream rotates its signing key, run `webhook sync-keys` upstream (or this command again) or its new tokens are refused")
	}
	switch {
	case o.Static:
		static("--static: the upstream's current keys are copied into spec.jwks")
	default:
		ok, why := p.tryFetchable(ctx, doc.Issuer+DiscoveryPath, doc.Issuer, nil, o.Roots)
		if ok {
			p.Mode = ModeIssuer
			p.Reasons = append(p.Reasons, "the issuer "+doc.Issuer+" serves its discovery document and keys without credentials, with a certificate from a public CA")
			break
		}
		p.Reasons = append(p.Reasons, "the issuer is not readable without credentials and a public CA: "+why)
		if len(up.APICAPEM) > 0 {
			if ok, why = p.tryFetchable(ctx, doc.Issuer+DiscoveryPath, doc.Issuer, up.APICAPEM, nil); ok {
				p.Mode = ModeIssuer
				obj.Spec.CABundle = up.APICAPEM
				p.Reasons = append(p.Reasons, "it is readable with the CA of the upstream kubeconfig, which is set as caBundle")
				break
			}
			p.Reasons = append(p.Reasons, "nor with the upstream kubeconfig's CA: "+why)
		}
		if up.APIHost != "" && up.APIHost != doc.Issuer {
			discoveryURL := up.APIHost + DiscoveryPath
			ca := up.APICAPEM // nil when the kubeconfig trusts the system roots
			if ok, why = p.tryFetchable(ctx, discoveryURL, doc.Issuer, ca, o.Roots); ok {
				p.Mode = ModeDiscoveryURL
				obj.Spec.DiscoveryURL = discoveryURL
				obj.Spec.CABundle = ca
				p.Reasons = append(p.Reasons, "the upstream API server "+up.APIHost+" serves the issuer's discovery document and keys without credentials, so discoveryURL points there")
			}
			if p.Mode == ModeDiscoveryURL {
				break
			}
			p.Reasons = append(p.Reasons, "nor does the upstream API server: "+why)
		}
		static("so the upstream's current keys, read with the kubeconfig's credentials, are copied into spec.jwks")
	}
	if _, err := registry.ToConfig(obj); err != nil {
		return nil, fmt.Errorf("the object for this upstream would be invalid: %w", err)
	}
	if o.SyncIdentity != "" {
		rbac, err := syncRBAC(obj, o.SyncIdentity)
		if err != nil {
			return nil, err
		}
		p.RBAC = rbac
	}
	return p, nil
}

// tryFetchable reports whether discoveryURL serves, anonymously, a discovery document for issuer whose
// jwks_uri serves a usable key set.
func (p *Plan) tryFetchable(ctx context.Context, discoveryURL, issuer string, ca []byte, roots *x509.CertPool) (bool, string) {
	body, err := fetch(ctx, discoveryURL, ca, roots)
	if err != nil {
		return false, err.Error()
	}
	_, doc, err := decodeDocument(body)
	if err != nil {
		return false, err.Error()
	}
	if doc.Issuer != issuer {
		return false, fmt.Sprintf("%s names issuer %q, not %q", discoveryURL, doc.Issuer, issuer)
	}
	if _, err := fetch(ctx, doc.JWKSURI, ca, roots); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// syncRBAC lets the upstream ServiceAccount namespace/name, as obj maps it, get and patch obj only.
func syncRBAC(obj *v1alpha1.OpenIDConnect, identity string) ([]client.Object, error) {
	ns, sa, ok := strings.Cut(identity, "/")
	if !ok || ns == "" || sa == "" || strings.Contains(sa, "/") {
		return nil, fmt.Errorf("--sync-keys-identity %q is not namespace/name", identity)
	}
	cfg, err := registry.ToConfig(obj)
	if err != nil {
		return nil, err
	}
	name := "clustertrust-sync-keys-" + obj.Name
	role := &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"openidconnects"},
			ResourceNames: []string{obj.Name}, Verbs: []string{"get", "patch"},
		}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{
			APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind,
			Name: cfg.UsernamePrefix + "system:serviceaccount:" + ns + ":" + sa,
		}},
	}
	policy, policyBinding := jwksOnlyPolicy(name, binding.Subjects[0].Name, obj.Name)
	return []client.Object{role, binding, policy, policyBinding}, nil
}

// jwksOnlyPolicy refuses any change by username to the object called objName except to spec.jwks: RBAC
// can limit the identity to one object, not to one field, and a patch of, say, usernamePrefix would let
// the upstream mint identities it was never meant to have. Every other spec field, present now or added
// to the API later, must stay as it was.
func jwksOnlyPolicy(name, username, objName string) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	var same []string
	t := reflect.TypeFor[v1alpha1.OpenIDConnectSpec]()
	for i := range t.NumField() {
		field, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if field == "" || field == "-" || field == "jwks" {
			continue
		}
		same = append(same, fmt.Sprintf("(has(object.spec.%[1]s) == has(oldObject.spec.%[1]s) && (!has(object.spec.%[1]s) || object.spec.%[1]s == oldObject.spec.%[1]s))", field))
	}
	fail := admissionregistrationv1.Fail
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				ResourceNames: []string{objName},
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule: admissionregistrationv1.Rule{
						APIGroups: []string{v1alpha1.GroupVersion.Group}, APIVersions: []string{"*"}, Resources: []string{"openidconnects"},
					},
				},
			}}},
			MatchConditions: []admissionregistrationv1.MatchCondition{{
				Name: "sync-keys-identity", Expression: "request.userInfo.username == " + strconv.Quote(username),
			}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: strings.Join(same, " && "),
				Message:    "sync-keys may change only spec.jwks of this object",
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	return policy, binding
}

// Render writes the plan as YAML documents, led by comments that say which mode was chosen and why.
func (p *Plan) Render() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# clustertrust trust: mode %s\n", p.Mode)
	for _, r := range p.Reasons {
		fmt.Fprintf(&b, "# - %s\n", r)
	}
	docs := append([]client.Object{p.Object}, p.RBAC...)
	for i, d := range docs {
		if i > 0 {
			b.WriteString("---\n")
		}
		out, err := cleanYAML(d)
		if err != nil {
			return nil, err
		}
		b.Write(out)
	}
	return b.Bytes(), nil
}

// cleanYAML renders an object without the empty status and creationTimestamp a client would send.
func cleanYAML(obj any) ([]byte, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	if meta, ok := m["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
	}
	return yaml.Marshal(m)
}

func compactJSON(b []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return b
	}
	return out.Bytes()
}

func validateName(name string) error {
	if name == "" {
		return errors.New("a name for the OpenIDConnect object is required (--name)")
	}
	if len(name) > 63 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" || strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") {
		return fmt.Errorf("--name %q is not a DNS label (lower-case letters, digits and '-', at most 63)", name)
	}
	return nil
}
