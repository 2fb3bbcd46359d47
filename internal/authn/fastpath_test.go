package authn

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// differential holds entries of several flat configurations over one static RSA key, so any payload
// can be signed validly and both paths compared on it.
type differential struct {
	key     testissuer.Key
	issuer  string
	entries map[string]*Entry
}

func newDifferential(tb testing.TB) *differential { return newDifferentialFor(tb, jose.RS256) }

// newDifferentialFor is newDifferential over a key for alg (RS256 or ES256).
func newDifferentialFor(tb testing.TB, alg jose.SignatureAlgorithm) *differential {
	tb.Helper()
	key, err := testissuer.NewKey(alg)
	if err != nil {
		tb.Fatal(err)
	}
	d := &differential{key: key, issuer: "https://hub.example", entries: map[string]*Entry{}}
	jwks := mustJSON(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Private.Public(), KeyID: key.KID, Algorithm: string(alg), Use: "sig"}}})
	base := Config{
		Name: "hub", UID: "uid-hub", Issuer: d.issuer, Audiences: []string{testAudience, "second"}, StaticJWKS: []byte(jwks),
		UsernameClaim: "sub", UsernamePrefix: "hub:", GroupsPrefix: "hub:", ServiceAccountGroups: true,
	}
	configs := map[string]func(*Config){
		"sa":     func(*Config) {},
		"groups": func(c *Config) { c.GroupsClaim = "groups"; c.GroupsPrefix = "" },
		"email":  func(c *Config) { c.UsernameClaim = "email"; c.UsernamePrefix = "" },
		"rules": func(c *Config) {
			c.RequiredClaims = map[string]string{"team": "blue"}
			c.ClaimValidationRules = []apiserver.ClaimValidationRule{{Claim: "env", RequiredValue: "prod"}}
		},
		"extra":    func(c *Config) { c.ExtraClaims = []string{"team", "labels", "n"}; c.MaxTokenLifetime = 2 * time.Hour },
		"noprefix": func(c *Config) { c.UsernamePrefix, c.GroupsPrefix, c.GroupsClaim = "", "", "groups" },
		// One audience is go-oidc's client ID, checked before expiry; several are checked after it.
		"single": func(c *Config) { c.Audiences = []string{testAudience} },
	}
	for name, mutate := range configs {
		cfg := base
		mutate(&cfg)
		e, err := NewEntry(cfg, EntryOptions{Compiler: sharedCompiler, Log: logr.Discard()})
		if err != nil {
			tb.Fatal(err)
		}
		if !e.fast {
			tb.Fatalf("config %s is not served by the fast path", name)
		}
		e.Start()
		tb.Cleanup(e.Close)
		d.entries[name] = e
	}
	return d
}

// sign signs a raw payload with the valid key, under the given raw header (empty: a normal one).
func (d *differential) sign(tb testing.TB, header, payload string) string {
	tb.Helper()
	if header == "" {
		header = fmt.Sprintf(`{"alg":%q,"kid":%q,"typ":"JWT"}`, d.key.Alg, d.key.KID)
	}
	input := b64([]byte(header)) + "." + b64([]byte(payload))
	digest := sha256.Sum256([]byte(input))
	switch priv := d.key.Private.(type) {
	case *rsa.PrivateKey:
		sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, digest[:])
		if err != nil {
			tb.Fatal(err)
		}
		return input + "." + b64(sig)
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, priv, digest[:])
		if err != nil {
			tb.Fatal(err)
		}
		return input + "." + b64(append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...))
	}
	tb.Fatalf("no signer for %T", d.key.Private)
	return ""
}

type outcome struct {
	OK        bool
	Name, UID string
	Groups    []string
	Extra     map[string][]string
	Audiences authenticator.Audiences
	Expiry    time.Time
}

func toOutcome(resp *authenticator.Response, expiry time.Time, err error) outcome {
	if err != nil || resp == nil {
		return outcome{}
	}
	u := resp.User
	return outcome{OK: true, Name: u.GetName(), UID: u.GetUID(), Groups: u.GetGroups(), Extra: u.GetExtra(), Audiences: resp.Audiences, Expiry: expiry}
}

// compare runs both paths of every entry on token and reports a difference. It returns whether the
// fast path decided (rather than handing over).
func (d *differential) compare(tb testing.TB, token string) (decided bool) {
	tb.Helper()
	ctx := authenticator.WithAudiences(context.Background(), authenticator.Audiences{testAudience, "unrelated"})
	for name, e := range d.entries {
		fresp, fexp, ferr := e.authenticateFast(ctx, token)
		gresp, gexp, gerr := e.authenticateGeneral(ctx, token)
		if errors.Is(ferr, errFallback) {
			if gerr != nil && reasonOf(gerr) == ReasonInternal {
				tb.Errorf("config %s: payload %s: the general path's refusal %q fits no reason", name, payloadOf(token), gerr)
			}
			continue
		}
		decided = true
		f, g := toOutcome(fresp, fexp, ferr), toOutcome(gresp, gexp, gerr)
		if !reflect.DeepEqual(f, g) {
			tb.Errorf("config %s: the paths disagree on payload %s\nfast:    %+v (err %v)\ngeneral: %+v (err %v)", name, payloadOf(token), f, ferr, g, gerr)
		}
		// Why matters as much as whether: the reason is what the metric, status.error and explain say.
		if !f.OK && !g.OK {
			fr, gr := reasonOf(ferr), reasonOf(gerr)
			if fr != gr {
				tb.Errorf("config %s: the paths refuse payload %s for different reasons\nfast:    %s (%v)\ngeneral: %s (%v)", name, payloadOf(token), fr, ferr, gr, gerr)
			}
			if gr == ReasonInternal {
				tb.Errorf("config %s: payload %s: refusal %q fits no reason", name, payloadOf(token), gerr)
			}
		}
		if ferr != nil && token != "" && strings.Contains(ferr.Error(), token) {
			tb.Errorf("config %s: the error carries the token", name)
		}
	}
	return decided
}

func payloadOf(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) < 2 {
		return token
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return parts[1]
	}
	return string(b)
}

// differentialPayloads are claims that probe each decision the paths make.
func differentialPayloads(iss string) []string {
	now := time.Now().Unix()
	sa := `"kubernetes.io":{"namespace":"ns","serviceaccount":{"name":"sa","uid":"u1"},"pod":{"name":"p","uid":"u2"},"node":{"name":"n"}}`
	std := func(extra string) string {
		return fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%q,"iat":%d,"nbf":%d,"exp":%d%s}`, iss, testAudience, now, now, now+600, extra)
	}
	return []string{
		std(""),
		std("," + sa),
		std(`,"groups":["a","system:masters","b"]`),
		std(`,"groups":"single"`),
		std(`,"groups":null`),
		std(`,"groups":5`),
		std(`,"groups":["a",null]`),
		std(`,"groups":[1]`),
		std(`,"email":"a@example.com"`),
		std(`,"email":"a@example.com","email_verified":true`),
		std(`,"email":"a@example.com","email_verified":false`),
		std(`,"email":"a@example.com","email_verified":"true"`),
		std(`,"email":5`),
		std(`,"team":"blue","env":"prod"`),
		std(`,"team":"red","env":"prod"`),
		std(`,"team":"blue"`),
		std(`,"team":"blue","env":5`),
		std(`,"team":["blue"],"env":"prod","labels":["x","y"],"n":{"a":1}`),
		std(`,"_claim_names":{"groups":"src"},"_claim_sources":{"src":{"endpoint":"https://evil.example"}}`),
		std(`,"jti":"abc"`),
		std(`,"jti":""`),
		std(`,"jti":5`),
		std(`,"jti":null`),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"iat":null,"exp":%d}`, iss, testAudience, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"nbf":null,"exp":%d}`, iss, testAudience, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"exp":null}`, iss, testAudience),
		std(`,"nonce":5`),
		std(`,"at_hash":"x","nonce":"y"`),
		std(`,"AUD":"other"`),
		std(`,"ISS":"https://other.example"`),
		std(`,"Sub":"mallory"`),
		std(`,"kubernetes.io":5`),
		std(`,"kubernetes.io":{"namespace":"ns"}`),
		std(`,"kubernetes.io":{"namespace":"ns","serviceaccount":{"name":"sa"}}`),
		std(`,"sub":"system:admin"`),
		std(`,"sub":null`),
		std(`,"sub":5`),
		fmt.Sprintf(`{"iss":%q,"aud":%q,"exp":%d}`, iss, testAudience, now+600), // no sub
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":[%q,"x"],"exp":%d}`, iss, testAudience, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":"second","exp":%d}`, iss, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":null,"exp":%d}`, iss, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":[],"exp":%d}`, iss, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":"wrong","exp":%d}`, iss, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":"a","exp":%d}`, iss, now+600),      // no aud
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q}`, iss, testAudience), // no exp
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"exp":"%d"}`, iss, testAudience, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"exp":%d.75}`, iss, testAudience, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"exp":%d}`, iss, testAudience, now-10),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"exp":1e400}`, iss, testAudience),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"exp":%d,"nbf":%d}`, iss, testAudience, now+600, now+120),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"exp":%d,"nbf":%d}`, iss, testAudience, now+3600, now+1200),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"exp":%d,"nbf":"x"}`, iss, testAudience, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"exp":%d,"iat":true}`, iss, testAudience, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"iat":%d,"exp":%d}`, iss, testAudience, now-10000, now+600), // lifetime > 2h
		fmt.Sprintf(`{"iss":"https://other.example","sub":"a","aud":%q,"exp":%d}`, testAudience, now+600),
		fmt.Sprintf(`{"iss":%q,"iss":"https://other.example","sub":"a","aud":%q,"exp":%d}`, iss, testAudience, now+600),
		fmt.Sprintf(`{"iss":5,"sub":"a","aud":%q,"exp":%d}`, testAudience, now+600),
		// Two faults at once: the order of the checks decides the reason.
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":"wrong","exp":%d}`, iss, now-10),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":"wrong","exp":%d,"nbf":%d}`, iss, now+3600, now+1200),
		fmt.Sprintf(`{"iss":%q,"aud":"wrong","exp":%d}`, iss, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":5,"aud":%q,"exp":%d,"groups":5,"team":"red"}`, iss, testAudience, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":"system:x","aud":%q,"exp":%d,"kubernetes.io":5}`, iss, testAudience, now+600),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"iat":-1e10,"exp":%d,"kubernetes.io":5}`, iss, testAudience, now+600),
		// Repeated and case-variant keys: the typed decodes merge them, the raw map keeps the last.
		std(`,"_claim_names":null`),
		std(`,"_claim_names":{"groups":"s"},"_claim_sources":{"s":{"endpoint":"https://evil.example"}},"_Claim_Names":null,"_Claim_Sources":null`),
		std(`,"kubernetes.io":5,` + sa),
		std(`,` + sa + `,"Kubernetes.io":{"pod":{"name":"p2"}}`),
		std(`,` + sa + `,"kubernetes.io":{"namespace":"other"}`),
		std(`,"kubernetes.io":5,"kubernetes.io":null`),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"exp":%d,"nbf":"%d","nbf":null}`, iss, testAudience, now+600, now),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"exp":%d,"nbf":"%d","NBF":null}`, iss, testAudience, now+600, now),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"exp":%d,"EXP":%d}`, iss, testAudience, now+600, now-10),
		fmt.Sprintf(`{"iss":%q,"sub":"a","aud":["token is expired"],"exp":%d}`, iss, now+600),
		`[]`, `null`, `"x"`, `{`, ``,
	}
}

func TestFastPathMatchesGeneralPath(t *testing.T) {
	t.Parallel()
	d := newDifferential(t)
	decided := 0
	for _, p := range differentialPayloads(d.issuer) {
		if d.compare(t, d.sign(t, "", p)) {
			decided++
		}
	}
	// Headers and signatures: the verification step itself.
	p := differentialPayloads(d.issuer)[1]
	attacker, err := testissuer.NewKey(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := testissuer.Sign(attacker, testissuer.Claims{"iss": d.issuer, "sub": "a", "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	valid := d.sign(t, "", p)
	parts := strings.Split(valid, ".")
	for _, tok := range []string{
		d.sign(t, `{"alg":"RS256"}`, p), // no kid: every key is tried
		d.sign(t, `{"alg":"RS256","kid":"unknown"}`, p),
		d.sign(t, `{"alg":"PS256","kid":"`+d.key.KID+`"}`, p), // signed PKCS#1 v1.5, claims PSS
		d.sign(t, `{"alg":"none"}`, p),
		d.sign(t, `{"alg":"HS256"}`, p),
		d.sign(t, `{"alg":"RS256","crit":["exp"],"exp":1}`, p),
		d.sign(t, `{"alg":"RS256","kid":"`+d.key.KID+`","crit":["exp"],"exp":1}`, p),
		d.sign(t, `{"alg":"HS256","kid":5}`, p),
		d.sign(t, `{"alg":5,"kid":"`+d.key.KID+`"}`, p),
		d.sign(t, `{"alg":"none","x5c":["!!"]}`, p),
		d.sign(t, `null`, p),
		d.sign(t, `{"alg":"RS256","kid":"`+d.key.KID+`","jwk":{"kty":"RSA","p":"AQAB"}}`, p),
		d.sign(t, `{"alg":"RS256","kid":"`+d.key.KID+`","alg":"ES256"}`, p),
		forged,
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + parts[1] + "." + parts[2] + "x",
		parts[0] + "." + parts[1],
		`{"payload":"x","signatures":[]}`,
		"",
	} {
		d.compare(t, tok)
	}
	if decided < len(differentialPayloads(d.issuer))-4 { // the distributed-claims payloads are handed over
		t.Fatalf("the fast path decided only %d payloads: the comparison proves little", decided)
	}
}

// TestFastPathMatchesGeneralPathES256 is TestFastPathMatchesGeneralPath's payloads over an ES256 key,
// with the signature shapes an ECDSA verifier must refuse: high S (accepted by both: ECDSA signatures
// are malleable and neither library normalizes), a byte short or long, the halves' zero padding moved,
// and an ES256 signature claimed as another algorithm.
func TestFastPathMatchesGeneralPathES256(t *testing.T) {
	t.Parallel()
	d := newDifferentialFor(t, jose.ES256)
	decided := 0
	for _, p := range differentialPayloads(d.issuer) {
		if d.compare(t, d.sign(t, "", p)) {
			decided++
		}
	}
	if decided < len(differentialPayloads(d.issuer))-4 {
		t.Fatalf("the fast path decided only %d payloads: the comparison proves little", decided)
	}
	p := differentialPayloads(d.issuer)[1]
	valid := d.sign(t, "", p)
	dot := strings.LastIndexByte(valid, '.')
	sig, err := base64.RawURLEncoding.DecodeString(valid[dot+1:])
	if err != nil {
		t.Fatal(err)
	}
	n := elliptic.P256().Params().N
	highS := append(slices.Clone(sig[:32]), new(big.Int).Sub(n, new(big.Int).SetBytes(sig[32:])).FillBytes(make([]byte, 32))...)
	moved := append(append([]byte{0}, sig[:31]...), sig[31:]...)
	for _, s := range [][]byte{highS, sig[:63], append(slices.Clone(sig), 0), moved, make([]byte, 64)} {
		d.compare(t, valid[:dot+1]+b64(s))
	}
	for _, alg := range []string{"ES384", "ES512", "RS256", "PS256"} {
		d.compare(t, d.sign(t, `{"alg":"`+alg+`","kid":"`+d.key.KID+`"}`, p))
	}
}

func TestFastPathHandsOverDistributedClaims(t *testing.T) {
	t.Parallel()
	d := newDifferential(t)
	now := time.Now().Unix()
	tok := d.sign(t, "", fmt.Sprintf(`{"iss":%q,"sub":"a","aud":%q,"exp":%d,"_claim_names":{"groups":"s"},"_claim_sources":{"s":{"endpoint":"https://evil.example"}}}`, d.issuer, testAudience, now+600))
	if _, _, err := d.entries["groups"].authenticateFast(context.Background(), tok); !errors.Is(err, errFallback) {
		t.Fatalf("fast path error = %v, want a hand-over", err)
	}
	// The general path refuses it without fetching anything.
	if resp, _, err := d.entries["groups"].authenticate(context.Background(), tok); err == nil || resp != nil {
		t.Fatalf("a token with distributed groups was accepted: %v", resp)
	}
}

func TestFastPathEligibility(t *testing.T) {
	t.Parallel()
	flat := Config{UsernameClaim: "sub", ClaimValidationRules: []apiserver.ClaimValidationRule{{Claim: "a", RequiredValue: "b"}}}
	if !fastPathEligible(flat) {
		t.Error("flat rules are not served by the fast path")
	}
	for name, cfg := range map[string]Config{
		"CEL rule":     {ClaimValidationRules: []apiserver.ClaimValidationRule{{Expression: "true"}}},
		"CEL username": {ClaimMappings: apiserver.ClaimMappings{Username: apiserver.PrefixedClaimOrExpression{Expression: "claims.sub"}}},
		"CEL groups":   {ClaimMappings: apiserver.ClaimMappings{Groups: apiserver.PrefixedClaimOrExpression{Expression: "[]"}}},
		"uid claim":    {ClaimMappings: apiserver.ClaimMappings{UID: apiserver.ClaimOrExpression{Claim: "uid"}}},
		"extra":        {ClaimMappings: apiserver.ClaimMappings{Extra: []apiserver.ExtraMapping{{Key: "a/b", ValueExpression: "'x'"}}}},
		"user rule":    {UserValidationRules: []apiserver.UserValidationRule{{Expression: "true"}}},
		"google":       {Issuer: "https://accounts.google.com"},
	} {
		if fastPathEligible(cfg) {
			t.Errorf("%s: served by the fast path", name)
		}
	}
}

// FuzzFastPathMatchesGeneralPath signs arbitrary payloads with a trusted key and requires both paths to
// give the same answer under every configuration, and the claims index to decode what encoding/json
// decodes (checkClaimsIndex).
func FuzzFastPathMatchesGeneralPath(f *testing.F) {
	d := newDifferential(f)
	for _, p := range differentialPayloads(d.issuer) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		// The claims index the peek and the fast path share decodes what encoding/json decodes.
		checkClaimsIndex(t, []byte(payload))
		if !json.Valid([]byte(payload)) && len(payload) > 0 && payload[0] != '{' {
			return // not worth a signature: both paths refuse it at the first decode
		}
		d.compare(t, d.sign(t, "", payload))
	})
}

// matrixClaims are the claims either path reads by name: go-oidc's registered claims, the mapping
// step's, and the configured ones of the differential's configurations.
var matrixClaims = []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "nonce", "at_hash", "kubernetes.io",
	"_claim_names", "_claim_sources", "email", "email_verified", "groups", "team", "env", "labels", "n"}

// matrixValues are the classes of JSON value a claim can hold.
var matrixValues = map[string]string{
	"null": `null`, "string": `"x"`, "empty string": `""`, "numeric string": `"1700000000"`, "true": `true`,
	"false": `false`, "number": `5`, "fraction": `1.5`, "huge": `1e300`, "beyond float64": `1e400`,
	"max int64": `9223372036854775807`, "negative": `-5`, "object": `{"a":1}`, "empty object": `{}`,
	"array": `["a"]`, "empty array": `[]`, "array of numbers": `[1]`,
}

// TestFastPathMatrix sets every claim either path reads to every class of JSON value (or removes it),
// in an otherwise valid token, and requires both paths to give the same answer for the same reason.
func TestFastPathMatrix(t *testing.T) {
	t.Parallel()
	d := newDifferential(t)
	now := time.Now().Unix()
	base := map[string]string{
		"iss": fmt.Sprintf("%q", d.issuer), "sub": `"alice"`, "aud": fmt.Sprintf("%q", testAudience),
		"iat": fmt.Sprint(now), "nbf": fmt.Sprint(now), "exp": fmt.Sprint(now + 600),
		"email": `"a@example.com"`, "groups": `["g"]`, "team": `"blue"`, "env": `"prod"`,
	}
	payload := func(claim, value string) string {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(base)) {
			if k != claim {
				parts = append(parts, fmt.Sprintf("%q:%s", k, base[k]))
			}
		}
		if value != "" {
			parts = append(parts, fmt.Sprintf("%q:%s", claim, value))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	// The base token authenticates under every configuration, so each variation tests one claim.
	ctx := context.Background()
	for name, e := range d.entries {
		if _, _, err := e.authenticateFast(ctx, d.sign(t, "", payload("", ""))); err != nil {
			t.Fatalf("config %s refuses the base token: %v", name, err)
		}
	}
	combinations := 0
	for _, claim := range matrixClaims {
		d.compare(t, d.sign(t, "", payload(claim, ""))) // absent
		combinations++
		for _, value := range matrixValues {
			d.compare(t, d.sign(t, "", payload(claim, value)))
			combinations++
		}
	}
	t.Logf("%d claims x %d values (and absent): %d tokens, each under %d configurations on both paths",
		len(matrixClaims), len(matrixValues), combinations, len(d.entries))
}
