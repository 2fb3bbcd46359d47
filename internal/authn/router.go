package authn

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
)

// ErrUnknownIssuer is returned for a token whose iss no entry serves.
var ErrUnknownIssuer = errors.New("token issuer is not trusted")

// ErrOverloaded is returned when the token's issuer already has its fair share of reviews in flight.
// The handler answers it with 429 and Retry-After, which kube-apiserver retries.
var ErrOverloaded = errors.New("too many concurrent reviews for this issuer")

// Router maps an issuer to the entries that verify its tokens. Writers (the control loop) rebuild the
// list of the one or two issuers a change touches and swap it in; readers (every review) load it
// without a lock. A change costs O(entries of that issuer), not O(all entries), so loading 10,000
// objects is linear.
type Router struct {
	mu        sync.Mutex                   // serialises writers
	byKey     map[string]*Entry            // guarded by mu
	byIssuer  map[string]map[string]*Entry // issuer -> key -> entry; guarded by mu
	conflicts map[string]string            // loser key -> winner key; guarded by mu
	// index maps an issuer to its *route, never modified once stored.
	index      sync.Map
	generation atomic.Uint64
	// maxInFlight is the capacity the issuers share (0: no bound); busy counts the issuers with
	// reviews in flight; unknownKID counts the reviews in flight, of every issuer, of tokens naming a
	// key their issuer does not hold.
	maxInFlight atomic.Int64
	busy        atomic.Int64
	unknownKID  atomic.Int64
}

// route is what the index holds for one issuer: its entries in the order they are tried, and the count
// of its reviews in flight, which outlives rebuilds of the issuer's route.
type route struct {
	entries []*Entry
	// inflight counts the issuer's reviews in flight of tokens naming a key it holds.
	inflight *atomic.Int64
	// refetchWaiters counts the issuer's reviews waiting for an unknown-kid refetch, whichever of
	// its objects' key sets they wait on.
	refetchWaiters *atomic.Int64
}

// SetMaxInFlight sets the review capacity the issuers share (the handler's MaxInFlight), from which
// Admit computes each issuer's fair share; 0 removes the bound. Tokens name their issuer, so whoever
// can send tokens chooses which issuer's trouble to hit: with the share, issuers in trouble (slow keys,
// floods of forged tokens) can never hold the capacity the others need.
func (r *Router) SetMaxInFlight(n int) { r.maxInFlight.Store(int64(n)) }

// Admit takes a review slot of token's issuer; release gives it back. It refuses with the peek's error
// a token whose issuer cannot be read, with ErrUnknownIssuer one whose issuer no entry serves, and
// with ErrOverloaded one whose issuer already holds its fair share: FairShare of the capacity, with
// every issuer that has reviews in flight counted.
//
// A token naming no key id, or one none of the issuer's key sets holds (read as go-jose reads it:
// the exact "kid" member), is where forged tokens land, and the only kind that can wait on a key
// refetch. Such reviews, of all issuers together, hold at most unknownKIDShare of the capacity and
// count towards no issuer's share, nor make an issuer busy: forged tokens cannot take the share of
// an issuer's valid ones, nor shrink every issuer's share by keeping many issuers busy at once. (The
// key id is read unverified, like iss; it only chooses what a review is counted against, never the
// answer.) A valid token of a key the issuer has just rotated in counts there too until its key is
// fetched.
//
// issuerHash labels the issuer in metrics ("" for an unknown one). The handler admits a review before
// it takes one of the slots all issuers share, so an issuer's reviews, however stalled, never hold
// more than its share of those either.
//
// Within a review (ctx from the handler), what it peeks of the token stays in the review's info, where
// the routing and the fast path find it, so a review reads its token once (reviewToken).
func (r *Router) Admit(ctx context.Context, token string) (release func(), issuerHash string, err error) {
	pt := reviewToken(ctx, token)
	if pt.err != nil {
		return nil, "", pt.err
	}
	rt := r.lookup(pt.iss)
	if rt == nil || len(rt.entries) == 0 {
		return nil, "", ErrUnknownIssuer
	}
	issuerHash = rt.entries[0].issuerHash
	capacity := r.maxInFlight.Load()
	if capacity <= 0 {
		return func() {}, issuerHash, nil
	}
	if kid, ok := peekKID(token); !ok || !rt.holdsKey(kid) {
		if r.unknownKID.Add(1) > unknownKIDShare(capacity) {
			r.unknownKID.Add(-1)
			return nil, issuerHash, ErrOverloaded
		}
		return func() { r.unknownKID.Add(-1) }, issuerHash, nil
	}
	n := rt.inflight.Add(1)
	if n == 1 {
		r.busy.Add(1)
	}
	if n > FairShare(capacity, r.busy.Load()) {
		r.leave(rt)
		return nil, issuerHash, ErrOverloaded
	}
	return func() { r.leave(rt) }, issuerHash, nil
}

func (r *Router) leave(rt *route) {
	if rt.inflight.Add(-1) == 0 {
		r.busy.Add(-1)
	}
}

// unknownKIDShare is the part of capacity that reviews of tokens naming a key their issuer does not
// hold may hold together: a quarter. They are answered at once from the keys there are, but for the
// few that wait on a refetch (maxRefetchWaiters per issuer), so a quarter is ample for them and leaves
// three quarters to the tokens of keys the issuers hold.
func unknownKIDShare(capacity int64) int64 { return max(1, capacity/4) }

// holdsKey reports whether a key set of the issuer holds a key with id kid.
func (rt *route) holdsKey(kid string) bool {
	for _, e := range rt.entries {
		if e.keys.holds(kid) {
			return true
		}
	}
	return false
}

// FairShare is how many of capacity concurrent reviews one issuer may hold while busy issuers
// (itself included) have reviews in flight: capacity/(busy+1), at least 1. The busy issuers together
// hold at most busy/(busy+1) of the capacity, so an issuer that is not yet busy always finds room:
// half the capacity is left while one issuer is busy, a third while two are.
func FairShare(capacity, busy int64) int64 { return max(1, capacity/(max(busy, 1)+1)) }

// NewRouter returns an empty router.
func NewRouter() *Router {
	return &Router{byKey: map[string]*Entry{}, byIssuer: map[string]map[string]*Entry{}, conflicts: map[string]string{}}
}

// Store routes e under key, replacing and then closing any entry stored under key before. The old entry
// is closed only after the new index is visible, so no review ever sees a closed entry.
func (r *Router) Store(key string, e *Entry) {
	r.mu.Lock()
	old := r.byKey[key]
	if old != nil && old != e {
		old.routed.Store(false)
		r.unlink(key, old)
	}
	r.byKey[key] = e
	group := r.byIssuer[e.cfg.Issuer]
	if group == nil {
		group = map[string]*Entry{}
		r.byIssuer[e.cfg.Issuer] = group
	}
	group[key] = e
	if old != nil && old != e && old.cfg.Issuer != e.cfg.Issuer {
		r.rebuildIssuer(old.cfg.Issuer)
	}
	r.rebuildIssuer(e.cfg.Issuer)
	r.mu.Unlock()
	if old != nil && old != e {
		old.Close()
	}
}

// Delete stops routing key and closes its entry. Tokens of that entry are refused from the moment it
// returns.
func (r *Router) Delete(key string) {
	r.mu.Lock()
	old := r.byKey[key]
	if old != nil {
		old.routed.Store(false)
		delete(r.byKey, key)
		r.unlink(key, old)
		r.rebuildIssuer(old.cfg.Issuer)
	}
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

// unlink removes key's entry from its issuer group. Callers hold mu.
func (r *Router) unlink(key string, e *Entry) {
	delete(r.conflicts, key)
	if group := r.byIssuer[e.cfg.Issuer]; group != nil {
		delete(group, key)
		if len(group) == 0 {
			delete(r.byIssuer, e.cfg.Issuer)
		}
	}
}

// lookup returns the route of issuer, or nil.
func (r *Router) lookup(issuer string) *route {
	v, ok := r.index.Load(issuer)
	if !ok {
		return nil
	}
	return v.(*route)
}

// Get returns the entry stored under key.
func (r *Router) Get(key string) (*Entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byKey[key]
	return e, ok
}

// Len returns how many entries are routed.
func (r *Router) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byKey)
}

// Conflict reports whether the entry stored under key is not routed because an older entry of the
// same issuer claims overlapping audiences with a different username mapping, and names that entry.
func (r *Router) Conflict(key string) (winner string, conflicting bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	winner, conflicting = r.conflicts[key]
	return winner, conflicting
}

// routed is an entry with the key it is stored under.
type routed struct {
	key   string
	entry *Entry
}

// rebuildIssuer recomputes the routed entries of one issuer. Entries sharing an issuer are ordered
// oldest first, then by name, so which one authenticates a token never depends on map iteration order.
// An entry that conflicts with an older one is left out: otherwise the same token would map to a
// different user depending on which object happened to be created first, and a newer object could
// shadow an older identity the moment the older one is deleted. Callers hold mu.
func (r *Router) rebuildIssuer(issuer string) {
	defer r.generation.Add(1)
	members := r.byIssuer[issuer]
	group := make([]routed, 0, len(members))
	for key, e := range members {
		delete(r.conflicts, key)
		group = append(group, routed{key, e})
	}
	if len(group) == 0 {
		r.index.Delete(issuer)
		return
	}
	sort.Slice(group, func(i, j int) bool {
		a, b := group[i].entry.cfg, group[j].entry.cfg
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.Before(b.CreatedAt)
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return group[i].key < group[j].key
	})
	var kept []routed
	var entries []*Entry
next:
	for _, candidate := range group {
		for _, k := range kept {
			if conflicting(k.entry.cfg, candidate.entry.cfg) {
				r.conflicts[candidate.key] = k.key
				candidate.entry.routed.Store(false)
				continue next
			}
		}
		kept = append(kept, candidate)
		candidate.entry.routed.Store(true)
		entries = append(entries, candidate.entry)
	}
	rt := &route{entries: entries, inflight: new(atomic.Int64), refetchWaiters: new(atomic.Int64)}
	if old := r.lookup(issuer); old != nil {
		rt.inflight, rt.refetchWaiters = old.inflight, old.refetchWaiters
	}
	r.index.Store(issuer, rt)
}

// conflicting reports whether two entries of one issuer would both accept some token (their audiences
// overlap) but map it to different usernames.
func conflicting(a, b Config) bool {
	return !slices.Equal(usernameMapping(a), usernameMapping(b)) && len(intersect(a.Audiences, b.Audiences)) > 0
}

func usernameMapping(c Config) []string {
	return []string{c.UsernameClaim, c.UsernamePrefix, c.ClaimMappings.Username.Expression}
}

// AuthenticateToken routes token by its unverified iss and lets that issuer's entries verify it, in
// order; the first to authenticate it wins. A token of an unknown issuer yields ErrUnknownIssuer.
func (r *Router) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	resp, _, _, err := r.authenticate(ctx, token, nil)
	return resp, resp != nil, err
}

// authenticate is AuthenticateToken that also says which entry authenticated the token and when the
// token expires, for the result cache. observe, when not nil, is told each entry's verdict in the
// order tried: `webhook explain` records the request path through it instead of repeating it.
func (r *Router) authenticate(ctx context.Context, token string, observe func(*Entry, *authenticator.Response, error)) (*authenticator.Response, *Entry, time.Time, error) {
	pt := reviewToken(ctx, token)
	if pt.err != nil {
		return nil, nil, time.Time{}, pt.err
	}
	rt := r.lookup(pt.iss)
	if rt == nil || len(rt.entries) == 0 {
		return nil, nil, time.Time{}, ErrUnknownIssuer
	}
	noteIssuer(ctx, rt.entries[0])
	ctx = withRefetchGate(ctx, rt.refetchWaiters)
	var firstErr error
	for _, e := range rt.entries {
		resp, expiry, err := e.authenticate(ctx, token)
		if observe != nil {
			observe(e, resp, err)
		}
		if resp != nil && err == nil {
			noteIssuer(ctx, e)
			noteObject(ctx, e.cfg.Name)
			return resp, e, expiry, nil
		}
		if firstErr == nil || preferRefusal(firstErr, err) {
			firstErr = err
			noteObject(ctx, e.cfg.Name)
		}
	}
	return nil, nil, time.Time{}, firstErr
}

// preferRefusal reports whether a later object's refusal says more than the one kept: an object whose
// audiences the token does not name was never meant for it, so when another object of the issuer was,
// its refusal (expired, a failed rule) is the one to report. Otherwise the first object's stands.
func preferRefusal(kept, later error) bool {
	return reasonOf(kept) == ReasonAudience && reasonOf(later) != ReasonAudience
}

// Generation counts changes to the routing table; a cached refusal is only valid for the generation
// it was made in, since a new or changed object may accept the token.
func (r *Router) Generation() uint64 { return r.generation.Load() }
