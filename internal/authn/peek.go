package authn

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// MaxTokenBytes is the default bound on a bearer token (--max-token-bytes). Kubernetes ServiceAccount
// tokens are about 1 KiB and rich OIDC ID tokens a few KiB; 16 KiB leaves room for large group claims
// while keeping a single review's decode work small.
const MaxTokenBytes = 16 << 10

// MaxTokenBytesLimit is the most --max-token-bytes may allow, and the hard bound of PeekIssuer.
const MaxTokenBytesLimit = 64 << 10

// ErrMalformedToken is returned for anything that is not a compact JWS with a string iss claim.
var ErrMalformedToken = errors.New("token is not a JWT with an iss claim")

// PeekIssuer returns the iss claim of a compact JWS WITHOUT verifying it.
//
// SECURITY: the value is untrusted. It is only used to choose which issuer entry verifies the token; the
// entry's verifier then checks the signature with that issuer's keys and checks iss again, so a forged iss
// can at worst select a verifier that rejects the token. The decode is bounded by MaxTokenBytesLimit.
func PeekIssuer(token string) (string, error) {
	if len(token) == 0 || len(token) > MaxTokenBytesLimit {
		return "", ErrMalformedToken
	}
	first := strings.IndexByte(token, '.')
	if first < 0 {
		return "", ErrMalformedToken
	}
	rest := token[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 || strings.IndexByte(rest[second+1:], '.') >= 0 {
		return "", ErrMalformedToken // not three segments: JWE (five) or garbage
	}
	payload, err := base64.RawURLEncoding.DecodeString(rest[:second])
	if err != nil {
		return "", ErrMalformedToken
	}
	var claims struct {
		Issuer *string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Issuer == nil || *claims.Issuer == "" {
		return "", ErrMalformedToken
	}
	return *claims.Issuer, nil
}
