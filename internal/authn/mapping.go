package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
		expiry = time.Unix(0, int64(*c.Expiry*float64(time.Second)))
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

// checkLifetime enforces MaxTokenLifetime on exp - (nbf, or iat when nbf is absent).
func (e *Entry) checkLifetime(c tokenClaims) error {
	if e.cfg.MaxTokenLifetime <= 0 {
		return nil
	}
	start := c.NotBefore
	if start == nil {
		start = c.IssuedAt
	}
	if c.Expiry == nil || start == nil {
		return errors.New("token lifetime cannot be bounded: exp and nbf or iat are required")
	}
	lifetime := time.Duration((*c.Expiry - *start) * float64(time.Second))
	if lifetime > e.cfg.MaxTokenLifetime {
		return fmt.Errorf("token lifetime %s exceeds the maximum of %s", lifetime, e.cfg.MaxTokenLifetime)
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
