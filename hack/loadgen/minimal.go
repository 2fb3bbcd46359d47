package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"time"
)

// minimalVerifier is the second ceiling: a stdlib-only TokenReview server that does what every token
// webhook must and nothing more. It decodes the review with encoding/json, splits the JWS, looks the
// issuer up by iss and the key by kid, checks one RS256 or ES256 signature and iss, aud, exp and nbf,
// and answers prefix + sub. No groups, extras, cache, metrics, limits or policy. It must refuse what it
// should (minimal_test.go), or its numbers would flatter it.
type minimalVerifier struct {
	audience string
	// keys are each issuer's public keys by kid, fetched once at start (discovery, then JWKS).
	keys map[string]map[string]crypto.PublicKey
}

// newMinimalVerifier fetches each issuer's keys through its discovery document, trusting caPEM.
func newMinimalVerifier(issuers []string, audience string, caPEM []byte) (*minimalVerifier, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	v := &minimalVerifier{audience: audience, keys: map[string]map[string]crypto.PublicKey{}}
	for _, iss := range issuers {
		var doc struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := getJSON(hc, strings.TrimSuffix(iss, "/")+"/.well-known/openid-configuration", &doc); err != nil {
			return nil, err
		}
		var set struct {
			Keys []struct {
				Kty, Kid, Crv, N, E, X, Y string
			} `json:"keys"`
		}
		if err := getJSON(hc, doc.JWKSURI, &set); err != nil {
			return nil, err
		}
		keys := map[string]crypto.PublicKey{}
		for _, k := range set.Keys {
			switch k.Kty {
			case "RSA":
				n, e := b64int(k.N), b64int(k.E)
				if n == nil || e == nil {
					return nil, fmt.Errorf("%s: bad RSA key %s", iss, k.Kid)
				}
				keys[k.Kid] = &rsa.PublicKey{N: n, E: int(e.Int64())}
			case "EC":
				if k.Crv != "P-256" {
					continue
				}
				x, errX := base64.RawURLEncoding.DecodeString(k.X)
				y, errY := base64.RawURLEncoding.DecodeString(k.Y)
				if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
					return nil, fmt.Errorf("%s: bad EC key %s", iss, k.Kid)
				}
				pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
				if err != nil {
					return nil, fmt.Errorf("%s: bad EC key %s: %w", iss, k.Kid, err)
				}
				keys[k.Kid] = pub
			}
		}
		v.keys[iss] = keys
	}
	return v, nil
}

func getJSON(hc *http.Client, url string, into any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil) //nolint:noctx // start-up fetch from a loopback test issuer
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(into)
}

func b64int(s string) *big.Int {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil
	}
	return new(big.Int).SetBytes(b)
}

func (v *minimalVerifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "only POST is allowed", http.StatusMethodNotAllowed)
		return
	}
	var review struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			Token string `json:"token"`
		} `json:"spec"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&review); err != nil || review.Kind != "TokenReview" {
		http.Error(w, "not a TokenReview", http.StatusBadRequest)
		return
	}
	type user struct {
		Username string `json:"username"`
	}
	type status struct {
		Authenticated bool   `json:"authenticated"`
		User          *user  `json:"user,omitempty"`
		Error         string `json:"error,omitempty"`
	}
	out := struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Status     status `json:"status"`
	}{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"}
	if sub, err := v.verify(review.Spec.Token, time.Now()); err != nil {
		out.Status.Error = err.Error()
	} else {
		out.Status = status{Authenticated: true, User: &user{Username: "hub:" + sub}}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// verify checks token and returns its sub.
func (v *minimalVerifier) verify(token string, now time.Time) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("not a compact JWS")
	}
	var header struct{ Alg, Kid string }
	if err := decodeSegment(parts[0], &header); err != nil {
		return "", err
	}
	var claims struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp *float64        `json:"exp"`
		Nbf *float64        `json:"nbf"`
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return "", err
	}
	keys, ok := v.keys[claims.Iss]
	if !ok {
		return "", errors.New("unknown issuer")
	}
	key, ok := keys[header.Kid]
	if !ok {
		return "", errors.New("unknown key")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", errors.New("bad signature encoding")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch k := key.(type) {
	case *rsa.PublicKey:
		if header.Alg != "RS256" || rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) != nil {
			return "", errors.New("bad signature")
		}
	case *ecdsa.PublicKey:
		if header.Alg != "ES256" || len(sig) != 64 ||
			!ecdsa.Verify(k, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return "", errors.New("bad signature")
		}
	default:
		return "", errors.New("unsupported key")
	}
	if !audienceHas(claims.Aud, v.audience) {
		return "", errors.New("wrong audience")
	}
	unix := float64(now.Unix())
	if claims.Exp == nil || *claims.Exp <= unix {
		return "", errors.New("expired")
	}
	if claims.Nbf != nil && *claims.Nbf > unix+60 {
		return "", errors.New("not yet valid")
	}
	if claims.Sub == "" {
		return "", errors.New("no sub")
	}
	return claims.Sub, nil
}

func decodeSegment(seg string, into any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return errors.New("bad segment encoding")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	return d.Decode(into)
}

func audienceHas(raw json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(raw, &many) != nil {
		return false
	}
	for _, a := range many {
		if a == want {
			return true
		}
	}
	return false
}
