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

// Google's issuer, and the form without a scheme that its older tokens carry.
const (
	googleIssuer       = "https://accounts.google.com"
	legacyGoogleIssuer = "accounts.google.com"
)

// MaxTokenBytesLimit is the most --max-token-bytes may allow, and the hard bound of PeekIssuer.
const MaxTokenBytesLimit = 64 << 10

// ErrMalformedToken is returned for anything that is not a compact JWS with a string iss claim.
var ErrMalformedToken = errors.New("token is not a JWT with an iss claim")

// ErrNonCanonicalToken is returned for a token with a byte outside the base64url alphabet and its two
// dots. Go's base64 decoders skip CR and LF, so without this check "h.\np.s" would verify as the
// token "h.p.s": two strings, one identity, and two cache keys for it.
var ErrNonCanonicalToken = errors.New("token is not a compact JWS: only base64url characters and two dots are allowed")

// canonical reports whether token holds only base64url characters and exactly two dots.
func canonical(token string) bool {
	dots := 0
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return dots == 2
}

// PeekIssuer returns the iss claim of a compact JWS WITHOUT verifying it.
//
// SECURITY: the value is untrusted. It is only used to choose which issuer entry verifies the token; the
// entry's verifier then checks the signature with that issuer's keys and checks iss again, so a forged iss
// can at worst select a verifier that rejects the token. The decode is bounded by MaxTokenBytesLimit.
func PeekIssuer(token string) (string, error) {
	if len(token) == 0 || len(token) > MaxTokenBytesLimit {
		return "", ErrMalformedToken
	}
	if !canonical(token) {
		return "", ErrNonCanonicalToken
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
	if *claims.Issuer == legacyGoogleIssuer {
		// Google's ID tokens may name their issuer without the scheme; OpenID Connect Core (section
		// 15.6.2) and k8s.io/apiserver's authenticator treat it as https://accounts.google.com.
		return googleIssuer, nil
	}
	return *claims.Issuer, nil
}
