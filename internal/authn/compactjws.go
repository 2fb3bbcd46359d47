package authn

// The fast path's own reading of a compact JWS. go-jose parses every token's header into a map of raw
// JSON, decodes each member again, builds its header structs, and on Verify decodes the header once
// more and base64-encodes the header and payload again to rebuild the signing input: a third of a
// review's allocations. For the header nearly every token carries — a plain object of alg, kid and
// optionally typ and cty, all strings — parseCompact reads what go-jose would and compactJWS.verify
// checks the signature as go-jose's verifiers do (the same hash, the same crypto/rsa and crypto/ecdsa
// calls, the same checks of curve and signature size). Anything else goes to go-jose.
// TestCompactJWSMatchesGoJose and FuzzPeekIssuer hold the two to the same answers.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"math/big"
	"slices"
	"strings"
	"sync"

	"github.com/go-jose/go-jose/v4"
)

// compactJWS is a compact JWS with a plain header (see parseCompact).
type compactJWS struct {
	alg jose.SignatureAlgorithm
	kid string
	// input is the signing input: the header and payload segments as the token has them, which in a
	// canonical token are what go-jose rebuilds by encoding the decoded segments again.
	input   string
	payload []byte
	sig     []byte
}

// parseCompact reads pt's token as go-jose's ParseSignedCompact would, given algs, when its header is a
// plain object (indexClaims) whose members are exactly "alg" (one of algs), "kid", "typ" or "cty", each
// a plain string: go-jose then parses it without error, and the fast path's unusualHeader finds nothing
// unusual. ok is false for anything else, and go-jose decides. The token must have passed the peek
// (pt.err nil): it is canonical, so decoding its segments and encoding them again gives them back.
func parseCompact(pt *peekedToken, algs []jose.SignatureAlgorithm) (*compactJWS, bool) {
	if pt == nil || pt.err != nil || pt.payload == nil {
		return nil, false
	}
	token := pt.token
	first, last := strings.IndexByte(token, '.'), strings.LastIndexByte(token, '.')
	if first < 0 || first == last {
		return nil, false
	}
	header, err := base64.RawURLEncoding.DecodeString(token[:first])
	if err != nil {
		return nil, false
	}
	var members [8]claimPair
	idx, ok := indexInto(members[:0], header)
	if !ok {
		return nil, false
	}
	j := &compactJWS{input: token[:last], payload: pt.payload}
	for _, m := range idx {
		s, ok := plainString(m.value)
		if !ok {
			return nil, false
		}
		switch string(m.key) {
		case "alg":
			j.alg = jose.SignatureAlgorithm(s)
		case "kid":
			j.kid = s
		case "typ", "cty":
		default:
			return nil, false
		}
	}
	if !slices.Contains(algs, j.alg) || !slices.Contains(AllSigningAlgs, string(j.alg)) {
		return nil, false
	}
	if j.sig, err = base64.RawURLEncoding.DecodeString(token[last+1:]); err != nil {
		return nil, false
	}
	return j, true
}

// errCompactSignature is compactJWS.verify's refusal; the key set reports a refused signature as
// ErrBadSignature or an unknown key whatever the verifier said, as it does go-jose's.
var errCompactSignature = errors.New("signature does not verify")

// verify checks the signature with key as go-jose's Verify does for this header: the verifier of the
// key's type, given the header's alg.
func (j *compactJWS) verify(key *jose.JSONWebKey) ([]byte, error) {
	if key == nil {
		return nil, errCompactSignature
	}
	switch pub := key.Key.(type) {
	case *rsa.PublicKey:
		if pub != nil && verifyRSA(pub, j.alg, j.input, j.sig) {
			return j.payload, nil
		}
	case *ecdsa.PublicKey:
		if pub != nil && verifyEC(pub, j.alg, j.input, j.sig) {
			return j.payload, nil
		}
	}
	// Any other key type fails for these algorithms in go-jose too.
	return nil, errCompactSignature
}

// verifyRSA is go-jose's rsaEncrypterVerifier.verifyPayload.
func verifyRSA(pub *rsa.PublicKey, alg jose.SignatureAlgorithm, input string, sig []byte) bool {
	var h crypto.Hash
	switch alg {
	case jose.RS256, jose.PS256:
		h = crypto.SHA256
	case jose.RS384, jose.PS384:
		h = crypto.SHA384
	case jose.RS512, jose.PS512:
		h = crypto.SHA512
	default:
		return false
	}
	hashed := digest(h, input)
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512:
		return rsa.VerifyPKCS1v15(pub, h, hashed, sig) == nil
	default:
		return rsa.VerifyPSS(pub, h, hashed, sig, nil) == nil
	}
}

// verifyEC is go-jose's ecEncrypterVerifier.verifyPayload: the curve must be the algorithm's, and the
// signature r||s of twice its size.
func verifyEC(pub *ecdsa.PublicKey, alg jose.SignatureAlgorithm, input string, sig []byte) bool {
	var keySize int
	var h crypto.Hash
	var curve elliptic.Curve
	switch alg {
	case jose.ES256:
		keySize, h, curve = 32, crypto.SHA256, elliptic.P256()
	case jose.ES384:
		keySize, h, curve = 48, crypto.SHA384, elliptic.P384()
	case jose.ES512:
		keySize, h, curve = 66, crypto.SHA512, elliptic.P521()
	default:
		return false
	}
	if pub.Curve != curve || len(sig) != 2*keySize {
		return false
	}
	r := new(big.Int).SetBytes(sig[:keySize])
	s := new(big.Int).SetBytes(sig[keySize:])
	return ecdsa.Verify(pub, digest(h, input), r, s)
}

// signingInputs are buffers for hashing a signing input held as a string: the hash takes bytes, and a
// token's are a kilobyte or more.
var signingInputs = sync.Pool{New: func() any { return new([]byte) }}

// digest hashes s with h.
func digest(h crypto.Hash, s string) []byte {
	buf := signingInputs.Get().(*[]byte)
	*buf = append((*buf)[:0], s...)
	hasher := h.New()
	_, _ = hasher.Write(*buf)
	if cap(*buf) <= MaxTokenBytesLimit {
		clear(*buf) // the signing input is most of a token; keep none of it in the pool
		signingInputs.Put(buf)
	}
	return hasher.Sum(nil)
}
