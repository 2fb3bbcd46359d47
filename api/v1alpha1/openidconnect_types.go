package v1alpha1

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PrefixDisabled as usernamePrefix or groupsPrefix turns the prefix off.
const PrefixDisabled = "-"

// Condition types written to status.conditions.
const (
	// ConditionReady is True when the issuer is routed and has at least one key.
	ConditionReady = "Ready"
	// ConditionKeysSynced is True when the last key refresh succeeded. It turns False while the issuer
	// keeps serving on its last good keys.
	ConditionKeysSynced = "KeysSynced"
)

// Condition reasons.
const (
	ReasonActive          = "Active"
	ReasonInvalidSpec     = "InvalidSpec"
	ReasonDiscoveryFailed = "DiscoveryFailed"
	ReasonNoKeys          = "NoKeys"
	ReasonConflict        = "Conflict"
	ReasonFetchSucceeded  = "FetchSucceeded"
	ReasonFetchFailed     = "FetchFailed"
	// ReasonInsecureRedirect: discovery or the JWKS redirected to a URL that is not https.
	ReasonInsecureRedirect = "InsecureRedirect"
	ReasonStaticKeys       = "StaticKeys"
)

// OpenIDConnectSpec declares one trusted upstream issuer and how its tokens map to downstream users.
//
// +kubebuilder:validation:XValidation:rule="(has(self.audiences) && size(self.audiences) > 0) || (has(self.clientID) && size(self.clientID) > 0)",message="at least one audience is required (audiences, or the deprecated clientID)"
// +kubebuilder:validation:XValidation:rule="!has(self.clientID) || size(self.clientID) == 0 || !has(self.audiences) || self.clientID in self.audiences",message="clientID must be one of audiences when both are set"
// +kubebuilder:validation:XValidation:rule="!has(self.discoveryURL) || self.discoveryURL != self.issuerURL",message="discoveryURL must differ from issuerURL"
// +kubebuilder:validation:XValidation:rule="!has(self.jwks) || !has(self.discoveryURL)",message="jwks and discoveryURL are mutually exclusive: static keys need no discovery"
// +kubebuilder:validation:XValidation:rule="(has(self.allowDefaultAudiences) && self.allowDefaultAudiences) || ((!has(self.audiences) || !self.audiences.exists(a, a in ['https://kubernetes.default.svc', 'https://kubernetes.default.svc.cluster.local', 'kubernetes'])) && (!has(self.clientID) || !(self.clientID in ['https://kubernetes.default.svc', 'https://kubernetes.default.svc.cluster.local', 'kubernetes'])))",message="an in-cluster default audience (https://kubernetes.default.svc, https://kubernetes.default.svc.cluster.local, kubernetes) would accept every ordinary pod token of the upstream; use an audience naming this cluster, or set allowDefaultAudiences"
// +kubebuilder:validation:XValidation:rule="!has(self.claimMappings) || !has(self.claimMappings.username) || (!has(self.usernamePrefix) && (!has(self.usernameClaim) || self.usernameClaim == 'sub'))",message="claimMappings.username replaces usernameClaim and usernamePrefix: set one or the other"
// +kubebuilder:validation:XValidation:rule="!has(self.claimMappings) || !has(self.claimMappings.groups) || (!has(self.groupsClaim) && !has(self.groupsPrefix))",message="claimMappings.groups replaces groupsClaim and groupsPrefix: set one or the other"
type OpenIDConnectSpec struct {
	// IssuerURL is the issuer, exactly as it appears in the tokens' iss claim. It must be https and carry
	// no query, fragment or user info. Discovery is fetched from <issuerURL>/.well-known/openid-configuration
	// unless discoveryURL is set.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^https://[^/?#@]+(/[^?#@]*)?$')",message="issuerURL must be an https URL without query, fragment or user info"
	IssuerURL string `json:"issuerURL"`

	// DiscoveryURL, when set, is fetched instead of <issuerURL>/.well-known/openid-configuration, for
	// issuers whose discovery document is reachable at another address (for example the API server's
	// internal address). The document's issuer must still equal issuerURL.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^https://[^?#@]+$')",message="discoveryURL must be an https URL without query, fragment or user info"
	DiscoveryURL string `json:"discoveryURL,omitempty"`

	// Audiences lists the accepted audiences; a token's aud must contain at least one of them. For a
	// ServiceAccount token minted by an upstream cluster for this one, use the downstream API server's
	// address exactly as the client writes it.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=1024
	Audiences []string `json:"audiences,omitempty"`

	// AllowDefaultAudiences permits the in-cluster default audiences (https://kubernetes.default.svc,
	// https://kubernetes.default.svc.cluster.local, kubernetes). They are refused by default because every
	// ordinary pod token of the upstream carries them (legacy-style tokens are even extended to a year), so
	// trusting them turns any leaked upstream pod token into a downstream credential. Prefer an audience
	// that names this cluster.
	// +optional
	AllowDefaultAudiences bool `json:"allowDefaultAudiences,omitempty"`

	// ClientID is a deprecated single-audience alias kept for Gardener compatibility. Use audiences.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	ClientID string `json:"clientID,omitempty"`

	// CABundle is PEM that the discovery and JWKS fetches trust instead of the system roots.
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`

	// JWKS holds static keys. When set, clustertrust never fetches discovery or keys over the network.
	// +optional
	JWKS *JWKSSpec `json:"jwks,omitempty"`

	// SupportedSigningAlgs restricts the accepted JWS algorithms. Only asymmetric algorithms are allowed;
	// empty accepts every algorithm listed here, each only with a key of its own type.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=9
	// +kubebuilder:validation:items:Enum=RS256;RS384;RS512;ES256;ES384;ES512;PS256;PS384;PS512
	SupportedSigningAlgs []string `json:"supportedSigningAlgs,omitempty"`

	// UsernameClaim is the claim whose value, after usernamePrefix, is the username.
	// +optional
	// +kubebuilder:default=sub
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	UsernameClaim string `json:"usernameClaim,omitempty"`

	// UsernamePrefix is prepended to the username. Empty means "<metadata.name>:"; "-" disables the prefix.
	// It must not start with "system:", so an upstream can never mint a downstream system identity.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('system:')",message="usernamePrefix must not start with system:"
	UsernamePrefix string `json:"usernamePrefix,omitempty"`

	// GroupsClaim is the claim holding the user's groups (a string or a list of strings).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	GroupsClaim string `json:"groupsClaim,omitempty"`

	// GroupsPrefix is prepended to every group. Empty means "<metadata.name>:"; "-" disables the prefix.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('system:')",message="groupsPrefix must not start with system:"
	GroupsPrefix string `json:"groupsPrefix,omitempty"`

	// ServiceAccountGroups adds <groupsPrefix>system:serviceaccounts and
	// <groupsPrefix>system:serviceaccounts:<namespace> to tokens that carry the Kubernetes
	// ServiceAccount claims. Defaults to true.
	// +optional
	// +kubebuilder:default=true
	ServiceAccountGroups *bool `json:"serviceAccountGroups,omitempty"`

	// RequiredClaims maps a claim to the exact string value it must have.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	RequiredClaims map[string]string `json:"requiredClaims,omitempty"`

	// ExtraClaims are copied into the user's extra under authentication.clustertrust.io/claims/<claim>.
	// A claim missing from a token is skipped, not fatal.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9_.-]+$`
	ExtraClaims []string `json:"extraClaims,omitempty"`

	// MaxTokenExpirationSeconds, when set, refuses tokens whose lifetime (exp minus nbf, or iat when nbf
	// is absent) is longer.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxTokenExpirationSeconds *int64 `json:"maxTokenExpirationSeconds,omitempty"`

	// ClaimValidationRules are checked on every token, as in Kubernetes' AuthenticationConfiguration.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	ClaimValidationRules []ClaimValidationRule `json:"claimValidationRules,omitempty"`

	// ClaimMappings are CEL mappings, as in Kubernetes' AuthenticationConfiguration. A CEL username or
	// groups expression replaces usernameClaim/usernamePrefix or groupsClaim/groupsPrefix.
	// +optional
	ClaimMappings *ClaimMappings `json:"claimMappings,omitempty"`

	// UserValidationRules are CEL rules over the mapped user, as in Kubernetes' AuthenticationConfiguration.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	UserValidationRules []UserValidationRule `json:"userValidationRules,omitempty"`
}

// JWKSSpec holds a static JSON Web Key Set.
type JWKSSpec struct {
	// Keys is the JWKS JSON document ({"keys":[...]}) of public keys.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=65536
	Keys []byte `json:"keys"`
}

// ClaimValidationRule is either a required claim value or a CEL expression.
//
// +kubebuilder:validation:XValidation:rule="has(self.claim) != has(self.expression)",message="exactly one of claim or expression must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.requiredValue) || has(self.claim)",message="requiredValue goes with claim"
// +kubebuilder:validation:XValidation:rule="!has(self.message) || has(self.expression)",message="message goes with expression"
type ClaimValidationRule struct {
	// Claim is the claim that must equal requiredValue.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Claim string `json:"claim,omitempty"`
	// RequiredValue is the exact string value claim must have.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	RequiredValue string `json:"requiredValue,omitempty"`
	// Expression is a CEL expression over claims that must evaluate to true.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Expression string `json:"expression,omitempty"`
	// Message is reported when expression evaluates to false.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// ClaimMappings are CEL expressions over claims.
type ClaimMappings struct {
	// Username is a CEL expression producing the username (no prefix is added).
	// +optional
	Username *CELExpression `json:"username,omitempty"`
	// Groups is a CEL expression producing a string or a list of strings (no prefix is added).
	// +optional
	Groups *CELExpression `json:"groups,omitempty"`
	// UID is a CEL expression producing the uid.
	// +optional
	UID *CELExpression `json:"uid,omitempty"`
	// Extra maps extra keys to CEL expressions.
	// +optional
	// +listType=map
	// +listMapKey=key
	// +kubebuilder:validation:MaxItems=32
	Extra []ExtraMapping `json:"extra,omitempty"`
}

// CELExpression is one CEL expression.
type CELExpression struct {
	// Expression is the CEL expression; claims are available as `claims`.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Expression string `json:"expression"`
}

// ExtraMapping maps one extra key to a CEL expression.
type ExtraMapping struct {
	// Key is a domain-prefixed, lowercase path such as example.com/team.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Key string `json:"key"`
	// ValueExpression produces a string or a list of strings.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	ValueExpression string `json:"valueExpression"`
}

// UserValidationRule is a CEL expression over the mapped user that must be true.
type UserValidationRule struct {
	// Expression is the CEL expression; the user is available as `user`.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Expression string `json:"expression"`
	// Message is reported when the expression evaluates to false.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// OpenIDConnectStatus is what clustertrust observed of the issuer.
type OpenIDConnectStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions are Ready and KeysSynced.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// JWKSURI is where the keys were fetched from (empty with static keys).
	// +optional
	JWKSURI string `json:"jwksURI,omitempty"`
	// Keys lists the keys currently used to verify tokens.
	// +optional
	// +listType=atomic
	Keys []KeyStatus `json:"keys,omitempty"`
	// KeyCount is len(keys), for the printer column.
	// +optional
	KeyCount int32 `json:"keyCount,omitempty"`
	// LastKeysRefreshTime is when the keys were last fetched successfully.
	// +optional
	LastKeysRefreshTime *metav1.Time `json:"lastKeysRefreshTime,omitempty"`
	// UsernamePrefix is the effective username prefix after defaulting.
	// +optional
	UsernamePrefix string `json:"usernamePrefix,omitempty"`
	// ExampleUsername shows what a ServiceAccount token from this issuer maps to.
	// +optional
	ExampleUsername string `json:"exampleUsername,omitempty"`
}

// KeyStatus describes one verification key.
type KeyStatus struct {
	// KID is the key id.
	// +optional
	KID string `json:"kid,omitempty"`
	// Alg is the key's algorithm, when the JWKS names one.
	// +optional
	Alg string `json:"alg,omitempty"`
}

// OpenIDConnect declares a trusted upstream token issuer.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=oidc,categories=clustertrust
// +kubebuilder:printcolumn:name="Issuer",type=string,JSONPath=`.spec.issuerURL`
// +kubebuilder:printcolumn:name="Audiences",type=string,JSONPath=`.spec.audiences`
// +kubebuilder:printcolumn:name="Prefix",type=string,JSONPath=`.status.usernamePrefix`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Keys",type=integer,JSONPath=`.status.keyCount`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name != 'system' || (has(self.spec.usernamePrefix) && has(self.spec.groupsPrefix))",message="an object named system needs explicit usernamePrefix and groupsPrefix: the default would be system:"
type OpenIDConnect struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec OpenIDConnectSpec `json:"spec"`
	// +optional
	Status OpenIDConnectStatus `json:"status,omitempty"`
}

// OpenIDConnectList is a list of OpenIDConnect.
//
// +kubebuilder:object:root=true
type OpenIDConnectList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OpenIDConnect `json:"items"`
}

// DefaultAudiences are the audiences every in-cluster ServiceAccount token of a Kubernetes cluster
// carries by default; see AllowDefaultAudiences.
var DefaultAudiences = []string{"https://kubernetes.default.svc", "https://kubernetes.default.svc.cluster.local", "kubernetes"}

// EffectiveAudiences returns audiences, with the deprecated clientID merged in.
func (s *OpenIDConnectSpec) EffectiveAudiences() []string {
	out := append([]string(nil), s.Audiences...)
	if s.ClientID != "" && !slices.Contains(out, s.ClientID) {
		out = append(out, s.ClientID)
	}
	return out
}

// EffectivePrefix resolves a usernamePrefix or groupsPrefix value: empty defaults to "<name>:",
// PrefixDisabled yields "".
func EffectivePrefix(value, name string) string {
	switch value {
	case "":
		return name + ":"
	case PrefixDisabled:
		return ""
	default:
		return value
	}
}
