package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/token/jwt"
	"k8s.io/apiserver/pkg/authentication/user"
)

// The fast path verifies tokens of entries that use no CEL (flat claim mappings and required claims,
// which is what nearly every OpenIDConnect object declares) with one signature check over the token as
// it came, and one pass over the payload: the claims index the issuer peek made (claims.go), from
// which the registered claims, the raw claims and the mapping step's claims are read. A plain header
// is read by parseCompact (compactjws.go), any other by go-jose; a payload the index does not read,
// or a value that does not fit, by encoding/json. The general path (k8s.io/apiserver's JWT
// authenticator over go-oidc) parses the token twice and decodes its payload five times, and nearly
// every review would pay for that.
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
// leaving a field as it was.
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
}

// oidcTime is a time claim as go-oidc v2's verifier decodes it (its jsonTime: exp and iat by value,
// nbf by pointer): a JSON number or a numeric string, as whole seconds through an int64; null is an
// error for exp and iat.
type oidcTime time.Time

// UnmarshalJSON follows go-oidc v2's jsonTime.UnmarshalJSON step by step.
func (t *oidcTime) UnmarshalJSON(b []byte) error {
	var n json.Number
	if isNumber(b) {
		n = json.Number(b) // what json.Unmarshal makes of a number, without a second scan
	} else if err := json.Unmarshal(b, &n); err != nil {
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
	*t = oidcTime(time.Unix(unix, 0))
	return nil
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
	pt := reviewToken(ctx, token)
	// k8s.io/apiserver declines a token whose readable iss is not its issuer before it reads anything
	// else (hasCorrectIssuer: before the signature, before the typed decode of the claims), so a wrong
	// iss is the answer whatever else is wrong with the token.
	if pt.err == nil && pt.iss != e.cfg.Issuer {
		return nil, time.Time{}, e.wrongIssuer()
	}
	payload, err := e.verifySignature(ctx, pt)
	if errors.Is(err, errFallback) {
		return nil, time.Time{}, err
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("oidc: verify token: failed to verify signature: %w", err)
	}
	idx, indexed := pt.claimsOf(payload)
	c, raw, err := verifiedClaims(payload, idx, indexed)
	if err != nil {
		return nil, time.Time{}, err
	}
	// The apiserver looks for distributed claims under the exact keys, the typed decode under any case
	// (where a later null can hide an earlier value): either finding any leaves it to the general path.
	if c.ClaimNames != nil || c.ClaimSources != nil || raw.has("_claim_names") || raw.has("_claim_sources") {
		return nil, time.Time{}, errFallback
	}
	if c.Issuer == "" {
		return nil, time.Time{}, ErrMalformedToken // as PeekIssuer says of it, where the general path declines
	}
	if c.Issuer != e.cfg.Issuer {
		return nil, time.Time{}, fmt.Errorf("oidc: verify token: oidc: id token issued by a different provider, expected %q got %q", e.cfg.Issuer, c.Issuer)
	}
	// One configured audience is go-oidc's client ID, checked before expiry; several are checked by the
	// apiserver after go-oidc's checks.
	if len(e.audiences) == 1 && !slices.Contains(c.Audience, e.audiences[0]) {
		return nil, time.Time{}, fmt.Errorf("oidc: verify token: oidc: expected audience %q got %q", e.audiences[0], []string(c.Audience))
	}
	now := time.Now()
	// go-oidc: a missing exp is the zero time, which is always expired.
	if exp := time.Time(c.Expiry); exp.Before(now) {
		return nil, time.Time{}, fmt.Errorf("oidc: verify token: oidc: token is expired (Token Expiry: %v)", exp)
	}
	if c.NotBefore != nil {
		if nbf := time.Time(*c.NotBefore); now.Add(nbfLeeway).Before(nbf) {
			return nil, time.Time{}, fmt.Errorf("oidc: verify token: oidc: current time %v before the nbf (not before) time: %v", now, nbf)
		}
	}
	if len(e.audiences) > 1 && !audienceMatches(e.audiences, c.Audience) {
		return nil, time.Time{}, fmt.Errorf("oidc: verify token: oidc: expected audience in %q got %q", e.audiences, []string(c.Audience))
	}
	username, err := e.fastUsername(raw)
	if err != nil {
		return nil, time.Time{}, err
	}
	info := &user.DefaultInfo{Name: username}
	if info.Groups, err = e.fastGroups(raw); err != nil {
		return nil, time.Time{}, err
	}
	if v, ok := raw.get("jti"); ok {
		var jti string
		if unmarshalValue(v, &jti) == nil {
			if id := jwt.CredentialIDForJTI(jti); id != "" {
				info.Extra = map[string][]string{user.CredentialIDKey: {id}}
			}
		}
	}
	for claim, want := range e.required {
		v, ok := raw.get(claim)
		if !ok {
			return nil, time.Time{}, fmt.Errorf("oidc: required claim %s not present in ID token", claim)
		}
		var got string
		if err := unmarshalValue(v, &got); err != nil {
			return nil, time.Time{}, fmt.Errorf("oidc: parse claim %s: %w", claim, err)
		}
		if got != want {
			return nil, time.Time{}, fmt.Errorf("oidc: required claim %s value does not match. Got = %s, want = %s", claim, got, want)
		}
	}

	// The mapping step's own decode, as the general path runs it: its types (times as float64, the
	// kubernetes.io claim) and its handling of repeated keys differ from the verifier's.
	tc, ok := idx.tokenClaims()
	if !indexed || !ok {
		tc = tokenClaims{}
		if err := json.Unmarshal(payload, &tc); err != nil {
			return nil, time.Time{}, fmt.Errorf("could not decode claims: %w", err)
		}
	}
	resp := &authenticator.Response{User: info}
	var extra map[string]json.RawMessage // completeUser reads the raw claims for ExtraClaims only
	if len(e.cfg.ExtraClaims) > 0 {
		extra = raw.rawMap()
	}
	expiry, err := e.completeUser(resp, tc, extra, requestedAudiences(ctx))
	if err != nil {
		return nil, time.Time{}, err
	}
	return resp, expiry, nil
}

// verifySignature verifies the token's signature with the entry's keys and returns its payload: a plain
// compact JWS read by parseCompact, anything else parsed by go-jose. It returns errFallback for a token
// go-jose does not parse or whose header is unusual.
func (e *Entry) verifySignature(ctx context.Context, pt *peekedToken) ([]byte, error) {
	if j, ok := parseCompact(pt, e.keys.algs); ok {
		return e.keys.verifySigned(ctx, j, j.kid)
	}
	jws, err := jose.ParseSignedCompact(pt.token, e.keys.algs)
	if err != nil || unusualHeader(jws) {
		// go-jose v2 under go-oidc and v4 here differ in what they accept and in the order of their
		// checks (v4 checks alg first); the general path says what a malformed token is.
		return nil, errFallback
	}
	return e.keys.verifyJWS(ctx, jws)
}

// verifiedClaims decodes the verifier's typed claims and the raw claims of the verified payload: from
// its claims index when it has one (indexed) and every value fits, else with encoding/json, which then
// says why a value does not fit.
func verifiedClaims(payload []byte, idx claimsIndex, indexed bool) (registeredClaims, claimsIndex, error) {
	if indexed {
		if c, ok := idx.registered(); ok {
			return c, idx, nil
		}
	}
	var c registeredClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, nil, fmt.Errorf("oidc: verify token: oidc: failed to unmarshal claims: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil {
		return c, nil, fmt.Errorf("oidc: parse claims: %w", err)
	}
	return c, indexOfMap(raw), nil
}

// fastUsername is the apiserver's flat username mapping.
func (e *Entry) fastUsername(raw claimsIndex) (string, error) {
	claim := e.cfg.UsernameClaim
	v, ok := raw.get(claim)
	if !ok {
		return "", fmt.Errorf("oidc: parse username claims %q: claim not present", claim)
	}
	var username string
	if err := unmarshalValue(v, &username); err != nil {
		return "", fmt.Errorf("oidc: parse username claims %q: %w", claim, err)
	}
	if claim == "email" {
		if ev, ok := raw.get("email_verified"); ok {
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
func (e *Entry) fastGroups(raw claimsIndex) ([]string, error) {
	claim := e.cfg.GroupsClaim
	if claim == "" {
		return nil, nil
	}
	v, ok := raw.get(claim)
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

// has reports whether the payload has a member named exactly key.
func (idx claimsIndex) has(key string) bool {
	_, ok := idx.get(key)
	return ok
}
