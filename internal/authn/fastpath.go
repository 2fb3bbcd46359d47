package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/token/jwt"
	"k8s.io/apiserver/pkg/authentication/user"
)

// The fast path verifies tokens of entries that use no CEL (flat claim mappings and required claims,
// which is what nearly every OpenIDConnect object declares) with one JWS parse, one signature check and
// two decodes of the payload: one typed, for the registered claims, and one into raw claims, for the
// configured ones. The general path (k8s.io/apiserver's JWT authenticator over go-oidc) parses the
// token twice and decodes its payload five times, and nearly every review would pay for that.
//
// It reproduces the general path's decisions exactly, check for check and in the same order, and that
// is tested: a differential test sets every claim either path reads to every class of JSON value and
// requires the same answer for the same reason (reasonOf), a fuzz target does the same on arbitrary
// payloads, and kube-apiserver's own JWT test table runs through both paths. Whatever it does not
// reproduce — distributed claims, unusual JOSE headers, Google's issuer alias — it hands to the general
// path.

// errFallback says the general path must decide.
var errFallback = errors.New("use the general path")

// registeredClaims are the claims go-oidc's verifier decodes with a typed struct (iss, sub, aud, exp,
// iat, nbf, nonce, at_hash, _claim_names, _claim_sources). One typed decode with the same field types
// keeps their semantics, down to encoding/json matching field names case-insensitively and null
// leaving a field as it was. kubernetes.io, which only the mapping step decodes, is kept raw and
// decoded where the mapping step decodes it, so a malformed value is refused at the same step.
type registeredClaims struct {
	Issuer       string                     `json:"iss"`
	Subject      string                     `json:"sub"`
	Audience     audience                   `json:"aud"`
	Expiry       oidcTime                   `json:"exp"`
	IssuedAt     oidcTime                   `json:"iat"`
	NotBefore    *oidcTime                  `json:"nbf"`
	Nonce        string                     `json:"nonce"`
	AtHash       string                     `json:"at_hash"`
	ClaimNames   map[string]string          `json:"_claim_names"`
	ClaimSources map[string]json.RawMessage `json:"_claim_sources"`
	K8s          json.RawMessage            `json:"kubernetes.io"`
}

// oidcTime is a time claim decoded the two ways the general path decodes it. go-oidc v2's verifier
// (its jsonTime: exp and iat by value, nbf by pointer) takes a JSON number or a numeric string, as
// whole seconds through an int64, and refuses null for exp and iat. The mapping step (tokenClaims:
// *float64) takes a JSON number only and null as absent. The first is checked where the verifier
// checks; the second is what the mapping step gets, and its decode error is reported where it would be.
type oidcTime struct {
	verifier time.Time
	mapped   *float64
	mapErr   error
}

// UnmarshalJSON follows go-oidc v2's jsonTime.UnmarshalJSON step by step, then decodes b as the mapping
// step's *float64 would.
func (t *oidcTime) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	var unix int64
	if i, err := n.Int64(); err == nil {
		unix = i
	} else {
		f, err := n.Float64()
		if err != nil {
			return err
		}
		unix = int64(f)
	}
	t.verifier = time.Unix(unix, 0)
	if len(b) > 0 && b[0] == '"' {
		t.mapErr = errors.New("json: cannot unmarshal string into Go value of type float64")
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		t.mapErr = fmt.Errorf("json: cannot unmarshal number %s into Go value of type float64", b)
		return nil
	}
	t.mapped = &f
	return nil
}

// mappedClaims is what the mapping step's decode of the payload (tokenClaims) yields from the claims
// the fast path decoded, or its error.
func (c *registeredClaims) mappedClaims() (tokenClaims, error) {
	tc := tokenClaims{Audience: c.Audience, Expiry: c.Expiry.mapped, IssuedAt: c.IssuedAt.mapped}
	for _, t := range []*oidcTime{&c.Expiry, &c.IssuedAt, c.NotBefore} {
		if t != nil && t.mapErr != nil {
			return tokenClaims{}, fmt.Errorf("could not decode claims: %w", t.mapErr)
		}
	}
	if c.NotBefore != nil {
		tc.NotBefore = c.NotBefore.mapped
	}
	if len(c.K8s) > 0 {
		if err := json.Unmarshal(c.K8s, &tc.K8s); err != nil {
			return tokenClaims{}, fmt.Errorf("could not decode claims: %w", err)
		}
	}
	return tc, nil
}

// nbfLeeway is the allowance for an nbf in the future of the go-oidc (v2) verifier that
// k8s.io/apiserver uses.
const nbfLeeway = time.Minute

// fastPathEligible reports whether cfg can be served by the fast path.
func fastPathEligible(cfg Config) bool {
	for _, r := range cfg.ClaimValidationRules {
		if r.Expression != "" {
			return false
		}
	}
	m := cfg.ClaimMappings
	return len(cfg.UserValidationRules) == 0 &&
		m.Username.Expression == "" && m.Groups.Expression == "" && m.UID.Claim == "" && m.UID.Expression == "" && len(m.Extra) == 0 &&
		cfg.Issuer != googleIssuer // go-oidc accepts "accounts.google.com" tokens for it
}

// authenticateFast is the fast path. It returns errFallback when the general path must decide.
func (e *Entry) authenticateFast(ctx context.Context, token string) (*authenticator.Response, time.Time, error) {
	jws, err := jose.ParseSignedCompact(token, e.keys.algs)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("oidc: verify token: oidc: malformed jwt: %w", err)
	}
	if unusualHeader(jws) {
		return nil, time.Time{}, errFallback
	}
	payload, err := e.keys.verifyJWS(ctx, jws)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("oidc: verify token: failed to verify signature: %w", err)
	}
	var c registeredClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, time.Time{}, fmt.Errorf("oidc: verify token: oidc: failed to unmarshal claims: %w", err)
	}
	if c.ClaimNames != nil || c.ClaimSources != nil {
		return nil, time.Time{}, errFallback
	}
	if c.Issuer == "" {
		return nil, time.Time{}, ErrMalformedToken // as PeekIssuer says of it, where the general path declines
	}
	if c.Issuer != e.cfg.Issuer {
		return nil, time.Time{}, fmt.Errorf("oidc: verify token: oidc: id token issued by a different provider, expected %q got %q", e.cfg.Issuer, c.Issuer)
	}
	if !audienceMatches(e.cfg.Audiences, c.Audience) {
		return nil, time.Time{}, fmt.Errorf("oidc: verify token: oidc: expected audience in %q got %q", e.cfg.Audiences, []string(c.Audience))
	}
	now := time.Now()
	// go-oidc: a missing exp is the zero time, which is always expired.
	if exp := c.Expiry.verifier; exp.Before(now) {
		return nil, time.Time{}, fmt.Errorf("oidc: verify token: oidc: token is expired (Token Expiry: %v)", exp)
	}
	if c.NotBefore != nil {
		if nbf := c.NotBefore.verifier; now.Add(nbfLeeway).Before(nbf) {
			return nil, time.Time{}, fmt.Errorf("oidc: verify token: oidc: current time %v before the nbf (not before) time: %v", now, nbf)
		}
	}

	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil {
		return nil, time.Time{}, fmt.Errorf("oidc: parse claims: %w", err)
	}
	username, err := e.fastUsername(raw)
	if err != nil {
		return nil, time.Time{}, err
	}
	info := &user.DefaultInfo{Name: username}
	if info.Groups, err = e.fastGroups(raw); err != nil {
		return nil, time.Time{}, err
	}
	if v, ok := raw["jti"]; ok {
		var jti string
		if json.Unmarshal(v, &jti) == nil {
			if id := jwt.CredentialIDForJTI(jti); id != "" {
				info.Extra = map[string][]string{user.CredentialIDKey: {id}}
			}
		}
	}
	for claim, want := range e.required {
		v, ok := raw[claim]
		if !ok {
			return nil, time.Time{}, fmt.Errorf("oidc: required claim %s not present in ID token", claim)
		}
		var got string
		if err := json.Unmarshal(v, &got); err != nil {
			return nil, time.Time{}, fmt.Errorf("oidc: parse claim %s: %w", claim, err)
		}
		if got != want {
			return nil, time.Time{}, fmt.Errorf("oidc: required claim %s value does not match. Got = %s, want = %s", claim, got, want)
		}
	}

	resp := &authenticator.Response{User: info}
	tc, err := c.mappedClaims()
	if err != nil {
		return nil, time.Time{}, err
	}
	expiry, err := e.completeUser(resp, tc, raw, requestedAudiences(ctx))
	if err != nil {
		return nil, time.Time{}, err
	}
	return resp, expiry, nil
}

// fastUsername is the apiserver's flat username mapping.
func (e *Entry) fastUsername(raw map[string]json.RawMessage) (string, error) {
	claim := e.cfg.UsernameClaim
	v, ok := raw[claim]
	if !ok {
		return "", fmt.Errorf("oidc: parse username claims %q: claim not present", claim)
	}
	var username string
	if err := json.Unmarshal(v, &username); err != nil {
		return "", fmt.Errorf("oidc: parse username claims %q: %w", claim, err)
	}
	if claim == "email" {
		if ev, ok := raw["email_verified"]; ok {
			var verified bool
			if err := json.Unmarshal(ev, &verified); err != nil {
				return "", fmt.Errorf("oidc: parse 'email_verified' claim: %w", err)
			}
			if !verified {
				return "", errors.New("oidc: email not verified")
			}
		}
	}
	return e.cfg.UsernamePrefix + username, nil
}

// fastGroups is the apiserver's flat groups mapping: a string or a list of strings, each prefixed.
func (e *Entry) fastGroups(raw map[string]json.RawMessage) ([]string, error) {
	claim := e.cfg.GroupsClaim
	if claim == "" {
		return nil, nil
	}
	v, ok := raw[claim]
	if !ok {
		return nil, nil
	}
	var groups []string
	if err := json.Unmarshal(v, &groups); err != nil {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("oidc: parse groups claim %q: %w", claim, err)
		}
		groups = []string{s}
	}
	if e.cfg.GroupsPrefix != "" {
		for i := range groups {
			groups[i] = e.cfg.GroupsPrefix + groups[i]
		}
	}
	return groups, nil
}

// unusualHeader reports a protected header with more than alg, kid, typ, cty (and x5c, which both
// go-jose versions parse the same way and neither uses for verification): an embedded key, a nonce,
// crit, b64 and the like are rare enough to leave to the general path, whose go-jose v2 parser treats
// some of them differently.
func unusualHeader(jws *jose.JSONWebSignature) bool {
	if len(jws.Signatures) != 1 {
		return true
	}
	h := jws.Signatures[0].Protected
	if h.JSONWebKey != nil || h.Nonce != "" {
		return true
	}
	for k := range h.ExtraHeaders {
		if k != jose.HeaderType && k != jose.HeaderContentType {
			return true
		}
	}
	return false
}

func audienceMatches(allowed []string, got audience) bool {
	for _, a := range allowed {
		for _, g := range got {
			if a == g {
				return true
			}
		}
	}
	return false
}
