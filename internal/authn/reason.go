package authn

import (
	"context"
	"errors"
	"strings"
)

// Refusal reasons: the small fixed set every refusal falls into, whichever path made it.
const (
	ReasonUnknownIssuer     = "unknown_issuer"
	ReasonMalformed         = "malformed"
	ReasonUnknownKID        = "unknown_kid"
	ReasonBadSignature      = "bad_signature"
	ReasonAlgorithm         = "algorithm"
	ReasonExpired           = "expired"
	ReasonNotYetValid       = "not_yet_valid"
	ReasonAudience          = "audience"
	ReasonLifetime          = "lifetime"
	ReasonRequiredClaim     = "required_claim"
	ReasonUsernameClaim     = "username_claim"
	ReasonGroupsClaim       = "groups_claim"
	ReasonClaimRule         = "claim_rule"
	ReasonClaimMapping      = "claim_mapping"
	ReasonUserRule          = "user_rule"
	ReasonDistributedClaims = "distributed_claims"
	ReasonSystemIdentity    = "system_identity"
	ReasonEmptyUsername     = "empty_username"
	ReasonNoKeys            = "no_keys"
	ReasonOverload          = "overload"
	ReasonInternal          = "internal"
)

// libraryReasons classify the errors of the general path by their text: go-oidc v2 wraps the key
// set's errors with %v, not %w, so its sentinels do not survive errors.Is. The fast path repeats the
// same texts where it mirrors the general path. Messages quote token content (an audience, a claim
// value) after their fixed text, so the text found earliest in the message decides: a token cannot
// choose its own reason by carrying another message's words.
var libraryReasons = []struct{ text, reason string }{
	{"no key matches kid", ReasonUnknownKID},
	{ErrBadSignature.Error(), ReasonBadSignature},
	{ErrNoKeys.Error(), ReasonNoKeys},
	{ErrCriticalHeader.Error(), ReasonMalformed},
	{"could not parse JWS", ReasonMalformed},
	{"unsupported algorithm", ReasonAlgorithm}, // go-oidc v2
	{"token is expired", ReasonExpired},
	{"before the nbf", ReasonNotYetValid},
	{"expected audience", ReasonAudience},
	{"issued by a different provider", ReasonUnknownIssuer},
	{"distributed claims", ReasonDistributedClaims},
	{"source does not exist", ReasonDistributedClaims},
	{"failed to obtain source from claim name", ReasonDistributedClaims},
	{"required claim", ReasonRequiredClaim},
	{"oidc: parse claim ", ReasonRequiredClaim},
	{"empty username via CEL", ReasonEmptyUsername},
	{"parse username claims", ReasonUsernameClaim},
	{"email not verified", ReasonUsernameClaim},
	{"'email_verified' claim", ReasonUsernameClaim},
	{"parse groups claim", ReasonGroupsClaim},
	{"claim validation expression", ReasonClaimRule},
	{"user info validation rule", ReasonUserRule},
	{"claim expression", ReasonClaimMapping}, // username, groups and uid expressions
	{"extra mapping expression", ReasonClaimMapping},
	{"resulted in error", ReasonClaimMapping}, // a CEL extra mapping's error, returned unwrapped
	{"malformed jwt", ReasonMalformed},
	{"id token not signed", ReasonMalformed},
	{"multiple signatures", ReasonMalformed},
	{"unmarshal claims", ReasonMalformed},
	{"could not decode claims", ReasonMalformed},
	{"oidc: parse claims", ReasonMalformed},
	{"exactly one signature", ReasonMalformed},
}

// reasonOf classifies the error of a refused review. What fits no reason is ReasonInternal; the
// differential test fails on any refusal of a token that lands there.
func reasonOf(err error) string {
	var unknownKey *UnknownKeyError
	switch {
	case err == nil:
		return ReasonInternal
	case errors.Is(err, ErrOverloaded):
		return ReasonOverload
	case errors.Is(err, ErrUnknownIssuer):
		return ReasonUnknownIssuer
	case errors.Is(err, ErrMalformedToken), errors.Is(err, ErrNonCanonicalToken), errors.Is(err, ErrTimeClaim),
		errors.Is(err, ErrCriticalHeader):
		return ReasonMalformed
	case errors.As(err, &unknownKey):
		return ReasonUnknownKID
	case errors.Is(err, ErrLifetime):
		return ReasonLifetime
	case errors.Is(err, ErrSystemUsername):
		return ReasonSystemIdentity
	case errors.Is(err, ErrEmptyUsername):
		return ReasonEmptyUsername
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ReasonInternal
	}
	msg := err.Error()
	reason, at := ReasonInternal, len(msg)
	for _, r := range libraryReasons {
		if i := strings.Index(msg[:min(len(msg), at+len(r.text))], r.text); i >= 0 && i < at {
			reason, at = r.reason, i
		}
	}
	return reason
}
