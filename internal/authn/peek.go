package authn

import (
	"bytes"
	"context"
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
	for i := 0; i < len(token); i++ {
		switch base64URLValues[token[i]] {
		case notBase64URL:
			return false
		case dot:
			if !canonicalTail(token[segment:i]) {
				return false
			}
			dots++
			segment = i + 1
		}
	}
	return canonicalTail(token[segment:]) && dots == 2
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
	if v := base64URLValues[c]; v < 64 {
		return int(v)
	}
	return -1
}

// Markers in base64URLValues beside the alphabet's values 0-63.
const (
	dot          = 0xFE
	notBase64URL = 0xFF
)

// base64URLValues maps a byte to its value in the base64url alphabet, dot for '.', and notBase64URL
// for anything else: one lookup per byte of a token, which canonical reads whole on every review.
var base64URLValues = func() (t [256]byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range t {
		t[i] = notBase64URL
	}
	for i := range len(alphabet) {
		t[alphabet[i]] = byte(i)
	}
	t['.'] = dot
	return t
}()

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
	var members [8]claimPair
	if idx, indexed := indexInto(members[:0], header); indexed {
		return idx.kid()
	}
	return headerKID(header)
}

// headerKID reads the kid of a decoded header as go-jose's decoder would find it: the exact member
// "kid" of a map of the header's members, the last of that name.
func headerKID(header []byte) (kid string, ok bool) {
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

// kid is headerKID of an indexed header, without building the map: the index holds no two keys equal
// but for case, so at most one member is named exactly "kid".
func (idx claimsIndex) kid() (string, bool) {
	for _, m := range idx {
		if string(m.key) == "kid" {
			var kid string
			err := unmarshalValue(m.value, &kid)
			return kid, err == nil && kid != ""
		}
	}
	return "", false
}

// PeekIssuer returns the iss claim of a compact JWS WITHOUT verifying it.
//
// SECURITY: the value is untrusted. It is only used to choose which issuer entry verifies the token; the
// entry's verifier then checks the signature with that issuer's keys and checks iss again, so a forged iss
// can at worst select a verifier that rejects the token. The decode is bounded by MaxTokenBytesLimit.
func PeekIssuer(token string) (string, error) {
	p := peekToken(token)
	return p.iss, p.err
}

// peekedToken is what a review reads of its token before verifying it, read once and shared by the
// admission, the routing and the fast path (see reviewToken): the decoded payload, its claims index
// and PeekIssuer's answer. Like that answer, all of it is untrusted until a signature over the same
// bytes is verified.
type peekedToken struct {
	token string
	// payload is the decoded payload segment, nil when the token is not three segments.
	payload []byte
	// claims indexes a plain payload (claims.go); indexed reports whether it does.
	claims  claimsIndex
	indexed bool
	// members hold the claims index of a payload of up to as many claims (a ServiceAccount token has
	// about ten), allocated with the peek.
	members [16]claimPair
	iss     string
	err     error // PeekIssuer's error
}

// peekToken is PeekIssuer, keeping what it decoded.
func peekToken(token string) *peekedToken {
	switch {
	case len(token) == 0 || len(token) > MaxTokenBytesLimit:
		return &peekedToken{token: token, err: ErrMalformedToken}
	case !canonical(token):
		return &peekedToken{token: token, err: ErrNonCanonicalToken}
	}
	return peekCanonical(token)
}

// peekCanonical is peekToken of a token known to be canonical and within MaxTokenBytesLimit: the
// handler has checked its form (checkForm) and need not read it once more for that.
func peekCanonical(token string) *peekedToken {
	p := &peekedToken{token: token}
	first := strings.IndexByte(token, '.')
	if first < 0 {
		p.err = ErrMalformedToken
		return p
	}
	rest := token[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 || strings.IndexByte(rest[second+1:], '.') >= 0 {
		p.err = ErrMalformedToken // not three segments: JWE (five) or garbage
		return p
	}
	payload, err := base64.RawURLEncoding.DecodeString(rest[:second])
	if err != nil {
		p.err = ErrMalformedToken
		return p
	}
	p.payload = payload
	var iss *string
	if p.claims, p.indexed = indexInto(p.members[:0], payload); p.indexed {
		iss, err = p.claims.issuer()
	} else {
		var claims struct {
			Issuer *string `json:"iss"`
		}
		err = json.Unmarshal(payload, &claims)
		iss = claims.Issuer
	}
	if err != nil || iss == nil || *iss == "" {
		p.err = ErrMalformedToken
		return p
	}
	p.iss = *iss
	if p.iss == legacyGoogleIssuer {
		// Google's ID tokens may name their issuer without the scheme; OpenID Connect Core (section
		// 15.6.2) and k8s.io/apiserver's authenticator treat it as https://accounts.google.com.
		p.iss = googleIssuer
	}
	return p
}

// claimsOf returns the claims index of payload: the peek's when payload is the payload it read (the
// verifier's payload is the same segment decoded again), else a new one; ok is false when payload is
// not plain.
func (p *peekedToken) claimsOf(payload []byte) (claimsIndex, bool) {
	if p != nil && p.indexed && bytes.Equal(payload, p.payload) {
		return p.claims, true
	}
	return indexClaims(payload)
}

// reviewToken is the review's peeked token: the one the review's info holds when it is of token, else a
// new one, which the info then holds (the admission peeks first, the routing and the fast path reuse
// it). Outside a review (the router used on its own) it peeks afresh.
func reviewToken(ctx context.Context, token string) *peekedToken {
	info := reviewInfoOf(ctx)
	if info != nil && info.token != nil && info.token.token == token {
		return info.token
	}
	p := peekToken(token)
	if info != nil {
		info.token = p
	}
	return p
}
