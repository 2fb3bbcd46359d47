package authn

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// adversary is a webhook with two trusted issuers ("hub", RSA and EC keys; "other", EC) and one with
// prefixes disabled ("raw"), served over HTTP exactly as kube-apiserver would call it.
type adversary struct {
	hub, other, raw *testissuer.Issuer
	hubEC           testissuer.Key // second key in hub's set
	attacker        testissuer.Key
	server          *httptest.Server
}

func newAdversary(t *testing.T) *adversary {
	t.Helper()
	a := &adversary{hub: newIssuer(t, jose.RS256), other: newIssuer(t, jose.ES256), raw: newIssuer(t, jose.RS256)}
	var err error
	if a.hubEC, err = testissuer.NewKey(jose.ES256); err != nil {
		t.Fatal(err)
	}
	if a.attacker, err = testissuer.NewKey(jose.RS256); err != nil {
		t.Fatal(err)
	}
	// hub publishes an RSA and an EC key, statically, so that key-type confusion can be attempted.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(a.hub.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	set.Keys = append(set.Keys, jose.JSONWebKey{Key: a.hubEC.Private.Public(), KeyID: a.hubEC.KID, Algorithm: "ES256", Use: "sig"})
	hubJWKS, _ := json.Marshal(set)

	r := NewRouter()
	hub := baseConfig(a.hub)
	hub.StaticJWKS, hub.CABundle = hubJWKS, nil
	hub.GroupsClaim = "groups"
	hub.GroupsPrefix = ""
	r.Store("hub", startEntry(t, hub))
	other := baseConfig(a.other)
	other.Name = "other"
	other.MaxTokenLifetime = 24 * time.Hour
	r.Store("other", startEntry(t, other))
	raw := baseConfig(a.raw)
	raw.Name, raw.UsernamePrefix = "raw", ""
	r.Store("raw", startEntry(t, raw))

	a.server = httptest.NewServer(&Handler{Authenticator: r, Log: logr.Discard()})
	t.Cleanup(a.server.Close)
	return a
}

// review posts token and returns the status; it fails the test on anything but a 200 or a 413.
func (a *adversary) review(t *testing.T, token string) authenticationv1.TokenReviewStatus {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": map[string]any{"token": token}})
	resp, err := http.Post(a.server.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusRequestEntityTooLarge {
		return authenticationv1.TokenReviewStatus{Error: "too large"}
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	var out authenticationv1.TokenReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Status
}

// claims returns valid claims for iss.
func validClaims(iss string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{"iss": iss, "sub": "alice", "aud": testAudience, "iat": now, "nbf": now, "exp": now + 3600}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// craft builds a compact JWS from raw header and payload JSON, signing with key according to alg
// (any alg, including ones the webhook must refuse). It is a test-only token forge.
func craft(t *testing.T, key crypto.Signer, alg, header, payload string) string {
	t.Helper()
	input := b64([]byte(header)) + "." + b64([]byte(payload))
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch k := key.(type) {
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:])
	case *ecdsa.PrivateKey:
		var r, s *big.Int
		if r, s, err = ecdsa.Sign(rand.Reader, k, digest[:]); err == nil {
			sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
		}
	case nil:
	default:
		t.Fatalf("unsupported key %T", key)
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = alg
	return input + "." + b64(sig)
}

func hs(t *testing.T, alg string, secret []byte, header, payload string) string {
	t.Helper()
	input := b64([]byte(header)) + "." + b64([]byte(payload))
	var mac []byte
	switch alg {
	case "HS256":
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(input))
		mac = m.Sum(nil)
	case "HS384":
		m := hmac.New(crypto.SHA384.New, secret)
		m.Write([]byte(input))
		mac = m.Sum(nil)
	}
	return input + "." + b64(mac)
}

func TestAdversarialTokens(t *testing.T) {
	t.Parallel()
	a := newAdversary(t)
	hubKey := a.hub.SigningKey()
	hubKID := hubKey.KID
	hdr := func(alg, kid string, extra ...string) string {
		h := `{"alg":"` + alg + `"`
		if kid != "" {
			h += `,"kid":` + mustJSON(kid)
		}
		for _, e := range extra {
			h += "," + e
		}
		return h + "}"
	}
	valid := mustJSON(validClaims(a.hub.URL))
	pubDER, _ := x509.MarshalPKIXPublicKey(hubKey.Private.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	withClaim := func(k string, v any) string {
		c := validClaims(a.hub.URL)
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return mustJSON(c)
	}
	rawJSON := func(k, v string) string { // a claim whose JSON value is written verbatim
		c := validClaims(a.hub.URL)
		delete(c, k)
		s := mustJSON(c)
		return s[:len(s)-1] + `,"` + k + `":` + v + `}`
	}

	// A spy that counts requests: a jku/x5u/jwk header must never make the webhook fetch anything.
	var spyHits atomic.Int64
	spy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		spyHits.Add(1)
		_, _ = w.Write([]byte(mustJSON(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: a.attacker.Private.Public(), KeyID: a.attacker.KID}}})))
	}))
	t.Cleanup(spy.Close)
	attackerJWK := mustJSON(jose.JSONWebKey{Key: a.attacker.Private.Public(), KeyID: a.attacker.KID})

	good := craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), valid)
	jsonSerialization := func() string {
		parts := strings.Split(good, ".")
		return mustJSON(map[string]string{"protected": parts[0], "payload": parts[1], "signature": parts[2]})
	}()
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)

	tests := []struct {
		name  string
		token string
		// accept is true for the few inputs that are legitimately valid; everything else must be refused.
		accept bool
	}{
		{name: "control: valid token", token: good, accept: true},
		{name: "alg none", token: b64([]byte(`{"alg":"none"}`)) + "." + b64([]byte(valid)) + "."},
		{name: "alg none with kid", token: b64([]byte(hdr("none", hubKID))) + "." + b64([]byte(valid)) + "."},
		{name: "HS256 keyed with the public key PEM", token: hs(t, "HS256", pubPEM, hdr("HS256", hubKID), valid)},
		{name: "HS256 keyed with the public key DER", token: hs(t, "HS256", pubDER, hdr("HS256", hubKID), valid)},
		{name: "HS384 keyed with the public key PEM", token: hs(t, "HS384", pubPEM, hdr("HS384", hubKID), valid)},
		{name: "RS256 header naming the EC key", token: craft(t, hubKey.Private, "RS256", hdr("RS256", a.hubEC.KID), valid)},
		{name: "ES256 header naming the RSA key", token: craft(t, a.hubEC.Private, "ES256", hdr("ES256", hubKID), valid)},
		{name: "another trusted issuer's key with this iss", token: craft(t, a.other.SigningKey().Private, "ES256", hdr("ES256", a.other.SigningKey().KID), valid)},
		{name: "kid absent, untrusted key", token: craft(t, a.attacker.Private, "RS256", hdr("RS256", ""), valid)},
		{name: "kid empty, untrusted key", token: craft(t, a.attacker.Private, "RS256", `{"alg":"RS256","kid":""}`, valid)},
		{name: "kid unknown", token: craft(t, a.attacker.Private, "RS256", hdr("RS256", "unknown"), valid)},
		{name: "kid path-like", token: craft(t, a.attacker.Private, "RS256", hdr("RS256", "../../../../etc/passwd"), valid)},
		{name: "kid 10 KiB", token: craft(t, a.attacker.Private, "RS256", hdr("RS256", strings.Repeat("k", 10<<10)), valid)},
		{name: "trusted kid, untrusted key", token: craft(t, a.attacker.Private, "RS256", hdr("RS256", hubKID), valid)},
		{name: "jku to attacker keys", token: craft(t, a.attacker.Private, "RS256", hdr("RS256", a.attacker.KID, `"jku":"`+spy.URL+`"`), valid)},
		{name: "x5u to attacker", token: craft(t, a.attacker.Private, "RS256", hdr("RS256", a.attacker.KID, `"x5u":"`+spy.URL+`"`), valid)},
		{name: "embedded attacker jwk", token: craft(t, a.attacker.Private, "RS256", hdr("RS256", a.attacker.KID, `"jwk":`+attackerJWK), valid)},
		{name: "crit header", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID, `"crit":["exp"]`), valid)},
		{name: "JWS JSON serialization", token: jsonSerialization},
		{name: "JWE compact", token: "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d"},
		{name: "aud as string", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), withClaim("aud", testAudience)), accept: true},
		{name: "aud as array", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), withClaim("aud", []string{"x", testAudience})), accept: true},
		{name: "aud empty array", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), withClaim("aud", []string{}))},
		{name: "aud missing", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), withClaim("aud", nil))},
		{name: "exp as string", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), withClaim("exp", fmt.Sprint(time.Now().Unix()+3600)))},
		{name: "exp as float", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), withClaim("exp", float64(time.Now().Unix())+3600.5)), accept: true},
		{name: "exp negative", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), withClaim("exp", -1))},
		{name: "exp missing", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), withClaim("exp", nil))},
		{name: "exp far future, within no bound", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), withClaim("exp", time.Now().AddDate(100, 0, 0).Unix())), accept: true},
		{name: "exp far future, beyond maxTokenExpirationSeconds", token: craft(t, a.other.SigningKey().Private, "ES256", hdr("ES256", a.other.SigningKey().KID), func() string {
			c := validClaims(a.other.URL)
			c["exp"] = time.Now().AddDate(100, 0, 0).Unix()
			return mustJSON(c)
		}())},
		{name: "exp huge", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), rawJSON("exp", "1e400"))},
		{name: "nbf as string", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), withClaim("nbf", "0"))},
		{name: "nbf far future", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), withClaim("nbf", time.Now().Unix()+86400))},
		{name: "iat as string", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), withClaim("iat", "now"))},
		{name: "missing sub", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), withClaim("sub", nil))},
		{name: "duplicate alg, last is none", token: craft(t, hubKey.Private, "RS256", `{"alg":"RS256","kid":"`+hubKID+`","alg":"none"}`, valid)},
		{name: "duplicate iss, last is another trusted issuer", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), rawJSON("iss", `"`+a.hub.URL+`","iss":"`+a.other.URL+`"`))},
		{name: "duplicate aud, last is foreign", token: craft(t, hubKey.Private, "RS256", hdr("RS256", hubKID), rawJSON("aud", `"`+testAudience+`","aud":"https://foreign"`))},
		{name: "deeply nested payload", token: craft(t, a.attacker.Private, "RS256", hdr("RS256", hubKID), rawJSON("x", deep))},
		{name: "deeply nested header", token: craft(t, hubKey.Private, "RS256", `{"alg":"RS256","x":`+deep+`}`, valid)},
		{name: "1 MiB token", token: good + strings.Repeat("A", 1<<20)},
		{name: "padded base64url", token: func() string { p := strings.Split(good, "."); return p[0] + "=." + p[1] + "." + p[2] }()},
		{name: "standard base64 alphabet", token: strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/"},
		{name: "trailing data after signature", token: good + "x"},
		{name: "trailing segment", token: good + ".x"},
		{name: "whitespace around token", token: " " + good + " "},
		{name: "sub maps to system: without prefix", token: craft(t, a.raw.SigningKey().Private, "RS256", hdr("RS256", a.raw.SigningKey().KID), func() string {
			c := validClaims(a.raw.URL)
			c["sub"] = "system:admin"
			return mustJSON(c)
		}())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := a.review(t, tt.token)
			if st.Authenticated != tt.accept {
				t.Fatalf("authenticated = %v (user %q, error %q), want %v", st.Authenticated, st.User.Username, st.Error, tt.accept)
			}
			if len(tt.token) > 20 && strings.Contains(st.Error, tt.token[len(tt.token)-20:]) {
				t.Fatalf("error echoes the token: %q", st.Error)
			}
			// The webhook still serves after every input.
			if !a.review(t, good).Authenticated {
				t.Fatal("a valid token is refused after this input")
			}
		})
	}
	if n := spyHits.Load(); n != 0 {
		t.Fatalf("a token header made the webhook fetch %d times from a URL it named", n)
	}
}

func TestAdversarialGroupsInjection(t *testing.T) {
	t.Parallel()
	a := newAdversary(t)
	c := validClaims(a.hub.URL)
	c["groups"] = []string{"dev", "system:masters", "system:nodes"}
	st := a.review(t, craft(t, a.hub.SigningKey().Private, "RS256", `{"alg":"RS256","kid":"`+a.hub.SigningKey().KID+`"}`, mustJSON(c)))
	if !st.Authenticated {
		t.Fatalf("review = %+v", st)
	}
	if slices.ContainsFunc(st.User.Groups, func(g string) bool { return strings.HasPrefix(g, "system:") }) {
		t.Fatalf("groups = %v: a token injected system: groups", st.User.Groups)
	}
	if !slices.Contains(st.User.Groups, "dev") {
		t.Fatalf("groups = %v, want dev kept", st.User.Groups)
	}
}
