package authn

// SCRATCH FILE of the security review: delete before finishing.

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

const b64alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// variants returns the spellings of seg that decode to the same bytes (non-zero trailing bits).
func variants(seg string) []string {
	var pad int
	switch len(seg) % 4 {
	case 2:
		pad = 4
	case 3:
		pad = 2
	default:
		return nil
	}
	last := strings.IndexByte(b64alpha, seg[len(seg)-1])
	base := last &^ (1<<pad - 1)
	var out []string
	for x := 0; x < 1<<pad; x++ {
		if base|x == last {
			continue
		}
		out = append(out, seg[:len(seg)-1]+string(b64alpha[base|x]))
	}
	return out
}

// A1: canonical() admits non-canonical base64url: alternate spellings of one valid token verify, on
// both paths and over HTTP, and each gets its own cache entry.
func TestZZAttackMalleableBase64(t *testing.T) {
	a := newAdversary(t)
	var valid string
	var parts []string
	// Mint until every segment has slack bits (header, payload, signature lengths not multiples of 4).
	for i := 0; i < 200; i++ {
		valid = mint(t, a.hub, testissuer.Claims{"sub": fmt.Sprintf("alice%d", i), "aud": testAudience})
		parts = strings.Split(valid, ".")
		if len(variants(parts[0])) > 0 && len(variants(parts[1])) > 0 && len(variants(parts[2])) > 0 {
			break
		}
	}
	t.Logf("segment lengths mod 4: %d %d %d", len(parts[0])%4, len(parts[1])%4, len(parts[2])%4)
	var alts []string
	for i := range parts {
		for _, v := range variants(parts[i]) {
			p := append([]string(nil), parts...)
			p[i] = v
			alts = append(alts, strings.Join(p, "."))
		}
	}
	ok := 0
	for _, alt := range alts {
		if alt == valid || !canonical(alt) {
			t.Fatalf("bad variant")
		}
		if st := a.review(t, alt); st.Authenticated {
			ok++
		}
	}
	t.Logf("HTTP: %d of %d alternate spellings of one token authenticated (same user)", ok, len(alts))
	// both paths on the differential entries
	d := newDifferential(t)
	now := time.Now().Unix()
	tok := d.sign(t, "", fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%q,"exp":%d,"iat":%d}`, d.issuer, testAudience, now+600, now))
	sp := strings.Split(tok, ".")
	for i := range sp {
		for _, v := range variants(sp[i]) {
			p := append([]string(nil), sp...)
			p[i] = v
			alt := strings.Join(p, ".")
			e := d.entries["sa"]
			_, _, ferr := e.authenticateFast(context.Background(), alt)
			_, _, gerr := e.authenticateGeneral(context.Background(), alt)
			if ferr != nil || gerr != nil {
				t.Logf("segment %d variant refused: fast=%v general=%v", i, ferr, gerr)
			}
		}
	}
	// cache: each spelling is a miss and a separate entry
	r := NewRouter()
	r.Store("hub", startEntry(t, baseConfig(a.other)))
	c := NewCachingAuthenticator(r, CacheOptions{TTL: time.Minute})
	tok2 := mint(t, a.other, testissuer.Claims{"sub": "bob", "aud": testAudience})
	p2 := strings.Split(tok2, ".")
	n := 0
	for i := range p2 {
		for _, v := range append([]string{p2[i]}, variants(p2[i])...) {
			p := append([]string(nil), p2...)
			p[i] = v
			if _, ok, err := c.AuthenticateToken(context.Background(), strings.Join(p, ".")); ok && err == nil {
				n++
			}
		}
	}
	t.Logf("cache after %d authenticated spellings of ONE token: %+v", n, c.Stats())
}

// A2: with a negative cache, ErrOverloaded (and a suppressed unknown-kid refusal) is cached: a valid
// token keeps getting 429 after the load is gone.
func TestZZAttackNegativeCacheKeepsOverload(t *testing.T) {
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	r.SetMaxInFlightPerIssuer(1)
	r.Store("hub", startEntry(t, baseConfig(iss)))
	c := NewCachingAuthenticator(r, CacheOptions{TTL: time.Minute, NegativeTTL: 30 * time.Second})
	valid := mint(t, iss, testissuer.Claims{"sub": "alice", "aud": testAudience})
	r.lookup(iss.URL).inflight.Add(1) // one review of the issuer is in flight
	_, _, err := c.AuthenticateToken(context.Background(), valid)
	t.Logf("during load: %v", err)
	r.lookup(iss.URL).inflight.Add(-1) // the load is gone
	if _, _, err := r.AuthenticateToken(context.Background(), valid); err != nil {
		t.Fatalf("router itself: %v", err)
	}
	_, ok, err := c.AuthenticateToken(context.Background(), valid)
	t.Logf("after the load, via the cache: ok=%v err=%v (classify=%s)", ok, err, classify(err))
	if !ok && errors.Is(err, ErrOverloaded) {
		t.Errorf("BUG: ErrOverloaded was negative-cached: the valid token is refused 429 for NegativeTTL")
	}
}

// A2b: same over a real overload (no white-box counter): a slow forged review holds the issuer's
// share; the valid token's 429 is then cached.
func TestZZAttackNegativeCacheOverloadBlackBox(t *testing.T) {
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	r.SetMaxInFlightPerIssuer(1)
	cfg := baseConfig(iss)
	cfg.MinRefetchInterval = 10 * time.Millisecond
	r.Store("hub", startEntry(t, cfg))
	c := NewCachingAuthenticator(r, CacheOptions{TTL: time.Minute, NegativeTTL: 30 * time.Second})
	valid := mint(t, iss, testissuer.Claims{"sub": "alice", "aud": testAudience})
	attacker, _ := testissuer.NewKey(jose.RS256)
	forged, _ := testissuer.MintFor(attacker, iss.URL, testissuer.Claims{"sub": "m", "aud": testAudience})
	iss.SetDelay(3 * time.Second)
	time.Sleep(20 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _, _, _ = c.AuthenticateToken(context.Background(), forged) }()
	time.Sleep(100 * time.Millisecond)
	_, _, err := c.AuthenticateToken(context.Background(), valid)
	t.Logf("valid token while a forged one waits: %v", err)
	wg.Wait()
	iss.SetDelay(0)
	_, ok, err := c.AuthenticateToken(context.Background(), valid)
	t.Logf("valid token after the forged one finished: ok=%v err=%v", ok, err)
}

// A3: K entries of one issuer (disjoint audiences): one forged unknown-kid token waits up to 1 s per
// entry, sequentially, and asks for K fetches.
func TestZZAttackRefetchWaitPerEntry(t *testing.T) {
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	const K = 6
	for i := 0; i < K; i++ {
		cfg := baseConfig(iss)
		cfg.Name = fmt.Sprintf("tenant-%d", i)
		cfg.Audiences = []string{fmt.Sprintf("aud-%d", i)}
		cfg.MinRefetchInterval = 10 * time.Millisecond
		r.Store(cfg.Name, startEntry(t, cfg))
	}
	attacker, _ := testissuer.NewKey(jose.RS256)
	forged, _ := testissuer.MintFor(attacker, iss.URL, testissuer.Claims{"sub": "m", "aud": "aud-0"})
	iss.SetDelay(30 * time.Second) // the issuer hangs
	time.Sleep(20 * time.Millisecond)
	before := iss.DiscoveryFetches.Load()
	h := &Handler{Authenticator: r, Log: logr.Discard(), MaxInFlight: 10}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	start := time.Now()
	code, st := reviewOver(srv.Client(), srv.URL, forged)
	t.Logf("one forged review: HTTP %d in %s (%q); discovery requests it caused: %d", code, time.Since(start).Round(10*time.Millisecond), st.Error, iss.DiscoveryFetches.Load()-before)
	iss.SetDelay(0)
}

// A4: the fair share is per issuer: forged tokens of two slow issuers take every global slot, and a
// third, healthy issuer's valid token gets 429.
func TestZZAttackTwoIssuersTakeAllSlots(t *testing.T) {
	x, y, z := newIssuer(t, jose.RS256), newIssuer(t, jose.RS256), newIssuer(t, jose.ES256)
	r := NewRouter()
	const max = 4
	r.SetMaxInFlightPerIssuer(FairShare(max))
	for i, iss := range []*testissuer.Issuer{x, y, z} {
		cfg := baseConfig(iss)
		cfg.Name = fmt.Sprintf("e%d", i)
		cfg.MinRefetchInterval = 10 * time.Millisecond
		r.Store(cfg.Name, startEntry(t, cfg))
	}
	srv := httptest.NewServer(&Handler{Authenticator: r, Log: logr.Discard(), MaxInFlight: max})
	t.Cleanup(srv.Close)
	x.SetDelay(30 * time.Second)
	y.SetDelay(30 * time.Second)
	time.Sleep(20 * time.Millisecond)
	attacker, _ := testissuer.NewKey(jose.RS256)
	var wg sync.WaitGroup
	for _, iss := range []*testissuer.Issuer{x, y} {
		forged, _ := testissuer.MintFor(attacker, iss.URL, testissuer.Claims{"sub": "m", "aud": testAudience})
		for j := 0; j < FairShare(max); j++ {
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = reviewOver(srv.Client(), srv.URL, forged) }()
		}
	}
	time.Sleep(200 * time.Millisecond)
	code, st := reviewOver(srv.Client(), srv.URL, mint(t, z, testissuer.Claims{"sub": "alice", "aud": testAudience}))
	t.Logf("valid token of healthy issuer z while x and y hold their shares: HTTP %d %+v", code, st)
	wg.Wait()
	x.SetDelay(0)
	y.SetDelay(0)
}

// A5: iat in the future (no nbf) passes MaxTokenLifetime although the token stays valid for years.
func TestZZAttackLifetimeViaFutureIat(t *testing.T) {
	d := newDifferential(t)
	e := d.entries["extra"] // MaxTokenLifetime: 2h
	now := time.Now().Unix()
	const year = 365 * 24 * 3600
	for name, times := range map[string]string{
		"iat=exp=now+10y, no nbf":      fmt.Sprintf(`"iat":%d,"exp":%d`, now+10*year, now+10*year),
		"iat=now+10y-1h, exp=now+10y":  fmt.Sprintf(`"iat":%d,"exp":%d`, now+10*year-3600, now+10*year),
		"control: iat=now, exp=now+10y": fmt.Sprintf(`"iat":%d,"exp":%d`, now, now+10*year),
	} {
		tok := d.sign(t, "", fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%q,%s}`, d.issuer, testAudience, times))
		_, fexp, ferr := e.authenticateFast(context.Background(), tok)
		_, gexp, gerr := e.authenticateGeneral(context.Background(), tok)
		t.Logf("%s: fast err=%v expiry=%s | general err=%v expiry=%s", name, ferr, fexp.Format("2006-01-02"), gerr, gexp.Format("2006-01-02"))
	}
}

// A6: prefix-only / whitespace usernames.
func TestZZAttackEmptyishUsernames(t *testing.T) {
	d := newDifferential(t)
	now := time.Now().Unix()
	jwks := d.entries["sa"].cfg.StaticJWKS
	cel := Config{
		Name: "cel", Issuer: d.issuer, Audiences: []string{testAudience}, StaticJWKS: jwks,
		ClaimMappings: apiserver.ClaimMappings{Username: apiserver.PrefixedClaimOrExpression{Expression: `"cel:" + claims.sub`}},
	}
	ce, err := NewEntry(cel, EntryOptions{Compiler: sharedCompiler, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	ce.Start()
	t.Cleanup(ce.Close)
	emailCfg := d.entries["email"].cfg
	emailCfg.UsernamePrefix = "mail:"
	ee, err := NewEntry(emailCfg, EntryOptions{Compiler: sharedCompiler, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	ee.Start()
	t.Cleanup(ee.Close)
	for _, sub := range []string{`""`, `" "`, `"\t"`, `"\u200b"`} {
		tok := d.sign(t, "", fmt.Sprintf(`{"iss":%q,"sub":%s,"email":%s,"aud":%q,"exp":%d}`, d.issuer, sub, sub, testAudience, now+600))
		for name, e := range map[string]*Entry{"flat sub hub:": d.entries["sa"], "CEL \"cel:\"+sub": ce, "email, prefix mail:": ee} {
			resp, _, err := e.authenticate(context.Background(), tok)
			if err == nil {
				t.Logf("sub/email %s, %s: AUTHENTICATED as %q", sub, name, resp.User.GetName())
			} else {
				t.Logf("sub/email %s, %s: refused: %v", sub, name, err)
			}
		}
	}
}

var _ = authenticator.WithAudiences

// A7: CPU per forged token without kid: every key of every entry of the issuer is tried.
func TestZZAttackNoKidCPU(t *testing.T) {
	key, _ := testissuer.NewKey(jose.RS256)
	ec, _ := testissuer.NewKey(jose.ES384)
	attacker, _ := testissuer.NewKey(jose.RS256)
	const issuer = "https://hub.example"
	measure := func(name string, nkeys, nentries int, tok func() string) {
		set := jose.JSONWebKeySet{}
		for i := 0; i < nkeys; i++ {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: key.Private.Public(), KeyID: fmt.Sprintf("k%02d", i), Algorithm: "RS256", Use: "sig"})
		}
		r := NewRouter()
		for i := 0; i < nentries; i++ {
			cfg := Config{Name: fmt.Sprintf("e%d", i), Issuer: issuer, Audiences: []string{fmt.Sprintf("aud-%d", i)}, StaticJWKS: []byte(mustJSON(set)), UsernameClaim: "sub", UsernamePrefix: "x:"}
			e, err := NewEntry(cfg, EntryOptions{Compiler: sharedCompiler, Log: logr.Discard()})
			if err != nil {
				t.Fatal(err)
			}
			e.Start()
			t.Cleanup(e.Close)
			r.Store(cfg.Name, e)
		}
		token := tok()
		const n = 50
		start := time.Now()
		for i := 0; i < n; i++ {
			_, _, _ = r.AuthenticateToken(context.Background(), token)
		}
		t.Logf("%-40s keys=%2d entries=%2d: %8s per review", name, nkeys, nentries, (time.Since(start) / n).Round(time.Microsecond))
	}
	noKid := func() string {
		tok, _ := testissuer.MintFor(testissuer.Key{Alg: jose.RS256, Private: attacker.Private}, issuer, testissuer.Claims{"sub": "m", "aud": "aud-0"})
		return tok
	}
	valid := func() string {
		tok, _ := testissuer.MintFor(testissuer.Key{KID: "k00", Alg: jose.RS256, Private: key.Private}, issuer, testissuer.Claims{"sub": "a", "aud": "aud-0"})
		return tok
	}
	measure("valid token, known kid", 2, 1, valid)
	measure("forged, no kid", 2, 1, noKid)
	measure("forged, no kid", 64, 1, noKid)
	measure("forged, no kid", 4, 16, noKid)
	measure("forged, no kid", 64, 16, noKid)
	_ = ec
}

// A8: time-claim oddities through the differential comparator.
func TestZZAttackTimeOddities(t *testing.T) {
	d := newDifferential(t)
	now := time.Now().Unix()
	for _, times := range []string{
		fmt.Sprintf(`"exp":"%d"`, now+600),
		fmt.Sprintf(`"exp":%d,"EXP":1`, now+600),
		fmt.Sprintf(`"EXP":%d,"exp":1`, now+600),
		fmt.Sprintf(`"Exp":%d`, now+600),
		fmt.Sprintf(`"exp":%de0`, now+600),
		fmt.Sprintf(`"exp":%d,"iat":-0`, now+600),
		fmt.Sprintf(`"exp":%d,"iat":1e-400`, now+600),
		fmt.Sprintf(`"exp":%d,"nbf":1e-400`, now+600),
		fmt.Sprintf(`"exp":%d,"iat":-1e-400`, now+600),
		fmt.Sprintf(`"exp":%d,"nbf":-0.5`, now+600),
		fmt.Sprintf(`"exp":%d,"nbf":null,"iat":%d`, now+600, now),
		fmt.Sprintf(`"exp":%d,"iat":"%d"`, now+600, now),
		`"exp":9.3e18`, `"exp":-9.3e18`, `"exp":1.8e308`, `"exp":9223372036854775807`, `"exp":9223372036854775808`,
		fmt.Sprintf(`"exp":%d.999999999999`, now+600),
		fmt.Sprintf(`"exp":%d,"nbf":%d`, now+600, now+90),
		fmt.Sprintf(`"exp":%d,"nbf":%d.9`, now+600, now+60),
		fmt.Sprintf(`"exp":%d,"nbf":"%d"`, now+600, now+60),
		fmt.Sprintf(`"exp":%d,"nbf":1e400`, now+600),
	} {
		tok := d.sign(t, "", fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%q,%s}`, d.issuer, testAudience, times))
		d.compare(t, tok)
		_, _, err := d.entries["extra"].authenticateFast(context.Background(), tok)
		t.Logf("%-50s extra(fast): %v", times, err)
	}
}
