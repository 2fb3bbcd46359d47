package authn

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"

	"k8s.io/apiserver/pkg/authentication/authenticator"
)

// ErrUnknownIssuer is returned for a token whose iss no entry serves.
var ErrUnknownIssuer = errors.New("token issuer is not trusted")

// Router maps an issuer to the entries that verify its tokens. Writers (the control loop) copy the
// index and swap it in; readers (every review) load it without a lock.
type Router struct {
	mu    sync.Mutex        // serialises writers
	byKey map[string]*Entry // guarded by mu
	index atomic.Pointer[map[string][]*Entry]
}

// NewRouter returns an empty router.
func NewRouter() *Router {
	r := &Router{byKey: map[string]*Entry{}}
	r.index.Store(&map[string][]*Entry{})
	return r
}

// Store routes e under key, replacing and then closing any entry stored under key before. The old entry
// is closed only after the new index is visible, so no review ever sees a closed entry.
func (r *Router) Store(key string, e *Entry) {
	r.mu.Lock()
	old := r.byKey[key]
	r.byKey[key] = e
	r.rebuild()
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
	delete(r.byKey, key)
	r.rebuild()
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
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

// rebuild recomputes the issuer index from byKey. Entries sharing an issuer are ordered oldest first,
// then by name, so which one authenticates a token never depends on map iteration order.
func (r *Router) rebuild() {
	index := make(map[string][]*Entry, len(r.byKey))
	for _, e := range r.byKey {
		index[e.cfg.Issuer] = append(index[e.cfg.Issuer], e)
	}
	for _, entries := range index {
		sort.Slice(entries, func(i, j int) bool {
			a, b := entries[i].cfg, entries[j].cfg
			if !a.CreatedAt.Equal(b.CreatedAt) {
				return a.CreatedAt.Before(b.CreatedAt)
			}
			return a.Name < b.Name
		})
	}
	r.index.Store(&index)
}

// AuthenticateToken routes token by its unverified iss and lets that issuer's entries verify it, in
// order; the first to authenticate it wins. A token of an unknown issuer yields ErrUnknownIssuer.
func (r *Router) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	iss, err := PeekIssuer(token)
	if err != nil {
		return nil, false, err
	}
	entries := (*r.index.Load())[iss]
	if len(entries) == 0 {
		return nil, false, ErrUnknownIssuer
	}
	var firstErr error
	for _, e := range entries {
		resp, ok, err := e.AuthenticateToken(ctx, token)
		if ok && err == nil {
			return resp, true, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, false, firstErr
}
