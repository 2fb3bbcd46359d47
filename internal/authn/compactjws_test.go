package authn

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// jwsKeys are the keys the compact JWS is compared under: RSA, P-256 and P-384, each with a kid, the
// public halves as a key set holds them and the private ones to sign with.
type jwsKeys struct {
	rsa        *rsa.PrivateKey
	p256, p384 *ecdsa.PrivateKey
	public     []jose.JSONWebKey
}

var (
	jwsKeysOnce sync.Once
	jwsKeysVal  *jwsKeys
)

func testJWSKeys(tb testing.TB) *jwsKeys {
	tb.Helper()
	jwsKeysOnce.Do(func() {
		k := &jwsKeys{}
		var err error
		if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if k.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if k.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		k.public = []jose.JSONWebKey{
			{Key: &k.rsa.PublicKey, KeyID: "r"}, {Key: &k.p256.PublicKey, KeyID: "e"}, {Key: &k.p384.PublicKey, KeyID: "e384"},
		}
		jwsKeysVal = k
	})
	return jwsKeysVal
}

// sign signs header.payload (raw JSON, encoded here) with the key fit for alg, or returns a junk
// signature when none fits.
func (k *jwsKeys) sign(tb testing.TB, alg, header, payload string) string {
	tb.Helper()
	input := b64([]byte(header)) + "." + b64([]byte(payload))
	var sig []byte
	var err error
	ec := func(priv *ecdsa.PrivateKey, h crypto.Hash, size int) []byte {
		hasher := h.New()
		hasher.Write([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, priv, hasher.Sum(nil))
		if err != nil {
			tb.Fatal(err)
		}
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out
	}
	switch alg {
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, k.rsa, crypto.SHA256, digest(crypto.SHA256, input))
	case "RS512":
		sig, err = rsa.SignPKCS1v15(rand.Reader, k.rsa, crypto.SHA512, digest(crypto.SHA512, input))
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, k.rsa, crypto.SHA256, digest(crypto.SHA256, input), nil)
	case "ES256":
		sig = ec(k.p256, crypto.SHA256, 32)
	case "ES384":
		sig = ec(k.p384, crypto.SHA384, 48)
	default:
		sig = []byte("junk")
	}
	if err != nil {
		tb.Fatal(err)
	}
	return input + "." + b64(sig)
}

// checkCompactJWS requires parseCompact, when it reads token at all, to read what go-jose's
// ParseSignedCompact reads (a header the fast path finds usual, the same kid) and compactJWS.verify to
// give go-jose's Verify answer, payload and all, under every key. It reports whether it read it.
func checkCompactJWS(tb testing.TB, token string, algs []jose.SignatureAlgorithm, keys []jose.JSONWebKey) bool {
	tb.Helper()
	j, ok := parseCompact(peekToken(token), algs)
	if !ok {
		return false
	}
	jws, err := jose.ParseSignedCompact(token, algs)
	if err != nil || unusualHeader(jws) {
		tb.Errorf("token %q: read, but go-jose refuses it (%v) or finds its header unusual", token, err)
		return true
	}
	if kid := jws.Signatures[0].Header.KeyID; kid != j.kid {
		tb.Errorf("token %q: kid %q, go-jose %q", token, j.kid, kid)
	}
	if _, crit := jws.Signatures[0].Protected.ExtraHeaders["crit"]; crit {
		tb.Errorf("token %q: read despite crit", token)
	}
	for i := range keys {
		got, gotErr := j.verify(&keys[i])
		want, wantErr := jws.Verify(&keys[i])
		if (gotErr == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
			tb.Errorf("token %q, key %s: verify %q (%v), go-jose %q (%v)", token, keys[i].KeyID, got, gotErr, want, wantErr)
		}
	}
	return true
}

// TestCompactJWSMatchesGoJose signs a payload under headers of every shape the fast reader must read
// or leave alone, with the key of each algorithm (or a wrong one, or junk), and compares the reader
// and go-jose on each, under every key and two lists of allowed algorithms.
func TestCompactJWSMatchesGoJose(t *testing.T) {
	t.Parallel()
	k := testJWSKeys(t)
	payload := `{"iss":"https://hub.example","sub":"a"}`
	var headers []string
	for _, alg := range []string{"RS256", "RS512", "PS256", "ES256", "ES384", "ES512", "HS256", "none", "EdDSA", "rs256", ""} {
		for _, rest := range []string{
			``, `,"kid":"r"`, `,"kid":"e"`, `,"kid":"e384"`, `,"kid":"unknown"`, `,"kid":""`, `,"typ":"JWT"`,
			`,"kid":"r","typ":"JWT","cty":"x"`, `,"kid":null`, `,"kid":5`, `,"typ":5`, `,"KID":"r"`, `,"Kid":"r","kid":"r"`,
			`,"crit":["exp"],"exp":1`, `,"b64":false`, `,"jwk":{"kty":"oct","k":"AA"}`, `,"nonce":"n"`, `,"x5c":[]`,
			`,"kid":"r","kid":"e"`, `,"kid":"\u0072"`, `,"zip":"DEF"`, `,"extra":"x"`,
		} {
			headers = append(headers, fmt.Sprintf(`{"alg":%q%s}`, alg, rest))
		}
	}
	headers = append(headers, `{"kid":"r"}`, `{}`, `null`, `[]`, `{"alg":"RS256"} `, ` {"alg":"ES256","kid":"e"}`,
		`{"alg":"RS256","alg":"ES256"}`, `{"ALG":"RS256"}`, `{"alg":["RS256"]}`, `{"alg":"RS256","kid":"r"}x`)
	algSets := [][]jose.SignatureAlgorithm{
		{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512},
		{jose.ES256},
	}
	read := 0
	for _, h := range headers {
		for _, signAs := range []string{"RS256", "RS512", "PS256", "ES256", "ES384", "junk"} {
			tok := k.sign(t, signAs, h, payload)
			for _, algs := range algSets {
				if checkCompactJWS(t, tok, algs, k.public) {
					read++
				}
			}
		}
	}
	// Segments the canonical form refuses are never read: the peek refuses them first.
	valid := k.sign(t, "RS256", `{"alg":"RS256","kid":"r"}`, payload)
	for _, tok := range []string{valid + "=", valid[:len(valid)-1] + "B", "." + valid} {
		if _, ok := parseCompact(peekToken(tok), algSets[0]); ok {
			t.Errorf("token %q: read, though not canonical", tok)
		}
	}
	if read < len(headers)/2 {
		t.Fatalf("only %d tokens were read: the comparison proves little", read)
	}
	t.Logf("%d header shapes, %d readings compared under %d keys", len(headers), read, len(k.public))
}

// checkCompactHeader signs a fixed payload under header (raw JSON, as the fuzzer writes it) with the
// P-256 key and compares the reader and go-jose on it; the fuzzer explores headers this way, where a
// whole token it writes would never carry a valid signature.
func checkCompactHeader(tb testing.TB, header string) {
	tb.Helper()
	k := testJWSKeys(tb)
	tok := k.sign(tb, "ES256", header, `{"iss":"https://hub.example","sub":"a"}`)
	checkCompactJWS(tb, tok, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.ES384, jose.PS256}, k.public[:2]) // P-384 is slow: the unit test covers it
}
