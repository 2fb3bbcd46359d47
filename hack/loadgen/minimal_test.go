package main

import (
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// TestMinimalVerifierRefusesWhatItShould: the second ceiling accepts a good RS256 or ES256 token and
// refuses a forged signature, an unknown kid, an unknown issuer, a wrong audience, an expired token, a
// token not valid yet and an algorithm its key does not have; otherwise its numbers would flatter it.
func TestMinimalVerifierRefusesWhatItShould(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256} {
		t.Run(string(alg), func(t *testing.T) {
			iss, err := testissuer.New(alg)
			if err != nil {
				t.Fatal(err)
			}
			defer iss.Close()
			v, err := newMinimalVerifier([]string{iss.URL}, audience, iss.CAPEM())
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			mint := func(c testissuer.Claims) string {
				tok, err := iss.Mint(c)
				if err != nil {
					t.Fatal(err)
				}
				return tok
			}
			good := mint(testissuer.ServiceAccountClaims("tenant-a", "reconciler", audience))
			if sub, err := v.verify(good, now); err != nil || sub != "system:serviceaccount:tenant-a:reconciler" {
				t.Fatalf("good token: %q %v", sub, err)
			}
			forger, _ := testissuer.NewKey(alg)
			forger.KID = iss.SigningKey().KID
			forged, _ := testissuer.MintFor(forger, iss.URL, testissuer.Claims{"sub": "x", "aud": audience})
			other, _ := testissuer.NewKey(alg)
			unknownKID, _ := testissuer.MintFor(other, iss.URL, testissuer.Claims{"sub": "x", "aud": audience})
			stranger, _ := testissuer.MintFor(other, "https://stranger.example", testissuer.Claims{"sub": "x", "aud": audience})
			otherAlg := jose.ES256
			if alg == jose.ES256 {
				otherAlg = jose.RS256
			}
			wrongAlgKey, _ := testissuer.NewKey(otherAlg)
			wrongAlgKey.KID = iss.SigningKey().KID
			wrongAlg, _ := testissuer.MintFor(wrongAlgKey, iss.URL, testissuer.Claims{"sub": "x", "aud": audience})
			for name, tok := range map[string]string{
				"forged signature": forged,
				"unknown kid":      unknownKID,
				"unknown issuer":   stranger,
				"wrong audience":   mint(testissuer.Claims{"sub": "x", "aud": "https://elsewhere.example"}),
				"expired":          mint(testissuer.Claims{"sub": "x", "aud": audience, "exp": now.Add(-time.Minute).Unix(), "iat": now.Add(-time.Hour).Unix()}),
				"not yet valid":    mint(testissuer.Claims{"sub": "x", "aud": audience, "nbf": now.Add(time.Hour).Unix()}),
				"other algorithm":  wrongAlg,
				"not a JWS":        "a.b",
			} {
				if sub, err := v.verify(tok, now); err == nil {
					t.Errorf("%s: accepted as %q", name, sub)
				}
			}
		})
	}
}
