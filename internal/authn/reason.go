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

// libraryReasons classify the errors of the general path by their text, in order: go-oidc v2 wraps the
// key set's errors with %v, not %w, so its sentinels do not survive errors.Is. The fast path repeats
// the same texts where it mirrors the general path, and wraps the key set's errors with %w.
var libraryReasons = []struct{ text, reason string }{
	// Signature and keys first: their texts may also contain "malformed" or "verify".
	{"no key matches kid", ReasonUnknownKID},
	{ErrBadSignature.Error(), ReasonBadSignature},
	{ErrNoKeys.Error(), ReasonNoKeys},
	{"unexpected signature algorithm", ReasonAlgorithm}, // go-jose v4, the fast path's parse
	{"unsupported algorithm", ReasonAlgorithm},          // go-oidc v2
	{"token is expired", ReasonExpired},
	{"before the nbf", ReasonNotYetValid},
	{"expected audience", ReasonAudience},
	{"issued by a different provider", ReasonUnknownIssuer},
	{"distributed claims", ReasonDistributedClaims},
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
	{"malformed jwt", ReasonMalformed},
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
	case errors.Is(err, ErrMalformedToken), errors.Is(err, ErrNonCanonicalToken), errors.Is(err, ErrTimeClaim):
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
	for _, r := range libraryReasons {
		if strings.Contains(msg, r.text) {
			return r.reason
		}
	}
	return ReasonInternal
}
