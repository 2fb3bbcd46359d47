package authn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// TestForgedUnknownKidFloodDoesNotStarve floods the handler with forged tokens that name an unknown
// kid of a trusted issuer whose discovery hangs, and requires every valid review — of that issuer with
// its known key, and of another issuer — to be answered and authenticated meanwhile. Forged tokens must
// not hold the review slots while the refetch they ask for hangs.
func TestForgedUnknownKidFloodDoesNotStarve(t *testing.T) {
	t.Parallel()
	slow, other := newIssuer(t, jose.RS256), newIssuer(t, jose.ES256)
	r := NewRouter()
	slowCfg := baseConfig(slow)
	slowCfg.MinRefetchInterval = 50 * time.Millisecond
	r.Store("slow", startEntry(t, slowCfg))
	otherCfg := baseConfig(other)
	otherCfg.Name = "other"
	r.Store("other", startEntry(t, otherCfg))
	slow.SetDelay(time.Minute) // from now on discovery and JWKS hang

	const slots = 32
	srv := httptest.NewServer(&Handler{Authenticator: r, Log: logr.Discard(), MaxInFlight: slots})
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}, Timeout: 30 * time.Second}

	attacker, err := testissuer.NewKey(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := testissuer.MintFor(attacker, slow.URL, testissuer.Claims{"sub": "mallory", "aud": testAudience})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var flood sync.WaitGroup
	var floodSent atomic.Int64
	for range 4 * slots {
		flood.Add(1)
		go func() {
			defer flood.Done()
			for range 1000 { // bounded; stop ends it first
				select {
				case <-stop:
					return
				default:
				}
				_, _ = reviewOver(client, srv.URL, forged)
				floodSent.Add(1)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // let the flood fill whatever it can

	for i := range 40 {
		iss := slow
		if i%2 == 1 {
			iss = other
		}
		code, status := reviewOver(client, srv.URL, mint(t, iss, testissuer.Claims{"sub": fmt.Sprintf("valid-%d", i), "aud": testAudience}))
		if code != http.StatusOK || !status.Authenticated {
			t.Errorf("valid review %d of %s during the flood: HTTP %d, %+v", i, iss.URL, code, status)
		}
	}
	close(stop)
	flood.Wait()
	if floodSent.Load() < 4*slots {
		t.Fatalf("the flood sent only %d requests", floodSent.Load())
	}
}

// reviewOver posts token as a v1 TokenReview and returns the HTTP status and the review status.
func reviewOver(client *http.Client, url, token string) (int, authenticationv1.TokenReviewStatus) {
	body, _ := json.Marshal(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": map[string]any{"token": token}})
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, authenticationv1.TokenReviewStatus{Error: err.Error()}
	}
	defer func() { _ = resp.Body.Close() }()
	var out authenticationv1.TokenReview
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Status
}

// TestUnknownKidRefetchWaitIsBounded: the review that starts a refetch of a hanging issuer waits at
// most unknownKidWait, and a review that arrives while that fetch runs, beyond the waiter bound, does
// not wait at all.
func TestUnknownKidRefetchWaitIsBounded(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	ks := remoteKeySet(t, iss, time.Millisecond)
	iss.SetDelay(time.Minute)
	attacker, err := testissuer.NewKey(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := testissuer.MintFor(attacker, iss.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // past MinRefetchInterval
	start := time.Now()
	var uke *UnknownKeyError
	if _, err := ks.VerifySignature(context.Background(), forged); !errors.As(err, &uke) {
		t.Fatalf("forged token: %v, want an unknown key", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the review that started the refetch waited %s on a hanging issuer", took)
	}
	// The fetch still hangs and its wait window has passed: nobody waits any more.
	start = time.Now()
	if _, err := ks.VerifySignature(context.Background(), forged); !errors.As(err, &uke) {
		t.Fatalf("forged token: %v", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("a review waited %s for a fetch that was already running past its window", took)
	}
}

// TestFairSharePerIssuer: an issuer with its share of reviews in flight is refused with 429 and
// Retry-After, counted under its issuer hash, before it takes a slot all issuers share, while another
// issuer is served; a token of an unknown issuer takes no slot at all.
func TestFairSharePerIssuer(t *testing.T) {
	t.Parallel()
	busy, calm := newIssuer(t, jose.RS256), newIssuer(t, jose.RS256)
	r := NewRouter()
	r.SetMaxInFlight(4) // busy alone: a share of 2
	r.Store("busy", startEntry(t, baseConfig(busy)))
	calmCfg := baseConfig(calm)
	calmCfg.Name = "calm"
	r.Store("calm", startEntry(t, calmCfg))
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// Two shared slots: if busy's refused reviews took one, calm would find none.
	h := &Handler{Authenticator: r, Issuers: r, Log: logr.Discard(), Metrics: m, MaxInFlight: 2}
	h.acquire() // one shared slot is taken by a review of someone else
	t.Cleanup(h.release)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	post := func(token string) (int, authenticationv1.TokenReviewStatus, http.Header) {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+token+`"}}`))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var out authenticationv1.TokenReview
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Status, resp.Header
	}

	busyToken := mint(t, busy, testissuer.Claims{"sub": "a", "aud": testAudience})
	var releases []func()
	for range 2 { // two reviews of busy are in flight
		release, _, err := r.Admit(context.Background(), busyToken)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	for range 3 {
		if code, _, header := post(busyToken); code != http.StatusTooManyRequests || header.Get("Retry-After") == "" {
			t.Fatalf("busy issuer at its share: HTTP %d %v, want 429 with Retry-After", code, header)
		}
	}
	if got := testutil.ToFloat64(m.reviews.WithLabelValues(ResultOverloaded, IssuerHash(busy.URL), ReasonOverload)); got != 3 {
		t.Fatalf("overloaded reviews of busy = %v, want 3", got)
	}
	if code, st, _ := post(mint(t, calm, testissuer.Claims{"sub": "b", "aud": testAudience})); code != http.StatusOK || !st.Authenticated {
		t.Fatalf("calm issuer next to a busy one: HTTP %d %+v", code, st)
	}
	unknown, err := testissuer.NewKey(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := testissuer.MintFor(unknown, "https://stranger.example", nil)
	if code, st, _ := post(stranger); code != http.StatusOK || st.Authenticated || !strings.Contains(st.Error, ReasonUnknownIssuer) {
		t.Fatalf("unknown issuer: HTTP %d %+v", code, st)
	}
	// A rebuild of busy's route (its object changed) keeps the count, so a change cannot reset the share.
	r.Store("busy", startEntry(t, baseConfig(busy)))
	if _, _, err := r.Admit(context.Background(), busyToken); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("after a rebuild: %v, want ErrOverloaded", err)
	}
	for _, release := range releases {
		release()
	}
	if code, st, _ := post(busyToken); code != http.StatusOK || !st.Authenticated {
		t.Fatalf("busy issuer below its share: HTTP %d %+v", code, st)
	}
}

// TestTimeClaimsCannotOverflow: a lifetime bound holds for every value a JSON number can hold, and time
// claims no real token carries are refused, on both paths.
func TestTimeClaimsCannotOverflow(t *testing.T) {
	t.Parallel()
	d := newDifferential(t)
	e := d.entries["extra"] // MaxTokenLifetime: 2h
	now := time.Now().Unix()
	claims := func(times string) string {
		return fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%q,%s}`, d.issuer, testAudience, times)
	}
	const year = 365 * 24 * 3600
	for _, tt := range []struct {
		name  string
		times string
		want  error // nil: authenticated
	}{
		{"one hour", fmt.Sprintf(`"iat":%d,"exp":%d`, now, now+3600), nil},
		{"three hours", fmt.Sprintf(`"iat":%d,"exp":%d`, now, now+3*3600), ErrLifetime},
		{"exp 300 years out (the lifetime wraps a Duration)", fmt.Sprintf(`"iat":%d,"exp":%d`, now, now+300*year), ErrLifetime},
		{"exp 8000 years out", fmt.Sprintf(`"iat":%d,"exp":%d`, now, now+8000*year), ErrTimeClaim},
		{"nbf far in the past", fmt.Sprintf(`"nbf":-1e10,"exp":%d`, now+3600), ErrTimeClaim},
		{"iat far in the past", fmt.Sprintf(`"iat":-1e10,"exp":%d`, now+3600), ErrTimeClaim},
		{"iat negative", fmt.Sprintf(`"iat":-1,"exp":%d`, now+3600), ErrTimeClaim},
		{"exp 1e300", `"iat":0,"exp":1e300`, nil}, // go-oidc's int64 conversion: expired, refused before
		{"exp beyond the year 9999", fmt.Sprintf(`"iat":%d,"exp":%d`, now, int64(maxNumericDate)+1), ErrTimeClaim},
		{"exp fractional", fmt.Sprintf(`"iat":%d,"exp":%d.5`, now, now+3600), nil},
		{"iat in the future, as late as exp", fmt.Sprintf(`"iat":%d,"exp":%d`, now+10*year, now+10*year), ErrLifetime},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := d.sign(t, "", claims(tt.times))
			ctx := context.Background()
			for path, run := range map[string]func(context.Context, string) (*authenticator.Response, time.Time, error){
				"fast": e.authenticateFast, "general": e.authenticateGeneral,
			} {
				resp, _, err := run(ctx, tok)
				switch {
				case tt.name == "exp 1e300":
					if err == nil {
						t.Errorf("%s: exp 1e300 accepted", path)
					}
				case tt.want == nil && (err != nil || resp == nil):
					t.Errorf("%s: refused: %v", path, err)
				case tt.want != nil && !errors.Is(err, tt.want):
					t.Errorf("%s: err = %v, want %v", path, err, tt.want)
				}
			}
		})
	}
}

// TestLookAlikeTokens: a token differing from a valid one only in bytes Go's base64 decoders skip, or in
// padding, is refused before any work; and the result cache cannot be tricked into another request's
// answer by a separator in the token.
func TestLookAlikeTokens(t *testing.T) {
	t.Parallel()
	a := newAdversary(t)
	valid := mint(t, a.hub, testissuer.Claims{"sub": "alice", "aud": testAudience})
	if st := a.review(t, valid); !st.Authenticated {
		t.Fatalf("valid token refused: %s", st.Error)
	}
	first, second := strings.Index(valid, "."), strings.LastIndex(valid, ".")
	for name, tok := range map[string]string{
		"LF after the first dot": valid[:first+1] + "\n" + valid[first+1:],
		"CR in the payload":      valid[:first+5] + "\r" + valid[first+5:],
		"CRLF at the end":        valid + "\r\n",
		"space in the signature": valid[:second+3] + " " + valid[second+3:],
		"padding":                valid + "==",
		"tab":                    "\t" + valid,
		"a fourth segment":       valid + ".",
	} {
		if st := a.review(t, tok); st.Authenticated || !strings.Contains(st.Error, "base64url") && name != "a fourth segment" {
			t.Errorf("%s: authenticated=%v error=%q, want a refusal naming the canonical form", name, st.Authenticated, st.Error)
		}
	}

	// Bits a segment's last character carries beyond its bytes: Go's decoders ignore them, so they
	// would give each token thousands of spellings.
	spellings := 0
	for seg, part := range strings.Split(valid, ".") {
		pad := map[int]int{2: 4, 3: 2}[len(part)%4]
		last := base64URLValue(part[len(part)-1])
		for x := 1; x < 1<<pad; x++ {
			parts := strings.Split(valid, ".")
			parts[seg] = part[:len(part)-1] + string(base64URLAlphabet[last^x])
			spellings++
			if st := a.review(t, strings.Join(parts, ".")); st.Authenticated {
				t.Errorf("segment %d with unused bits %#x set: authenticated", seg, x)
			}
		}
	}
	for _, tok := range []string{"ab.a.cd", "abcde.abcd.ab"} { // segments of lengths that encode no whole byte
		if canonical(tok) {
			t.Errorf("%q is canonical", tok)
		}
	}
	t.Logf("%d other spellings of one token refused", spellings)

	r := NewRouter()
	r.Store("hub", startEntry(t, baseConfig(a.other)))
	c := NewCachingAuthenticator(r, CacheOptions{TTL: time.Minute})
	tok := mint(t, a.other, testissuer.Claims{"sub": "alice", "aud": testAudience})
	if _, ok, err := c.AuthenticateToken(authenticator.WithAudiences(context.Background(), authenticator.Audiences{"aud"}), tok); !ok || err != nil {
		t.Fatalf("valid token: %v %v", ok, err)
	}
	if _, ok, _ := c.AuthenticateToken(context.Background(), tok+"\x00aud"); ok {
		t.Fatal(`token "T\x00aud" without audiences was answered from the cache entry of token "T" for audience "aud"`)
	}
	if cacheKey("ab", []string{"c"}) == cacheKey("a", []string{"bc"}) || cacheKey("a", []string{"", ""}) == cacheKey("a", []string{""}) {
		t.Fatal("cache keys collide")
	}
}

// TestEmptyUsernameRefused: an empty or null username claim is refused with or without a prefix, on
// both paths: otherwise every such token shares one identity, "" or the bare prefix.
func TestEmptyUsernameRefused(t *testing.T) {
	t.Parallel()
	d := newDifferential(t)
	now := time.Now().Unix()
	for _, sub := range []string{`""`, `null`, `" "`, `"\t\n"`} {
		payload := fmt.Sprintf(`{"iss":%q,"sub":%s,"aud":%q,"exp":%d}`, d.issuer, sub, testAudience, now+600)
		tok := d.sign(t, "", payload)
		for _, config := range []string{"sa", "noprefix"} {
			e := d.entries[config]
			for path, run := range map[string]func(context.Context, string) (*authenticator.Response, time.Time, error){
				"fast": e.authenticateFast, "general": e.authenticateGeneral,
			} {
				if resp, _, err := run(context.Background(), tok); !errors.Is(err, ErrEmptyUsername) {
					t.Errorf("sub %s, config %s, %s path: resp=%v err=%v, want ErrEmptyUsername", sub, config, path, resp, err)
				}
			}
		}
	}
}

// TestKeyFetchStaysOnHTTPS: discovery and JWKS follow a redirect to another https URL, but refuse one to
// plain http, which would let anyone on the path replace the keys.
func TestKeyFetchStaysOnHTTPS(t *testing.T) {
	t.Parallel()
	keys := newIssuer(t, jose.RS256)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(keys.JWKS()) }))
	t.Cleanup(plain.Close)
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-http" + wellKnownPath, "/to-https" + wellKnownPath, "/loop" + wellKnownPath, "/to-http-with-password" + wellKnownPath:
			prefix := strings.TrimSuffix(r.URL.Path, wellKnownPath)
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL + prefix, "jwks_uri": srv.URL + prefix + "/jwks"})
		case "/to-http/jwks":
			http.Redirect(w, r, plain.URL+"/jwks", http.StatusFound)
		case "/to-http-with-password/jwks":
			http.Redirect(w, r, strings.Replace(plain.URL, "http://", "http://bob:S3CRET@", 1)+"/jwks", http.StatusTemporaryRedirect)
		case "/to-https/jwks":
			http.Redirect(w, r, srv.URL+"/keys", http.StatusMovedPermanently)
		case "/loop/jwks":
			http.Redirect(w, r, srv.URL+"/loop/jwks", http.StatusFound)
		case "/keys":
			_, _ = w.Write(keys.JWKS())
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	client, err := NewHTTPClient(pemOf(srv.Certificate()))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		prefix  string
		wantErr error
		wantMsg string
	}{
		{prefix: "/to-https"},
		{prefix: "/to-http", wantErr: ErrInsecureRedirect, wantMsg: "non-https"},
		{prefix: "/to-http-with-password", wantErr: ErrInsecureRedirect, wantMsg: "non-https"},
		{prefix: "/loop", wantMsg: "redirects"},
	} {
		ks, err := NewKeySet(KeySetOptions{Issuer: srv.URL + tt.prefix, Client: client, Log: logr.Discard()})
		if err != nil {
			t.Fatal(err)
		}
		ks.refresh(context.Background())
		st := ks.Status()
		switch {
		case tt.wantMsg == "" && (st.LastError != nil || len(st.Keys) != 1):
			t.Errorf("%s: %v, %d keys; want the keys", tt.prefix, st.LastError, len(st.Keys))
		case tt.wantMsg != "" && (st.LastError == nil || !strings.Contains(st.LastError.Error(), tt.wantMsg) || len(st.Keys) != 0):
			t.Errorf("%s: %v, %d keys; want no keys and an error mentioning %q", tt.prefix, st.LastError, len(st.Keys), tt.wantMsg)
		case tt.wantErr != nil && !errors.Is(st.LastError, tt.wantErr):
			t.Errorf("%s: %v does not wrap %v", tt.prefix, st.LastError, tt.wantErr)
		case st.LastError != nil && strings.Contains(st.LastError.Error(), "S3CRET"):
			t.Errorf("%s: the error shows a password from a URL: %v", tt.prefix, st.LastError)
		}
	}
}

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// TestFairShareLeavesRoomForAnotherIssuer: however many issuers are busy, the ones holding slots leave
// room for one more.
func TestFairShareLeavesRoomForAnotherIssuer(t *testing.T) {
	t.Parallel()
	const capacity = 4
	r := NewRouter()
	r.SetMaxInFlight(capacity)
	var issuers []*testissuer.Issuer
	for i := range 3 {
		iss := newIssuer(t, jose.ES256)
		cfg := baseConfig(iss)
		cfg.Name = fmt.Sprintf("e%d", i)
		r.Store(cfg.Name, startEntry(t, cfg))
		issuers = append(issuers, iss)
	}
	held := 0
	for _, iss := range issuers[:2] { // two issuers in trouble take all they are given
		tok := mint(t, iss, testissuer.Claims{"sub": "a", "aud": testAudience})
		for range capacity {
			if _, _, err := r.Admit(context.Background(), tok); err != nil {
				break
			}
			held++
		}
	}
	if held >= capacity {
		t.Fatalf("two issuers hold %d of %d slots: none is left for a third", held, capacity)
	}
	if _, _, err := r.Admit(context.Background(), mint(t, issuers[2], testissuer.Claims{"sub": "a", "aud": testAudience})); err != nil {
		t.Fatalf("a third issuer is refused while two hold %d slots: %v", held, err)
	}
	for busy, want := range map[int64]int64{0: 2, 1: 2, 2: 1, 3: 1} {
		if got := FairShare(capacity, busy); got != want {
			t.Errorf("FairShare(%d, %d) = %d, want %d", capacity, busy, got, want)
		}
	}
	if got := FairShare(256, 1); got != 128 {
		t.Errorf("FairShare(256, 1) = %d, want 128", got)
	}
}

// TestRefetchWaitOncePerReview: an issuer with several objects (one key set each) costs a forged token
// one wait at most, not one per object.
func TestRefetchWaitOncePerReview(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	for i := range 6 {
		cfg := baseConfig(iss)
		cfg.Name = fmt.Sprintf("tenant-%d", i)
		cfg.Audiences = []string{fmt.Sprintf("aud-%d", i)}
		cfg.MinRefetchInterval = time.Millisecond
		r.Store(cfg.Name, startEntry(t, cfg))
	}
	attacker, err := testissuer.NewKey(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := testissuer.MintFor(attacker, iss.URL, testissuer.Claims{"sub": "m", "aud": "aud-0"})
	if err != nil {
		t.Fatal(err)
	}
	iss.SetDelay(time.Minute)
	time.Sleep(5 * time.Millisecond)
	start := time.Now()
	if _, ok, _ := r.AuthenticateToken(context.Background(), forged); ok {
		t.Fatal("forged token authenticated")
	}
	if took := time.Since(start); took > 3*unknownKidWait {
		t.Fatalf("one forged review of an issuer with 6 objects waited %s", took)
	}
}

// TestNegativeCacheKeepsOnlyLastingRefusals: with a negative cache, a refusal that passes with time (an
// unknown key, before the issuer's rotation is fetched) is not cached, while one that holds is.
func TestNegativeCacheKeepsOnlyLastingRefusals(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	cfg := baseConfig(iss)
	cfg.MinRefetchInterval = 50 * time.Millisecond
	r := NewRouter()
	r.Store("hub", startEntry(t, cfg))
	c := NewCachingAuthenticator(r, CacheOptions{TTL: time.Minute, NegativeTTL: time.Hour})
	iss.SetFailing(true)
	if _, err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	rotated := mint(t, iss, testissuer.Claims{"sub": "a", "aud": testAudience})
	time.Sleep(60 * time.Millisecond)
	if _, ok, err := c.AuthenticateToken(context.Background(), rotated); ok || reasonOf(err) != ReasonUnknownKID {
		t.Fatalf("while the issuer fails: ok=%v err=%v, want an unknown key", ok, err)
	}
	iss.SetFailing(false)
	time.Sleep(60 * time.Millisecond)
	if _, ok, err := c.AuthenticateToken(context.Background(), rotated); !ok {
		t.Fatalf("after the issuer recovered: %v (a cached refusal?)", err)
	}
	expired := mint(t, iss, testissuer.Claims{"sub": "a", "aud": testAudience, "exp": time.Now().Add(-time.Minute).Unix()})
	_, _, _ = c.AuthenticateToken(context.Background(), expired)
	if st := c.Stats(); st.Size != 2 {
		t.Fatalf("cache holds %d results, want the success and the expired token's refusal", st.Size)
	}
	for err, want := range map[error]bool{
		&UnknownKeyError{KID: "k"}: false, ErrNoKeys: false, ErrOverloaded: false, context.DeadlineExceeded: false,
		errors.New("oidc: verify token: oidc: token is expired"): true, ErrSystemUsername: true,
	} {
		if lasting(err) != want {
			t.Errorf("lasting(%v) = %v, want %v", err, !want, want)
		}
	}
}

// TestForgedKeyIDsHaveTheirOwnShare: tokens naming no key id, or one the issuer does not hold, count
// against a share of their own, and make no issuer busy, so a flood of them leaves the issuer's valid
// tokens their share.
func TestForgedKeyIDsHaveTheirOwnShare(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	r.SetMaxInFlight(4)
	r.Store("hub", startEntry(t, baseConfig(iss)))
	attacker, err := testissuer.NewKey(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := testissuer.MintFor(attacker, iss.URL, testissuer.Claims{"sub": "m", "aud": testAudience})
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for range 4 {
		if _, _, err := r.Admit(context.Background(), forged); err != nil {
			if !errors.Is(err, ErrOverloaded) {
				t.Fatal(err)
			}
			break
		}
		held++
	}
	if held == 0 || held >= 4 {
		t.Fatalf("forged tokens hold %d of 4 slots", held)
	}
	valid := mint(t, iss, testissuer.Claims{"sub": "a", "aud": testAudience})
	if _, _, err := r.Admit(context.Background(), valid); err != nil {
		t.Fatalf("a valid token of the issuer while forged ones hold their share: %v", err)
	}
	if busy := r.busy.Load(); busy != 1 {
		t.Fatalf("busy = %d: forged tokens made an issuer busy", busy)
	}
	// Headers that would put a forged token with the issuer's valid ones if the key id were read
	// differently from go-jose, or if naming no key counted as naming a held one.
	kid := iss.SigningKey().KID
	for _, header := range []string{`{"alg":"RS256"}`, `{"alg":"RS256","kid":""}`, `{"alg":"RS256","kid":null}`,
		`{"alg":"RS256","KID":"` + kid + `"}`, `{"alg":"RS256","kid":"forged","Kid":"` + kid + `"}`, `{"alg":"RS256","kid":5}`} {
		tok := b64([]byte(header)) + "." + strings.Split(forged, ".")[1] + "." + strings.Split(forged, ".")[2]
		if _, _, err := r.Admit(context.Background(), tok); !errors.Is(err, ErrOverloaded) {
			t.Errorf("header %s: %v, want it counted with the forged tokens (whose share is full)", header, err)
		}
	}
	for tok, want := range map[string]error{"garbage": ErrNonCanonicalToken, "e30.e30.e30": ErrMalformedToken} {
		if _, _, err := r.Admit(context.Background(), tok); !errors.Is(err, want) {
			t.Errorf("Admit(%q) = %v, want %v", tok, err, want)
		}
	}
}

// TestCachedAnswersNeedNoAdmission: a result the cache holds is answered before admission, so a busy
// issuer's exhausted share (or all slots taken) does not turn a cached answer into 429, and the answer
// is counted under its issuer as before.
func TestCachedAnswersNeedNoAdmission(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	r.Store("hub", startEntry(t, baseConfig(iss)))
	r.SetMaxInFlight(4)
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{Authenticator: NewCachingAuthenticator(r, CacheOptions{TTL: time.Minute, Metrics: m}), Issuers: r, Log: logr.Discard(), Metrics: m, MaxInFlight: 4}
	cachedTok := mint(t, iss, testissuer.Claims{"sub": "a", "aud": testAudience})
	if code, body := postReviewRaw(t, h, cachedTok); code != http.StatusOK || !strings.Contains(body, `"authenticated":true`) {
		t.Fatalf("first review: HTTP %d %s", code, body)
	}
	var releases []func()
	for {
		release, _, err := r.Admit(context.Background(), cachedTok)
		if err != nil {
			break
		}
		releases = append(releases, release)
	}
	defer func() {
		for _, release := range releases {
			release()
		}
	}()
	fresh := mint(t, iss, testissuer.Claims{"sub": "b", "aud": testAudience})
	if code, _ := postReviewRaw(t, h, fresh); code != http.StatusTooManyRequests {
		t.Fatalf("an uncached token with the share taken: HTTP %d, want 429", code)
	}
	code, body := postReviewRaw(t, h, cachedTok)
	if code != http.StatusOK || !strings.Contains(body, `"authenticated":true`) {
		t.Fatalf("the cached token with the share taken: HTTP %d %s", code, body)
	}
	if got := testutil.ToFloat64(m.reviews.WithLabelValues(ResultAuthenticated, IssuerHash(iss.URL), "")); got != 2 {
		t.Errorf("authenticated reviews under the issuer's label: %v, want 2", got)
	}
}

func postReviewRaw(t *testing.T, h http.Handler, token string) (int, string) {
	t.Helper()
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + token + `"}}`
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/authenticate", strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}
