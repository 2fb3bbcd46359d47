// Package testissuer is an OIDC issuer for tests and benchmarks: a real HTTPS server on loopback that
// serves a discovery document and a JWKS of generated keys, and mints tokens signed by them. Faults
// (failures, delays, a wrong issuer) can be switched on to test resilience.
package testissuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Key is one signing key of the issuer.
type Key struct {
	KID     string
	Alg     jose.SignatureAlgorithm
	Private crypto.Signer
}

// Issuer is a loopback OIDC issuer.
type Issuer struct {
	URL    string
	Server *httptest.Server

	mu          sync.Mutex
	keys        []Key // published
	signing     Key   // used by Mint
	claimIssuer string
	failing     bool
	delay       time.Duration

	// DiscoveryFetches and JWKSFetches count requests served.
	DiscoveryFetches atomic.Int64
	JWKSFetches      atomic.Int64
}

// New starts an issuer with one key of alg (RS256 or ES256).
func New(alg jose.SignatureAlgorithm) (*Issuer, error) {
	iss := &Issuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", iss.serveDiscovery)
	mux.HandleFunc("/jwks", iss.serveJWKS)
	iss.Server = httptest.NewTLSServer(mux)
	iss.URL = iss.Server.URL
	iss.claimIssuer = iss.URL
	key, err := NewKey(alg)
	if err != nil {
		iss.Close()
		return nil, err
	}
	iss.keys = []Key{key}
	iss.signing = key
	return iss, nil
}

// NewKey generates a key for alg with a random kid.
func NewKey(alg jose.SignatureAlgorithm) (Key, error) {
	var signer crypto.Signer
	var err error
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	default:
		return Key{}, fmt.Errorf("unsupported algorithm %s", alg)
	}
	if err != nil {
		return Key{}, err
	}
	kid := make([]byte, 8)
	_, _ = rand.Read(kid)
	return Key{KID: fmt.Sprintf("%x", kid), Alg: alg, Private: signer}, nil
}

// Close stops the server.
func (i *Issuer) Close() { i.Server.Close() }

// CAPEM is the PEM of the certificate the server presents, for caBundle.
func (i *Issuer) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.Server.Certificate().Raw})
}

// SigningKey returns the key Mint signs with.
func (i *Issuer) SigningKey() Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.signing
}

// Rotate publishes a new key of the same algorithm next to the old ones and signs with it from now on.
func (i *Issuer) Rotate() (Key, error) {
	i.mu.Lock()
	alg := i.signing.Alg
	i.mu.Unlock()
	key, err := NewKey(alg)
	if err != nil {
		return Key{}, err
	}
	i.mu.Lock()
	i.keys = append(i.keys, key)
	i.signing = key
	i.mu.Unlock()
	return key, nil
}

// SetSigningKey signs with key without publishing it (a forger's key).
func (i *Issuer) SetSigningKey(key Key) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.signing = key
}

// SetFailing makes discovery and JWKS answer 500 while on.
func (i *Issuer) SetFailing(on bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.failing = on
}

// SetDelay makes discovery and JWKS answer only after d.
func (i *Issuer) SetDelay(d time.Duration) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.delay = d
}

// SetDiscoveryIssuer changes the issuer the discovery document claims.
func (i *Issuer) SetDiscoveryIssuer(iss string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.claimIssuer = iss
}

// JWKS returns the published key set as JSON.
func (i *Issuer) JWKS() []byte {
	i.mu.Lock()
	defer i.mu.Unlock()
	set := jose.JSONWebKeySet{}
	for _, k := range i.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.KID, Algorithm: string(k.Alg), Use: "sig"})
	}
	b, _ := json.Marshal(set)
	return b
}

func (i *Issuer) fault(w http.ResponseWriter, r *http.Request) bool {
	i.mu.Lock()
	failing, delay := i.failing, i.delay
	i.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return true
		}
	}
	if failing {
		http.Error(w, "issuer is failing", http.StatusInternalServerError)
		return true
	}
	return false
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	i.DiscoveryFetches.Add(1)
	if i.fault(w, r) {
		return
	}
	i.mu.Lock()
	doc := map[string]any{
		"issuer":                                i.claimIssuer,
		"jwks_uri":                              i.URL + "/jwks",
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(i.signing.Alg)},
	}
	i.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(doc)
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	i.JWKSFetches.Add(1)
	if i.fault(w, r) {
		return
	}
	// Like kube-apiserver, refuse a client that does not accept the JWK Set media type.
	if !strings.Contains(r.Header.Get("Accept"), "application/jwk-set+json") {
		http.Error(w, "not acceptable", http.StatusNotAcceptable)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(i.JWKS())
}

// Claims are the claims of a minted token; Mint fills iss, iat, nbf and exp when absent.
type Claims map[string]any

// ServiceAccountClaims returns the claims of a projected ServiceAccount token for audience.
func ServiceAccountClaims(namespace, name, audience string) Claims {
	return Claims{
		"sub": "system:serviceaccount:" + namespace + ":" + name,
		"aud": []string{audience},
		"jti": "jti-" + name,
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"serviceaccount": map[string]any{"name": name, "uid": "uid-" + name},
			"pod":            map[string]any{"name": name + "-pod", "uid": "uid-pod-" + name},
			"node":           map[string]any{"name": "node-1", "uid": "uid-node-1"},
		},
	}
}

// Mint signs claims with the current signing key.
func (i *Issuer) Mint(claims Claims) (string, error) {
	i.mu.Lock()
	key := i.signing
	url := i.URL
	i.mu.Unlock()
	return MintFor(key, url, claims)
}

// MintFor signs claims with key as issuer iss would: iss, iat and nbf now, exp in an hour, each
// overridden by claims (a nil value removes the claim).
func MintFor(key Key, iss string, claims Claims) (string, error) {
	c := Claims{}
	now := time.Now()
	c["iss"] = iss
	c["iat"] = now.Unix()
	c["nbf"] = now.Unix()
	c["exp"] = now.Add(time.Hour).Unix()
	for k, v := range claims {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return Sign(key, c, nil)
}

// Sign signs claims with key, adding extra protected headers.
func Sign(key Key, claims Claims, headers map[jose.HeaderKey]any) (string, error) {
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for k, v := range headers {
		opts = opts.WithHeader(k, v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: key.Alg, Key: jose.JSONWebKey{Key: key.Private, KeyID: key.KID}}, opts)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}
