package authn

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

func TestCache(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	r.Store("hub", startEntry(t, baseConfig(iss)))
	clk := clocktesting.NewFakePassiveClock(time.Now())
	c := NewCachingAuthenticator(r, CacheOptions{TTL: time.Minute, MaxEntries: 2, Clock: clk})
	ctx := context.Background()
	token := mint(t, iss, testissuer.Claims{"sub": "a", "aud": testAudience})

	authn := func(ctx context.Context, tok string) bool {
		_, ok, _ := c.AuthenticateToken(ctx, tok)
		return ok
	}
	for range 2 {
		if !authn(ctx, token) {
			t.Fatal("not authenticated")
		}
	}
	if s := c.Stats(); s.Hits != 1 || s.Misses != 1 || s.Size != 1 {
		t.Fatalf("stats = %+v, want a hit on the repeated token", s)
	}
	// Other requested audiences are another key.
	authn(authenticator.WithAudiences(ctx, authenticator.Audiences{testAudience}), token)
	if s := c.Stats(); s.Misses != 2 {
		t.Fatalf("stats = %+v, want a miss for other audiences", s)
	}
	// Refusals are not cached by default.
	bad := mint(t, iss, testissuer.Claims{"sub": "a", "aud": "elsewhere"})
	authn(ctx, bad)
	authn(ctx, bad)
	if s := c.Stats(); s.Misses != 4 {
		t.Fatalf("stats = %+v, want refusals uncached", s)
	}
	// TTL.
	clk.SetTime(clk.Now().Add(2 * time.Minute))
	authn(ctx, token)
	if s := c.Stats(); s.Misses != 5 {
		t.Fatalf("stats = %+v, want a miss after the TTL", s)
	}
	// Bounded.
	for i := range 5 {
		authn(ctx, mint(t, iss, testissuer.Claims{"sub": string(rune('b' + i)), "aud": testAudience}))
	}
	if s := c.Stats(); s.Size != 2 {
		t.Fatalf("size = %d, want the bound of 2", s.Size)
	}
}

func TestCacheTTLBoundedByTokenExpiry(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.ES256)
	r := NewRouter()
	r.Store("hub", startEntry(t, baseConfig(iss)))
	clk := clocktesting.NewFakePassiveClock(time.Now())
	c := NewCachingAuthenticator(r, CacheOptions{TTL: time.Hour, Clock: clk})
	token := mint(t, iss, testissuer.Claims{"sub": "a", "aud": testAudience, "exp": time.Now().Add(30 * time.Second).Unix()})
	if _, ok, err := c.AuthenticateToken(context.Background(), token); !ok {
		t.Fatal(err)
	}
	clk.SetTime(clk.Now().Add(29 * time.Second))
	_, _, _ = c.AuthenticateToken(context.Background(), token)
	clk.SetTime(clk.Now().Add(2 * time.Second))
	_, _, _ = c.AuthenticateToken(context.Background(), token) // the verifier's own clock still accepts it: count misses
	if s := c.Stats(); s.Hits != 1 || s.Misses != 2 {
		t.Fatalf("stats = %+v, want a hit before the token's exp and a miss after it", s)
	}
}

func TestCacheEvictsOnDeleteAndChange(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	r.Store("hub", startEntry(t, baseConfig(iss)))
	c := NewCachingAuthenticator(r, CacheOptions{TTL: time.Hour})
	ctx := context.Background()
	token := mint(t, iss, testissuer.Claims{"sub": "a", "aud": testAudience})
	if _, ok, _ := c.AuthenticateToken(ctx, token); !ok {
		t.Fatal("not authenticated")
	}

	changed := baseConfig(iss)
	changed.UsernamePrefix = "changed:"
	r.Store("hub", startEntry(t, changed))
	resp, ok, _ := c.AuthenticateToken(ctx, token)
	if !ok || resp.User.GetName() != "changed:a" {
		t.Fatalf("after a change: %v %v, want the new mapping at once", ok, resp)
	}

	r.Delete("hub")
	if _, ok, _ := c.AuthenticateToken(ctx, token); ok {
		t.Fatal("a cached result survived the deletion of its object")
	}
}

func TestCacheNegativeOptIn(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	c := NewCachingAuthenticator(r, CacheOptions{TTL: time.Hour, NegativeTTL: time.Hour})
	ctx := context.Background()
	token := mint(t, iss, testissuer.Claims{"sub": "a", "aud": testAudience})
	for range 2 {
		_, _, _ = c.AuthenticateToken(ctx, token)
	}
	if s := c.Stats(); s.Hits != 1 {
		t.Fatalf("stats = %+v, want the refusal cached", s)
	}
	// Adding trust invalidates cached refusals at once.
	r.Store("hub", startEntry(t, baseConfig(iss)))
	if _, ok, _ := c.AuthenticateToken(ctx, token); !ok {
		t.Fatal("a cached refusal outlived a routing change")
	}
}

// TestCacheBoundedInBytes: extraClaims can make one result as large as a token, so the cache also
// holds a byte budget, evicting the least recently used results, and never caches one that alone
// exceeds it.
func TestCacheBoundedInBytes(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	cfg := baseConfig(iss)
	cfg.ExtraClaims = []string{"blob"}
	r := NewRouter()
	r.Store("hub", startEntry(t, cfg))
	const budget = 16 << 10
	c := NewCachingAuthenticator(r, CacheOptions{TTL: time.Minute, MaxBytes: budget})
	ctx := context.Background()
	blob := strings.Repeat("x", 3000)
	tokens := make([]string, 20)
	for i := range tokens {
		tokens[i] = mint(t, iss, testissuer.Claims{"sub": fmt.Sprint(i), "aud": testAudience, "blob": blob})
		if _, ok, err := c.AuthenticateToken(ctx, tokens[i]); !ok {
			t.Fatal(err)
		}
		if s := c.Stats(); s.Bytes > budget {
			t.Fatalf("after %d results the cache holds %d bytes, over its budget of %d", i+1, s.Bytes, budget)
		}
	}
	s := c.Stats()
	if s.Size < 3 || s.Size >= len(tokens) {
		t.Fatalf("size = %d: the byte budget should hold a few 3 KB results, not all %d", s.Size, len(tokens))
	}
	// The newest is kept, the oldest evicted.
	before := c.Stats().Hits
	_, _, _ = c.AuthenticateToken(ctx, tokens[len(tokens)-1])
	_, _, _ = c.AuthenticateToken(ctx, tokens[0])
	if got := c.Stats().Hits - before; got != 1 {
		t.Fatalf("hits = %d, want the newest cached and the oldest evicted", got)
	}
	// A result larger than the whole budget is not cached at all.
	huge := mint(t, iss, testissuer.Claims{"sub": "huge", "aud": testAudience, "blob": strings.Repeat("y", budget)})
	sizeBefore := c.Stats().Size
	if _, ok, err := c.AuthenticateToken(ctx, huge); !ok {
		t.Fatal(err)
	}
	if c.Stats().Size > sizeBefore {
		t.Fatal("a result larger than the budget was cached")
	}
}

// TestCacheShards: a large cache is split into shards, each with its share of the bounds, so no
// review takes a lock all reviews take; a small one is not, so its bounds and LRU order stay exact.
func TestCacheShards(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ entries, bytes, want int }{
		{DefaultCacheMaxEntries, DefaultCacheMaxBytes, maxCacheShards},
		{2, DefaultCacheMaxBytes, 1},
		{DefaultCacheMaxEntries, 16 << 10, 1},
		{1024, DefaultCacheMaxBytes, 4},
		{DefaultCacheMaxEntries, 3 << 20, 2},
	} {
		if got := cacheShards(tc.entries, tc.bytes); got != tc.want {
			t.Errorf("cacheShards(%d, %d) = %d, want %d", tc.entries, tc.bytes, got, tc.want)
		}
	}

	const maxEntries = 4096
	c := NewCachingAuthenticator(NewRouter(), CacheOptions{TTL: time.Minute, MaxEntries: maxEntries})
	if len(c.shards) != maxCacheShards {
		t.Fatalf("%d shards, want %d", len(c.shards), maxCacheShards)
	}
	result := func(i int) *cached {
		key := cacheKey(fmt.Sprint(i), nil)
		return &cached{key: key, resp: &authenticator.Response{User: &user.DefaultInfo{Name: fmt.Sprint(i)}}, expires: time.Now().Add(time.Minute)}
	}
	// Reviews store and look up concurrently (go test -race checks the shards' locking).
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 2*maxEntries; i += 4 {
				c.store(result(i))
				c.lookup(result(i / 2).key)
			}
		}()
	}
	wg.Wait()
	if s := c.Stats(); s.Size > maxEntries || s.Size < maxEntries*9/10 {
		t.Fatalf("size = %d after %d distinct results, want at most the bound of %d and near it", s.Size, 2*maxEntries, maxEntries)
	}
	for i := range c.shards {
		if n := c.shards[i].lru.Len(); n > maxEntries/maxCacheShards {
			t.Fatalf("shard %d holds %d results, over its share of %d", i, n, maxEntries/maxCacheShards)
		}
	}
}

// TestCacheKeyLeavesNoTokenInPool: the buffer cacheKey hashes in goes back to a pool; it must not keep
// the bearer token readable there (a heap dump, a later reader of the pooled buffer).
func TestCacheKeyLeavesNoTokenInPool(t *testing.T) {
	token := "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL3Bvb2wuZXhhbXBsZSJ9.c2lnbmF0dXJl"
	cacheKey(token, []string{"aud"})
	buf := cacheKeyInputs.Get().(*[]byte)
	defer cacheKeyInputs.Put(buf)
	if b := (*buf)[:cap(*buf)]; bytes.Contains(b, []byte("c2lnbmF0dXJl")) {
		t.Fatal("the pooled cache-key buffer still holds the token")
	}
}
