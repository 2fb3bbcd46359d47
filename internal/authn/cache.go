package authn

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/utils/clock"
)

// DefaultCacheMaxEntries bounds the result cache. A cached result is about 1 KiB (user, groups, extras),
// so the default caps the cache near 10 MiB while covering far more distinct live tokens than one
// downstream normally sees between two token rotations.
const DefaultCacheMaxEntries = 10000

// DefaultCacheMaxBytes bounds the memory of the cached results. A result is usually about 1 KiB, but
// extraClaims can copy up to a token's worth of claims into one, so entries alone do not bound memory.
const DefaultCacheMaxBytes = 64 << 20

// CacheOptions configure a CachingAuthenticator.
type CacheOptions struct {
	// TTL bounds how long a successful result is reused; the token's own expiry bounds it further.
	TTL time.Duration
	// NegativeTTL, when positive, also caches refusals for that long (off by default: a refusal cached
	// too long locks out a workload whose trust was just added).
	NegativeTTL time.Duration
	// MaxEntries bounds the number of cached results (DefaultCacheMaxEntries when zero).
	MaxEntries int
	// MaxBytes bounds the estimated memory of the cached results (DefaultCacheMaxBytes when zero); the
	// least recently used results go first. A single result larger than MaxBytes is not cached. A
	// large cache is split into shards (see CachingAuthenticator), each bounded by its share of
	// MaxEntries and MaxBytes (at least minShardEntries and minShardBytes): the least recently used of
	// a shard goes first, and a result larger than a shard's share (1 MiB or more) is not cached.
	MaxBytes int
	Clock    clock.PassiveClock
	// Metrics, when set, counts hits and misses.
	Metrics *Metrics
}

// CacheStats counts cache use.
type CacheStats struct {
	Hits, Misses int64
	Size         int
	Bytes        int
}

// CachingAuthenticator puts a bounded LRU result cache in front of a Router. Results are keyed by a
// SHA-256 of the token and the requested audiences, so the cache never holds a token itself. A cached
// success is dropped the moment the entry that produced it stops being routed (object deleted, changed
// or in conflict); a cached refusal only holds while the routing table is unchanged.
//
// Every review looks the cache up and most store into it (kube-apiserver caches successes itself, so
// most tokens arrive once), so a large cache is split into shards by key, each with its own lock, map,
// LRU order and share of the bounds: no review waits on a lock all reviews take.
type CachingAuthenticator struct {
	router *Router
	opts   CacheOptions
	shards []cacheShard

	hits, misses atomic.Int64
}

// cacheShard is one part of the cache, holding the keys whose first byte selects it, with
// MaxEntries/len(shards) entries and MaxBytes/len(shards) bytes at most.
type cacheShard struct {
	mu         sync.Mutex
	items      map[[32]byte]*list.Element
	lru        *list.List // front = most recently used
	bytes      int        // estimated size of what lru holds
	maxEntries int
	maxBytes   int
	_          [64]byte // keeps shards' locks off one another's cache lines
}

const (
	// maxCacheShards is how many shards a large cache has; a power of two, at most 256 (a key byte).
	maxCacheShards = 16
	// minShardEntries and minShardBytes are the least a shard holds: a cache too small to give each of
	// maxCacheShards that much has fewer shards (a small one, one), so its bounds and its LRU order
	// stay exact, and no shard is too small for one large result (extraClaims can copy up to a token's
	// worth of claims into one).
	minShardEntries = 256
	minShardBytes   = 1 << 20
)

// cacheShards is how many shards a cache of these bounds has.
func cacheShards(maxEntries, maxBytes int) int {
	n := maxCacheShards
	for n > 1 && (maxEntries/n < minShardEntries || maxBytes/n < minShardBytes) {
		n /= 2
	}
	return n
}

type cached struct {
	key        [32]byte
	resp       *authenticator.Response
	err        error
	entry      *Entry // nil for a refusal
	object     string // for a refusal, the object that refused
	issuer     string // for a refusal, the issuer hash it was counted under
	generation uint64 // router generation, for refusals
	expires    time.Time
	size       int // estimated bytes, see sizeOf
	// status is the success's TokenReview status as appendStatus encodes it, kept by the first hit
	// that answers with it (results never hit, most of them, never pay for it): the answer is the same
	// every time, so later hits write it as it is.
	status atomic.Pointer[[]byte]
}

// NewCachingAuthenticator returns a cache in front of router.
func NewCachingAuthenticator(router *Router, opts CacheOptions) *CachingAuthenticator {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultCacheMaxEntries
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultCacheMaxBytes
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	c := &CachingAuthenticator{router: router, opts: opts, shards: make([]cacheShard, cacheShards(opts.MaxEntries, opts.MaxBytes))}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.items, sh.lru = map[[32]byte]*list.Element{}, list.New()
		sh.maxEntries, sh.maxBytes = opts.MaxEntries/len(c.shards), opts.MaxBytes/len(c.shards)
	}
	return c
}

// shard is the shard that holds key: the key is a SHA-256, so its first byte spreads keys evenly.
func (c *CachingAuthenticator) shard(key [32]byte) *cacheShard {
	return &c.shards[int(key[0])%len(c.shards)]
}

// cachedAnswer is what the handler's lookup before admission found: the cached result (hit), and the
// key it hashed, which AuthenticateToken reuses on a miss.
type cachedAnswer struct {
	resp *authenticator.Response
	err  error
	hit  bool
	key  [32]byte
	item *cached // what was hit
}

// answer is the handler's lookup before admission: the cached result for token and the review's
// audiences, if any. A miss is not counted: the review that follows looks again and counts it. A nil
// cache never hits.
func (c *CachingAuthenticator) answer(ctx context.Context, token string, audiences []string) cachedAnswer {
	if c == nil {
		return cachedAnswer{}
	}
	a := cachedAnswer{key: cacheKey(token, audiences)}
	if it, ok := c.lookup(a.key); ok {
		c.hit(ctx, it)
		a.resp, a.err, a.hit, a.item = it.resp, it.err, true, it
	}
	return a
}

// hit counts a cache hit and says, for the review's labels, which issuer and object made the answer.
func (c *CachingAuthenticator) hit(ctx context.Context, it *cached) {
	c.hits.Add(1)
	c.opts.Metrics.cacheLookup(true)
	noteIssuer(ctx, it.entry)
	if it.entry != nil {
		noteObject(ctx, it.entry.cfg.Name)
		return
	}
	noteObject(ctx, it.object)
	if info := reviewInfoOf(ctx); info != nil && it.issuer != "" {
		info.issuer = it.issuer
	}
}

// cacheKeyKey carries, from the handler's lookup before admission to AuthenticateToken, the key it
// hashed, so a miss hashes the token once.
type cacheKeyKey struct{}

type precomputedKey struct {
	token string
	key   [32]byte
}

func withCacheKey(ctx context.Context, token string, key [32]byte) context.Context {
	return context.WithValue(ctx, cacheKeyKey{}, &precomputedKey{token: token, key: key})
}

// AuthenticateToken answers from the cache when it can, and from the router otherwise.
func (c *CachingAuthenticator) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	var key [32]byte
	if pk, ok := ctx.Value(cacheKeyKey{}).(*precomputedKey); ok && pk.token == token {
		key = pk.key
	} else {
		auds, _ := authenticator.AudiencesFrom(ctx)
		key = cacheKey(token, auds)
	}
	if it, ok := c.lookup(key); ok {
		c.hit(ctx, it)
		return it.resp, it.resp != nil, it.err
	}
	c.misses.Add(1)
	c.opts.Metrics.cacheLookup(false)
	generation := c.router.Generation()
	resp, entry, expiry, err := c.router.authenticate(ctx, token, nil)
	now := c.opts.Clock.Now()
	switch {
	case resp != nil && err == nil:
		ttl := c.opts.TTL
		if !expiry.IsZero() && expiry.Sub(now) < ttl {
			ttl = expiry.Sub(now)
		}
		if ttl > 0 {
			c.store(&cached{key: key, resp: resp, entry: entry, expires: now.Add(ttl)})
		}
		return resp, true, nil
	case c.opts.NegativeTTL > 0 && ctx.Err() == nil && lasting(err):
		// Never cache a refusal caused by our own deadline: it says nothing about the token.
		var object, issuer string
		if info := reviewInfoOf(ctx); info != nil {
			object, issuer = info.object, info.issuer
		}
		c.store(&cached{key: key, err: err, object: object, issuer: issuer, generation: generation, expires: now.Add(c.opts.NegativeTTL)})
	}
	return nil, false, err
}

// Stats reports hits, misses and the current size.
func (c *CachingAuthenticator) Stats() CacheStats {
	s := CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load()}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		s.Size += sh.lru.Len()
		s.Bytes += sh.bytes
		sh.mu.Unlock()
	}
	return s
}

func (c *CachingAuthenticator) lookup(key [32]byte) (*cached, bool) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	el, ok := sh.items[key]
	if !ok {
		return nil, false
	}
	it := el.Value.(*cached)
	valid := c.opts.Clock.Now().Before(it.expires)
	if it.entry != nil {
		valid = valid && it.entry.routed.Load()
	} else {
		valid = valid && it.generation == c.router.Generation()
	}
	if !valid {
		sh.remove(el)
		return nil, false
	}
	sh.lru.MoveToFront(el)
	return it, true
}

func (c *CachingAuthenticator) store(it *cached) {
	it.size = sizeOf(it)
	sh := c.shard(it.key)
	if it.size > sh.maxBytes {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if el, ok := sh.items[it.key]; ok {
		sh.remove(el)
	}
	sh.items[it.key] = sh.lru.PushFront(it)
	sh.bytes += it.size
	for sh.lru.Len() > sh.maxEntries || sh.bytes > sh.maxBytes {
		sh.remove(sh.lru.Back())
	}
}

// remove drops el. Callers hold mu.
func (sh *cacheShard) remove(el *list.Element) {
	it := el.Value.(*cached)
	sh.lru.Remove(el)
	delete(sh.items, it.key)
	sh.bytes -= it.size
}

// sizeOf estimates the memory a cached result holds: its strings plus a fixed overhead for the
// structures around them.
func sizeOf(it *cached) int {
	const overhead = 256 // cached, list element, map slot, response and user structs
	n := overhead
	if it.err != nil {
		n += len(it.err.Error())
	}
	if it.resp == nil {
		return n
	}
	for _, a := range it.resp.Audiences {
		n += len(a) + 16
	}
	u := it.resp.User
	n += len(u.GetName()) + len(u.GetUID())
	for _, g := range u.GetGroups() {
		n += len(g) + 16
	}
	for k, vs := range u.GetExtra() {
		n += len(k) + 48
		for _, v := range vs {
			n += len(v) + 16
		}
	}
	return n
}

// cacheKey hashes the token with the requested audiences: the same token reviewed for other audiences
// can have another answer (status.audiences differs). Every field is length-prefixed, so no two
// requests share a key: with a bare separator, token "T\x00aud" without audiences would collide with
// token "T" for audience "aud".
func cacheKey(token string, audiences []string) [32]byte {
	buf := cacheKeyInputs.Get().(*[]byte)
	b := (*buf)[:0]
	field := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	field(token)
	b = binary.BigEndian.AppendUint64(b, uint64(len(audiences)))
	for _, a := range audiences {
		field(a)
	}
	key := sha256.Sum256(b)
	if cap(b) <= 2*MaxTokenBytesLimit {
		clear(b) // a pooled buffer must not keep a bearer token in memory after the review
		*buf = b
		cacheKeyInputs.Put(buf)
	}
	return key
}

// cacheKeyInputs are buffers for what cacheKey hashes: the token, a kilobyte or more, would otherwise
// be copied into a new slice for the hash on every review.
var cacheKeyInputs = sync.Pool{New: func() any { return new([]byte) }}

// lasting reports whether a refusal says something about the token itself, and so may be cached. An
// unknown key (the issuer may just have rotated), no keys yet, overload and internal errors pass with
// time: caching them would keep refusing a token the next review would accept.
func lasting(err error) bool {
	switch reasonOf(err) {
	case ReasonUnknownKID, ReasonNoKeys, ReasonOverload, ReasonInternal:
		return false
	}
	return true
}
