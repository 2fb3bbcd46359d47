package authn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
)

// Explanation is the request path's verdict on one token, step by step, for `webhook explain`. It is
// made by the same code that answers TokenReviews: the handler's form checks, the router's lookup by
// iss, and each entry's verification, in the router's order; only the recording is added.
type Explanation struct {
	// Claims are read from the token without verifying it.
	Claims UnverifiedClaims `json:"unverifiedClaims"`
	// Authenticated is the verdict; Reason is the refusal's reason when it is false.
	Authenticated bool   `json:"authenticated"`
	Reason        string `json:"reason,omitempty"`
	// Detail is why the token was refused before any object looked at it (its form, its issuer).
	Detail string `json:"detail,omitempty"`
	Hint   string `json:"hint,omitempty"`
	// Attempts are the objects of the token's issuer, in the order the router tries them.
	Attempts []Attempt `json:"attempts,omitempty"`
	// User is what kube-apiserver would be told, when authenticated.
	User *ExplainedUser `json:"user,omitempty"`
}

// UnverifiedClaims are what the token says of itself, before any check.
type UnverifiedClaims struct {
	Issuer    string     `json:"iss,omitempty"`
	Subject   string     `json:"sub,omitempty"`
	Audiences []string   `json:"aud,omitempty"`
	Expiry    *time.Time `json:"exp,omitempty"`
	NotBefore *time.Time `json:"nbf,omitempty"`
	IssuedAt  *time.Time `json:"iat,omitempty"`
	KeyID     string     `json:"kid,omitempty"`
	Algorithm string     `json:"alg,omitempty"`
}

// Attempt is one object's verdict.
type Attempt struct {
	Object        string `json:"object"`
	Authenticated bool   `json:"authenticated"`
	// Skipped says why the object did not look at the token (an earlier one authenticated it).
	Skipped string `json:"skipped,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Detail is the check's own message (it may quote the token's claims, never the token).
	Detail string `json:"detail,omitempty"`
	Hint   string `json:"hint,omitempty"`
}

// ExplainedUser is the identity an authenticated token maps to.
type ExplainedUser struct {
	Username  string              `json:"username"`
	UID       string              `json:"uid,omitempty"`
	Groups    []string            `json:"groups,omitempty"`
	Extra     map[string][]string `json:"extra,omitempty"`
	Object    string              `json:"object"`
	Audiences []string            `json:"audiences,omitempty"`
}

// Explain runs token through the request path as a review with the given audiences (kube-apiserver's
// spec.audiences; none is the usual case) would, and records each step. maxTokenBytes is the handler's
// limit (MaxTokenBytes when zero).
func (r *Router) Explain(ctx context.Context, token string, audiences []string, maxTokenBytes int) Explanation {
	var x Explanation
	if maxTokenBytes <= 0 {
		maxTokenBytes = MaxTokenBytes
	}
	x.Claims = unverifiedClaims(token)
	refuse := func(err error, hint string) Explanation {
		x.Reason, x.Detail, x.Hint = reasonOf(err), err.Error(), hint
		return x
	}
	if err := checkForm(token, maxTokenBytes); err != nil {
		hint := "check the file holds exactly the token: no quotes, spaces, line breaks or padding (a trailing newline is removed)"
		switch {
		case token == "":
			hint = "the file holds no token"
		case len(token) > maxTokenBytes:
			hint = "the webhook's --max-token-bytes refuses it"
		}
		return refuse(err, hint)
	}
	if len(audiences) > 0 {
		ctx = authenticator.WithAudiences(ctx, audiences)
	}
	// The router's own loop, recorded: the order, the first success and the refusal it answers with
	// are the request path's.
	resp, winner, _, err := r.authenticate(ctx, token, func(e *Entry, resp *authenticator.Response, err error) {
		a := Attempt{Object: e.cfg.Name, Authenticated: resp != nil && err == nil}
		if !a.Authenticated {
			if err == nil {
				err = errNotAuthenticated
			}
			a.Reason, a.Detail = reasonOf(err), err.Error()
			a.Hint = hintFor(a.Reason, e, x.Claims, audiences)
		}
		x.Attempts = append(x.Attempts, a)
	})
	iss, peekErr := PeekIssuer(token)
	switch {
	case peekErr != nil:
		return refuse(peekErr, "a JWT's payload must be a JSON object with an iss claim")
	case len(x.Attempts) == 0:
		return refuse(err, fmt.Sprintf("no OpenIDConnect object has spec.issuerURL %q: declare the issuer (webhook trust --issuer-url ...), or check the token came from the issuer you expect", iss))
	case err != nil:
		x.Reason = reasonOf(err) // the refusal the router answers with
		return x
	}
	x.Authenticated = true
	u := resp.User
	x.User = &ExplainedUser{Username: u.GetName(), UID: u.GetUID(), Groups: u.GetGroups(), Extra: u.GetExtra(), Object: winner.cfg.Name, Audiences: resp.Audiences}
	if rt := r.lookup(iss); rt != nil && len(x.Attempts) <= len(rt.entries) {
		for _, e := range rt.entries[len(x.Attempts):] {
			x.Attempts = append(x.Attempts, Attempt{Object: e.cfg.Name, Skipped: "an earlier object authenticated the token; the router stops at the first"})
		}
	}
	return x
}

// hintFor names the fix for an object's refusal, from what the object holds and what the token says.
func hintFor(reason string, e *Entry, c UnverifiedClaims, reviewAudiences []string) string {
	cfg := e.cfg
	switch reason {
	case ReasonAudience:
		if len(reviewAudiences) > 0 {
			return fmt.Sprintf("the review asked for audiences %q; the token carries %q and the object accepts %q", reviewAudiences, c.Audiences, e.audiences)
		}
		want := e.audiences
		mint := ""
		if len(want) > 0 {
			mint = fmt.Sprintf(", or mint the token with --audience %s", want[0])
		}
		return fmt.Sprintf("the token was minted for audience %q; OpenIDConnect %s accepts %q: add one of the token's audiences to spec.audiences%s", c.Audiences, cfg.Name, want, mint)
	case ReasonExpired:
		if c.Expiry != nil {
			return fmt.Sprintf("the token expired at %s (%s ago): get a fresh one (a projected ServiceAccount token is refreshed by the kubelet; read the file again)", c.Expiry.UTC().Format(time.RFC3339), time.Since(*c.Expiry).Round(time.Second))
		}
		return "the token has expired: get a fresh one"
	case ReasonNotYetValid:
		if c.NotBefore != nil {
			return fmt.Sprintf("the token is valid from %s (%s from now): the clocks of this machine and the issuer differ", c.NotBefore.UTC().Format(time.RFC3339), time.Until(*c.NotBefore).Round(time.Second))
		}
		return "the token is not valid yet: the clocks of this machine and the issuer differ"
	case ReasonUnknownKID:
		return fmt.Sprintf("the token was signed with key %q; the issuer's keys here are %q: if the issuer just rotated its key, clustertrust refetches the keys (at most every --min-refetch-interval); with static keys, update spec.jwks", c.KeyID, keyIDs(e))
	case ReasonBadSignature:
		return fmt.Sprintf("the signature does not verify with the issuer's key %q: the token was not signed by this issuer (forged or altered), or another signer uses the same kid", c.KeyID)
	case ReasonAlgorithm:
		if !slices.Contains(AllSigningAlgs, c.Algorithm) {
			return fmt.Sprintf("the token is signed with %q, which clustertrust never accepts: only asymmetric algorithms (%s) verify with an issuer's public keys", c.Algorithm, strings.Join(AllSigningAlgs, ", "))
		}
		return fmt.Sprintf("the token is signed with %s; OpenIDConnect %s accepts %q: add it to spec.supportedSigningAlgs", c.Algorithm, cfg.Name, cfg.SigningAlgs)
	case ReasonLifetime:
		return fmt.Sprintf("OpenIDConnect %s accepts tokens living at most %s (spec.maxTokenExpirationSeconds), counted from nbf (else iat) to exp, and from now to exp: mint shorter-lived tokens (--duration) or raise the limit", cfg.Name, cfg.MaxTokenLifetime)
	case ReasonRequiredClaim:
		return fmt.Sprintf("OpenIDConnect %s requires the claims %v (spec.requiredClaims and claimValidationRules with requiredValue)", cfg.Name, requiredClaimNames(cfg))
	case ReasonUsernameClaim:
		return fmt.Sprintf("OpenIDConnect %s reads the username from claim %q: the token must carry it as a string (and email_verified true for email)", cfg.Name, cfg.UsernameClaim)
	case ReasonGroupsClaim:
		return fmt.Sprintf("claim %q must be a string or a list of strings", cfg.GroupsClaim)
	case ReasonClaimRule:
		return "a rule in spec.claimValidationRules refused the token: its message is above"
	case ReasonClaimMapping:
		return "an expression in spec.claimMappings failed on this token (a claim it reads is missing or of another type): guard it with has(claims.x)"
	case ReasonUserRule:
		return "a rule in spec.userValidationRules refused the mapped user: its message is above"
	case ReasonDistributedClaims:
		return "the token refers to claims held elsewhere (_claim_names); clustertrust does not fetch them: have the issuer put the claim in the token"
	case ReasonSystemIdentity:
		return fmt.Sprintf("the username would start with system:, which no upstream may claim: give OpenIDConnect %s a usernamePrefix", cfg.Name)
	case ReasonEmptyUsername:
		return fmt.Sprintf("the username claim %q is empty or blank in the token", cfg.UsernameClaim)
	case ReasonNoKeys:
		ks := e.KeyStatus()
		if ks.LastError != nil {
			return fmt.Sprintf("the issuer's keys could not be loaded: %v; check spec.issuerURL, spec.discoveryURL and spec.caBundle (kubectl describe openidconnect %s)", ks.LastError, cfg.Name)
		}
		return fmt.Sprintf("the issuer's keys are not loaded yet (kubectl describe openidconnect %s)", cfg.Name)
	case ReasonInternal:
		return "the review did not finish in time: an issuer that answers slowly, or a webhook under load"
	}
	return ""
}

func keyIDs(e *Entry) []string {
	var ids []string
	for _, k := range e.KeyStatus().Keys {
		ids = append(ids, k.KID)
	}
	return ids
}

func requiredClaimNames(cfg Config) []string {
	var names []string
	for k := range cfg.RequiredClaims {
		names = append(names, k)
	}
	for _, r := range cfg.ClaimValidationRules {
		if r.Claim != "" {
			names = append(names, r.Claim)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// unverifiedClaims decodes the token's header and payload without any check, for display.
func unverifiedClaims(token string) UnverifiedClaims {
	var c UnverifiedClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c
	}
	var header struct {
		KID string `json:"kid"`
		Alg string `json:"alg"`
	}
	if b, err := base64.RawURLEncoding.DecodeString(parts[0]); err == nil {
		_ = json.Unmarshal(b, &header)
	}
	c.KeyID, c.Algorithm = header.KID, header.Alg
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c
	}
	var payload map[string]json.RawMessage
	if json.Unmarshal(b, &payload) != nil {
		return c
	}
	_ = json.Unmarshal(payload["iss"], &c.Issuer)
	_ = json.Unmarshal(payload["sub"], &c.Subject)
	var aud any
	if json.Unmarshal(payload["aud"], &aud) == nil {
		switch a := aud.(type) {
		case string:
			c.Audiences = []string{a}
		case []any:
			for _, v := range a {
				if s, ok := v.(string); ok {
					c.Audiences = append(c.Audiences, s)
				}
			}
		}
	}
	c.Expiry, c.NotBefore, c.IssuedAt = unixTime(payload["exp"]), unixTime(payload["nbf"]), unixTime(payload["iat"])
	return c
}

func unixTime(raw json.RawMessage) *time.Time {
	var f float64
	if len(raw) == 0 || json.Unmarshal(raw, &f) != nil || math.IsNaN(f) || f < 0 || f > 253402300799 {
		return nil
	}
	sec, frac := math.Modf(f)
	t := time.Unix(int64(sec), int64(frac*1e9))
	return &t
}
