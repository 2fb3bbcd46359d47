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

// Reasons lists every refusal reason, in the order of the checks that produce them.
var Reasons = []string{
	ReasonMalformed, ReasonUnknownIssuer, ReasonOverload, ReasonNoKeys, ReasonUnknownKID, ReasonAlgorithm,
	ReasonBadSignature, ReasonExpired, ReasonNotYetValid, ReasonAudience, ReasonLifetime, ReasonRequiredClaim,
	ReasonDistributedClaims, ReasonClaimRule, ReasonUsernameClaim, ReasonGroupsClaim, ReasonClaimMapping,
	ReasonUserRule, ReasonSystemIdentity, ReasonEmptyUsername, ReasonInternal,
}

// refusalMessages say what each reason means, in the words a TokenReview's status.error carries to
// kube-apiserver's log. They are fixed sentences: never the token, a claim value, or a library message
// that may quote one (those go only to `webhook explain`, which the token's holder runs).
var refusalMessages = map[string]string{
	ReasonUnknownIssuer:     "no OpenIDConnect object trusts the token's issuer (iss)",
	ReasonMalformed:         "the token is not a well-formed signed JWT",
	ReasonUnknownKID:        "the token names a signing key (kid) its issuer does not publish",
	ReasonBadSignature:      "the token's signature does not verify with its issuer's keys",
	ReasonAlgorithm:         "the token is signed with an algorithm the object does not accept",
	ReasonExpired:           "the token has expired (exp)",
	ReasonNotYetValid:       "the token is not valid yet (nbf)",
	ReasonAudience:          "the token's audience (aud) is not one the object accepts",
	ReasonLifetime:          "the token lives longer than the object's maxTokenExpirationSeconds",
	ReasonRequiredClaim:     "the token lacks a claim, or a claim value, the object requires",
	ReasonUsernameClaim:     "the token's username claim is missing or unusable",
	ReasonGroupsClaim:       "the token's groups claim is not a string or a list of strings",
	ReasonClaimRule:         "a claim validation rule of the object refused the token",
	ReasonClaimMapping:      "a claim mapping expression of the object failed on the token",
	ReasonUserRule:          "a user validation rule of the object refused the mapped user",
	ReasonDistributedClaims: "the token's distributed claims cannot be resolved",
	ReasonSystemIdentity:    "the token would map to a system: identity",
	ReasonEmptyUsername:     "the token maps to an empty username",
	ReasonNoKeys:            "the issuer's keys could not be loaded",
	ReasonOverload:          "too many reviews at once; kube-apiserver retries",
	ReasonInternal:          "the review could not be completed in time",
}

// RefusalMessage is the status.error of a refused review: the reason, what it means, and the object
// that refused, when one did. It holds nothing of the token: the meaning is a fixed sentence, or the
// text of a refusal the handler made itself from the token's form alone (formError).
func RefusalMessage(reason, object string, err error) string {
	meaning := refusalMessages[reason]
	var form *formError
	if errors.As(err, &form) {
		meaning = form.msg
	} else if errors.Is(err, ErrNonCanonicalToken) {
		meaning = ErrNonCanonicalToken.Error()
	}
	msg := "clustertrust: " + reason + ": " + meaning
	if object != "" {
		msg += " (OpenIDConnect " + object + ")"
	}
	return msg + "; `webhook explain` shows why"
}

// formError is a refusal of the token's form (empty, too long) whose text names no part of the token.
type formError struct{ msg string }

func (e *formError) Error() string        { return e.msg }
func (e *formError) Is(target error) bool { return target == ErrMalformedToken }

// ReasonOf classifies the error of a refused review into one of Reasons.
func ReasonOf(err error) string { return reasonOf(err) }

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
	{"parse uid claim", ReasonClaimMapping}, // a uid claim, which objects do not set today
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
