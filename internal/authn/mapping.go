package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// Keys of the user's extra that clustertrust sets.
const (
	ExtraPrefix                = "authentication.clustertrust.io/"
	ExtraAuthenticatorName     = ExtraPrefix + "authenticator-name"
	ExtraAuthenticatorUID      = ExtraPrefix + "authenticator-uid"
	ExtraServiceAccountNS      = ExtraPrefix + "serviceaccount-namespace"
	ExtraServiceAccountName    = ExtraPrefix + "serviceaccount-name"
	ExtraServiceAccountUID     = ExtraPrefix + "serviceaccount-uid"
	ExtraPodName               = ExtraPrefix + "pod-name"
	ExtraPodUID                = ExtraPrefix + "pod-uid"
	ExtraNodeName              = ExtraPrefix + "node-name"
	ExtraClaimPrefix           = ExtraPrefix + "claims/"
	systemPrefix               = "system:"
	serviceAccountGroup        = "system:serviceaccounts"
	serviceAccountNSGroupStart = "system:serviceaccounts:"
)

// ErrSystemUsername is returned when a token would map to a reserved system: username.
var ErrSystemUsername = errors.New("token maps to a reserved system: username")

// ErrEmptyUsername is returned when the username claim is empty, null or blank: every such token would
// share one identity, "" or the bare prefix. Kubernetes refuses an empty username from its CEL
// mappings; clustertrust refuses a blank one from every mapping. (A CEL username expression that adds
// a prefix of its own is the expression's to guard: only its result is seen.)
var ErrEmptyUsername = errors.New("token maps to an empty username")

// ErrTimeClaim is wrapped when exp, nbf or iat holds a value no real token carries.
var ErrTimeClaim = errors.New("token time claim is out of range")

// ErrLifetime is wrapped when a token lives longer than the issuer's maxTokenExpirationSeconds.
var ErrLifetime = errors.New("token lifetime exceeds the maximum")

// maxNumericDate is the last second of the year 9999. A time claim is a JSON number of seconds since
// 1970, and JSON numbers reach 1.8e308; bounding them to [0, maxNumericDate] keeps every computation on
// them (differences, conversions to time.Duration and time.Time) far from overflow.
const maxNumericDate = 253402300799

// tokenClaims are the verified claims the mapping step reads beyond what the apiserver mapped.
type tokenClaims struct {
	Audience  audience        `json:"aud"`
	Expiry    *float64        `json:"exp"`
	NotBefore *float64        `json:"nbf"`
	IssuedAt  *float64        `json:"iat"`
	K8s       *k8sTokenClaims `json:"kubernetes.io"`
}

// k8sTokenClaims is the kubernetes.io claim of a projected ServiceAccount token.
type k8sTokenClaims struct {
	Namespace      string    `json:"namespace"`
	ServiceAccount *namedUID `json:"serviceaccount"`
	Pod            *namedUID `json:"pod"`
	Node           *namedUID `json:"node"`
}

type namedUID struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// audience is the aud claim, a string or a list of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	// What json.Unmarshal makes of a plain string or a list of them, without a second scan.
	if s, ok := plainString(b); ok {
		*a = audience{s}
		return nil
	}
	if l, ok := plainStrings(b); ok {
		*a = l
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New("aud must be a string or a list of strings")
	}
	*a = l
	return nil
}

// mapUser completes the user the apiserver authenticator produced: it enforces the system: rules,
// the token lifetime bound, adds ServiceAccount groups and extras, and answers the audiences.
// It returns the token's expiry.
func (e *Entry) mapUser(resp *authenticator.Response, payload []byte, requested []string) (time.Time, error) {
	if payload == nil {
		return time.Time{}, errors.New("verified claims are unavailable") // cannot happen: VerifySignature records them
	}
	var c tokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return time.Time{}, fmt.Errorf("could not decode claims: %w", err)
	}
	var raw map[string]json.RawMessage
	if len(e.cfg.ExtraClaims) > 0 {
		if err := json.Unmarshal(payload, &raw); err != nil {
			return time.Time{}, fmt.Errorf("could not decode claims: %w", err)
		}
	}
	return e.completeUser(resp, c, raw, requested)
}

// completeUser is mapUser after decoding: raw holds every claim (needed only for ExtraClaims).
func (e *Entry) completeUser(resp *authenticator.Response, c tokenClaims, raw map[string]json.RawMessage, requested []string) (time.Time, error) {
	if err := checkTimeClaims(c); err != nil {
		return time.Time{}, err
	}
	if err := e.checkLifetime(c); err != nil {
		return time.Time{}, err
	}
	info, ok := resp.User.(*user.DefaultInfo)
	if !ok {
		return time.Time{}, fmt.Errorf("unexpected user type %T", resp.User)
	}
	// An upstream must never speak for a downstream system identity: a system: username is refused
	// outright, and system: groups (system:masters above all) are dropped below.
	if strings.HasPrefix(info.Name, systemPrefix) {
		return time.Time{}, ErrSystemUsername
	}
	claimed := info.Name // what the claim contributed: without the prefix of a flat mapping
	if e.cfg.ClaimMappings.Username.Expression == "" {
		claimed = strings.TrimPrefix(claimed, e.cfg.UsernamePrefix)
	}
	if strings.TrimSpace(claimed) == "" {
		return time.Time{}, ErrEmptyUsername
	}
	if info.Extra == nil {
		info.Extra = map[string][]string{}
	}
	info.Extra[ExtraAuthenticatorName] = []string{e.cfg.Name}
	if e.cfg.UID != "" {
		info.Extra[ExtraAuthenticatorUID] = []string{e.cfg.UID}
	}
	if sa := c.K8s; sa != nil && sa.Namespace != "" && sa.ServiceAccount != nil {
		e.mapServiceAccount(info, sa)
	}
	if len(e.cfg.ExtraClaims) > 0 {
		e.copyExtraClaims(info, raw)
	}
	info.Groups = withoutSystemGroups(info.Groups)
	resp.Audiences = intersect(requested, c.Audience)
	var expiry time.Time
	if c.Expiry != nil {
		sec, frac := math.Modf(*c.Expiry) // in range: checkTimeClaims bounded it
		expiry = time.Unix(int64(sec), int64(frac*float64(time.Second)))
	}
	return expiry, nil
}

func (e *Entry) mapServiceAccount(info *user.DefaultInfo, sa *k8sTokenClaims) {
	if e.cfg.ServiceAccountGroups && e.cfg.ClaimMappings.Groups.Expression == "" {
		info.Groups = append(info.Groups,
			e.cfg.GroupsPrefix+serviceAccountGroup,
			e.cfg.GroupsPrefix+serviceAccountNSGroupStart+sa.Namespace)
	}
	if info.UID == "" && sa.ServiceAccount.UID != "" {
		// Prefixed like the username so an upstream uid can never equal a downstream object's uid.
		info.UID = e.cfg.UsernamePrefix + sa.ServiceAccount.UID
	}
	setExtra(info, ExtraServiceAccountNS, sa.Namespace)
	setExtra(info, ExtraServiceAccountName, sa.ServiceAccount.Name)
	setExtra(info, ExtraServiceAccountUID, sa.ServiceAccount.UID)
	if sa.Pod != nil {
		setExtra(info, ExtraPodName, sa.Pod.Name)
		setExtra(info, ExtraPodUID, sa.Pod.UID)
	}
	if sa.Node != nil {
		setExtra(info, ExtraNodeName, sa.Node.Name)
	}
}

// copyExtraClaims copies the configured claims into extra. A missing claim is skipped; strings and
// lists of strings are copied as they are, any other JSON value as its JSON text.
func (e *Entry) copyExtraClaims(info *user.DefaultInfo, all map[string]json.RawMessage) {
	for _, name := range e.cfg.ExtraClaims {
		raw, ok := all[name]
		if !ok {
			continue
		}
		var values []string
		var s string
		switch {
		case json.Unmarshal(raw, &s) == nil:
			values = []string{s}
		case json.Unmarshal(raw, &values) == nil:
		default:
			values = []string{string(raw)}
		}
		if len(values) > 0 {
			info.Extra[ExtraClaimPrefix+name] = values
		}
	}
}

// checkTimeClaims refuses a time claim outside [0, maxNumericDate]. The verifier has already compared
// exp and nbf with the clock; this bounds what it, the lifetime check and the cache do arithmetic on.
func checkTimeClaims(c tokenClaims) error {
	for _, t := range [...]struct {
		name  string
		value *float64
	}{{"exp", c.Expiry}, {"nbf", c.NotBefore}, {"iat", c.IssuedAt}} {
		if t.value != nil && (*t.value < 0 || *t.value > maxNumericDate) {
			return fmt.Errorf("%w: %s must be between 0 and %d seconds since 1970", ErrTimeClaim, t.name, maxNumericDate)
		}
	}
	return nil
}

// checkLifetime enforces MaxTokenLifetime on exp - (nbf, or iat when nbf is absent). The arithmetic is
// in float64 seconds of values checkTimeClaims bounded, so it is exact to well under a second and
// cannot wrap, as a time.Duration of 300 years would.
func (e *Entry) checkLifetime(c tokenClaims) error {
	if e.cfg.MaxTokenLifetime <= 0 {
		return nil
	}
	start := c.NotBefore
	if start == nil {
		start = c.IssuedAt
	}
	if c.Expiry == nil || start == nil {
		return fmt.Errorf("%w: exp and nbf or iat are required to bound it", ErrLifetime)
	}
	if lifetime := *c.Expiry - *start; lifetime > e.cfg.MaxTokenLifetime.Seconds() {
		return fmt.Errorf("%w: the token lives %.0fs, the maximum is %s", ErrLifetime, lifetime, e.cfg.MaxTokenLifetime)
	}
	// A start in the future would shorten the lifetime on paper while the token stays valid until exp:
	// what is left of it counts as well.
	if left := *c.Expiry - float64(time.Now().Unix()); left > e.cfg.MaxTokenLifetime.Seconds() {
		return fmt.Errorf("%w: the token is valid for %.0fs more, the maximum is %s", ErrLifetime, left, e.cfg.MaxTokenLifetime)
	}
	return nil
}

func setExtra(info *user.DefaultInfo, key, value string) {
	if value != "" {
		info.Extra[key] = []string{value}
	}
}

// withoutSystemGroups drops groups in the reserved system: namespace, in place.
func withoutSystemGroups(groups []string) []string {
	out := groups[:0]
	for _, g := range groups {
		if !strings.HasPrefix(g, systemPrefix) {
			out = append(out, g)
		}
	}
	return out
}

// intersect returns the requested audiences that the token carries, in request order. Answering the
// intersection, never the request as is, keeps a token minted for one audience from being vouched for
// another.
func intersect(requested []string, tokenAuds []string) []string {
	var out []string
	for _, r := range requested {
		for _, a := range tokenAuds {
			if r == a {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

func requestedAudiences(ctx context.Context) []string {
	auds, _ := authenticator.AudiencesFrom(ctx)
	return auds
}
