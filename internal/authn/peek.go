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

// ErrNonCanonicalToken is returned for a token that is not canonical (see canonical). Go's base64
// decoders skip CR and LF and ignore unused bits, so without this check "h.\np.s" would verify as the
// token "h.p.s": two strings, one identity, and two cache keys for it.
var ErrNonCanonicalToken = errors.New("token is not a compact JWS in canonical form: three base64url segments without padding, joined by two dots")

// canonical reports whether token is three segments of canonical unpadded base64url joined by two dots:
// only the alphabet's characters, no segment of a length that encodes no whole byte, and no bits set
// in a last character beyond the bytes it encodes. Go's decoders ignore those bits, so without the
// last rule each token would have up to 4,096 spellings that all verify, each a distinct cache key.
func canonical(token string) bool {
	dots, segment := 0, 0
	for i := 0; i <= len(token); i++ {
		if i == len(token) || token[i] == '.' {
			if !canonicalTail(token[segment:i]) {
				return false
			}
			if i < len(token) {
				dots++
				segment = i + 1
			}
			continue
		}
		if base64URLValue(token[i]) < 0 {
			return false
		}
	}
	return dots == 2
}

// canonicalTail checks the length of one segment and the unused low bits of its last character.
func canonicalTail(seg string) bool {
	switch len(seg) % 4 {
	case 1:
		return false
	case 2: // 12 bits for one byte: the last character's low 4 are unused
		return base64URLValue(seg[len(seg)-1])&0xF == 0
	case 3: // 18 bits for two bytes: the low 2 are unused
		return base64URLValue(seg[len(seg)-1])&0x3 == 0
	}
	return true
}

// base64URLValue is c's value in the base64url alphabet, or -1.
func base64URLValue(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '-':
		return 62
	case c == '_':
		return 63
	}
	return -1
}

// peekKID returns the kid of a compact JWS's protected header WITHOUT verifying it; ok is false when
// the header cannot be read or names no key. It reads the exact member "kid", as go-jose does (its
// JSON decoder matches names case-sensitively), not "KID" or "Kid", which encoding/json would take
// for it. Like PeekIssuer's result, it is untrusted: it only chooses what a review is counted against
// (see Router.Admit).
func peekKID(token string) (kid string, ok bool) {
	dot := strings.IndexByte(token, '.')
	if dot < 0 {
		return "", false
	}
	header, err := base64.RawURLEncoding.DecodeString(token[:dot])
	if err != nil {
		return "", false
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(header, &h); err != nil {
		return "", false
	}
	raw, found := h["kid"]
	if !found || json.Unmarshal(raw, &kid) != nil || kid == "" {
		return "", false
	}
	return kid, true
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
