package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

const (
	// maxKeysPerSet bounds how many keys one issuer may publish; issuers rotate through two or three.
	maxKeysPerSet = 64
	// minRSABits refuses weak RSA keys: a 1024-bit key is within reach of a determined attacker.
	minRSABits = 2048
	// DefaultRefreshInterval is how often a remote key set is refetched in the background.
	DefaultRefreshInterval = 5 * time.Minute
	// DefaultMinRefetchInterval rate-limits refetches triggered by tokens with an unknown kid. Anyone can
	// send such tokens, so without a limit a flood of them would become a flood against the issuer.
	DefaultMinRefetchInterval = 5 * time.Second
	// unknownKidWait bounds how long the review that starts an unknown-kid refetch waits for it. A real
	// key rotation is served within it when the issuer answers promptly; a slow or hanging issuer costs a
	// forged token at most this long, never the fetch's own deadline.
	unknownKidWait = time.Second
	// maxRefetchWaiters bounds the reviews of one issuer (of one key set, outside a router) that wait for
	// an unknown-kid refetch at once: enough for the burst of a real key rotation, too few for forged
	// tokens to hold capacity.
	maxRefetchWaiters = 8
	// wellKnownPath is appended to the issuer URL when no discovery URL is configured.
	wellKnownPath = "/.well-known/openid-configuration"
)

// AllSigningAlgs are the JWS algorithms an issuer may use: asymmetric only, so a public key can never
// be used as an HMAC secret (key confusion), and never "none".
var AllSigningAlgs = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}

// ErrNoKeys is returned when a JWKS holds no usable signing key.
var ErrNoKeys = errors.New("JWKS holds no usable signing key")

// ErrCriticalHeader is returned for a token whose header marks extensions critical ("crit"): none is
// supported.
var ErrCriticalHeader = errors.New("token header names critical extensions, which are not supported")

// ErrBadSignature is returned when the key a token names does not verify its signature.
var ErrBadSignature = errors.New("token signature is invalid")

// UnknownKeyError is returned when no key of the issuer matches the token's kid.
type UnknownKeyError struct{ KID string }

func (e *UnknownKeyError) Error() string {
	kid := e.KID
	if len(kid) > 64 {
		kid = kid[:64] + "..." // the header is the caller's to fill: keep what we repeat short
	}
	return fmt.Sprintf("no key matches kid %q", kid)
}

// KeySetOptions configures a KeySet.
type KeySetOptions struct {
	// Issuer is the expected iss, checked against the discovery document.
	Issuer string
	// DiscoveryURL overrides <Issuer>/.well-known/openid-configuration.
	DiscoveryURL string
	// StaticJWKS, when set, is the whole key set: nothing is ever fetched.
	StaticJWKS []byte
	// Client makes discovery and JWKS requests.
	Client *http.Client
	// SigningAlgs are the accepted algorithms; empty means AllSigningAlgs.
	SigningAlgs []string
	// RefreshInterval is the background refresh period (DefaultRefreshInterval when zero).
	RefreshInterval time.Duration
	// MinRefetchInterval rate-limits unknown-kid refetches (DefaultMinRefetchInterval when zero).
	MinRefetchInterval time.Duration
	// OnRefresh is called after every completed fetch attempt, successful or not.
	OnRefresh func()
	// Metrics, when set, records fetches and refetches under IssuerHash(Issuer).
	Metrics *Metrics
	Clock   clock.WithTicker
	Log     logr.Logger
}

// KeyInfo describes one verification key.
type KeyInfo struct {
	KID string
	Alg string
}

// KeySetStatus is a snapshot of a key set's health.
type KeySetStatus struct {
	// Static is true for a key set configured inline.
	Static bool
	// JWKSURI is the URI the keys were last fetched from.
	JWKSURI string
	// Keys are the keys in use, sorted by kid.
	Keys []KeyInfo
	// Attempted is true once the first load attempt has finished.
	Attempted bool
	// LastSuccess is when keys were last fetched successfully.
	LastSuccess time.Time
	// LastError is the error of the last attempt, nil if it succeeded.
	LastError error
	// Suppressed counts unknown-kid refetches skipped by the rate limit.
	Suppressed int64
}

// KeySet is one issuer's verification keys. It implements go-oidc's KeySet, so the apiserver JWT
// authenticator verifies signatures through it. Reads are lock-free; fetches are single-flight and
// never drop the last good keys on failure.
type KeySet struct {
	opts       KeySetOptions
	static     bool
	issuerHash string
	algs       []jose.SignatureAlgorithm
	keys       atomic.Pointer[[]jose.JSONWebKey]
	clock      clock.WithTicker

	mu          sync.Mutex
	ctx         context.Context // lifecycle; fetches run on it, not on a request's context
	inflight    chan struct{}   // closed when the running fetch finishes; nil when none runs
	waiters     atomic.Int64    // reviews waiting for a fetch, when no router counts them per issuer
	lastAttempt time.Time
	status      KeySetStatus
}

// NewKeySet validates opts and, for static keys, parses them. Remote keys load once Start is called.
func NewKeySet(opts KeySetOptions) (*KeySet, error) {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.MinRefetchInterval <= 0 {
		opts.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if opts.DiscoveryURL == "" {
		opts.DiscoveryURL = strings.TrimSuffix(opts.Issuer, "/") + wellKnownPath
	}
	k := &KeySet{opts: opts, clock: opts.Clock, ctx: context.Background(), issuerHash: IssuerHash(opts.Issuer), algs: allJoseAlgs}
	if len(opts.SigningAlgs) > 0 {
		k.algs = make([]jose.SignatureAlgorithm, 0, len(opts.SigningAlgs))
		for _, a := range opts.SigningAlgs {
			k.algs = append(k.algs, jose.SignatureAlgorithm(a))
		}
	}
	if len(opts.StaticJWKS) > 0 {
		keys, err := ParseJWKS(opts.StaticJWKS)
		if err != nil {
			return nil, fmt.Errorf("could not parse static JWKS: %w", err)
		}
		k.keys.Store(&keys)
		k.static = true
		k.status = KeySetStatus{Static: true, Keys: keyInfos(keys), Attempted: true, LastSuccess: k.clock.Now()}
		return k, nil
	}
	if opts.Client == nil {
		return nil, errors.New("a remote key set needs an HTTP client")
	}
	return k, nil
}

// allJoseAlgs is AllSigningAlgs for go-jose, shared read-only by every key set that names none.
var allJoseAlgs = func() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(AllSigningAlgs))
	for i, a := range AllSigningAlgs {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}()

// Start loads remote keys now and then every RefreshInterval until ctx is done. It returns at once.
func (k *KeySet) Start(ctx context.Context) {
	k.mu.Lock()
	k.ctx = ctx
	k.mu.Unlock()
	if k.static {
		return
	}
	go func() {
		k.refresh(ctx)
		ticker := k.clock.NewTicker(k.opts.RefreshInterval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C():
				k.refresh(ctx)
			}
		}
	}()
}

// Status returns a snapshot of the key set's health.
func (k *KeySet) Status() KeySetStatus {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.status
	s.Keys = append([]KeyInfo(nil), s.Keys...)
	return s
}

// VerifySignature implements oidc.KeySet. It verifies a compact JWS with the key named by its kid (or,
// without a kid, with each key), refetching keys once, rate-limited, when the kid is unknown.
func (k *KeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, k.algs)
	if err != nil {
		return nil, fmt.Errorf("could not parse JWS: %w", err)
	}
	payload, err := k.verifyJWS(ctx, jws)
	if err != nil {
		return nil, err
	}
	recordPayload(ctx, payload)
	return payload, nil
}

// verifyJWS verifies a parsed compact JWS and returns its payload.
func (k *KeySet) verifyJWS(ctx context.Context, jws *jose.JSONWebSignature) ([]byte, error) {
	if len(jws.Signatures) != 1 {
		return nil, errors.New("token must carry exactly one signature")
	}
	if _, ok := jws.Signatures[0].Protected.ExtraHeaders["crit"]; ok {
		// go-jose refuses every critical header it does not implement, but only once a key is tried,
		// which would read as a bad signature, or as an unknown key worth a refetch.
		return nil, ErrCriticalHeader
	}
	return k.verifySigned(ctx, joseSigned{jws}, jws.Signatures[0].Header.KeyID)
}

// signed is a JWS as a key set verifies it: go-jose's parse (joseSigned), or the fast path's own of a
// plain compact JWS (compactJWS, which does what go-jose would do with it).
type signed interface {
	// verify checks the signature with key and returns the payload.
	verify(key *jose.JSONWebKey) ([]byte, error)
}

type joseSigned struct{ jws *jose.JSONWebSignature }

func (s joseSigned) verify(key *jose.JSONWebKey) ([]byte, error) { return s.jws.Verify(key) }

// verifySigned verifies a JWS whose header names kid, refetching the keys once, rate-limited, when no
// key has that id.
func (k *KeySet) verifySigned(ctx context.Context, jws signed, kid string) ([]byte, error) {
	payload, known, err := k.verify(jws, kid)
	if err == nil {
		return payload, nil
	}
	// Only an unknown key justifies a refetch: a token whose kid we hold but whose signature is wrong is a
	// forgery, and fetching again would not change the answer.
	if known || k.static || !k.refetch(ctx) {
		return nil, err
	}
	payload, _, err = k.verify(jws, kid)
	return payload, err
}

// holds reports whether the current keys include one with id kid.
func (k *KeySet) holds(kid string) bool {
	keys := k.keys.Load()
	if keys == nil {
		return false
	}
	for i := range *keys {
		if (*keys)[i].KeyID == kid {
			return true
		}
	}
	return false
}

// verify checks jws against the current keys. known reports whether a key with that kid exists.
func (k *KeySet) verify(jws signed, kid string) (payload []byte, known bool, err error) {
	keys := k.keys.Load()
	if keys == nil {
		return nil, false, ErrNoKeys
	}
	for i := range *keys {
		key := &(*keys)[i]
		if kid != "" && key.KeyID != kid {
			continue
		}
		known = known || kid != ""
		if payload, err := jws.verify(key); err == nil {
			return payload, true, nil
		}
	}
	if known {
		return nil, true, ErrBadSignature
	}
	return nil, false, &UnknownKeyError{KID: kid}
}

// refetch is the refetch a token with an unknown kid asks for. Anyone who can reach the downstream API
// server can send such tokens, so a review never waits on the network for long: the fetch runs
// detached, on its own deadline, and reviews wait for it only within unknownKidWait of its start and
// only maxRefetchWaiters at a time. Past that window (a slow or hanging issuer), beyond that many
// waiters (a flood), or when the last attempt is younger than MinRefetchInterval (it just failed, or
// the keys are fresh), a review answers at once from the keys it has. A review that was only refused
// here is not lost for good: kube-apiserver retries the request, and the next one sees the new keys.
// It reports whether a fetch finished while the review waited, so the keys are worth another look.
func (k *KeySet) refetch(ctx context.Context) bool {
	k.mu.Lock()
	var done <-chan struct{} = k.inflight
	if done == nil {
		if !k.lastAttempt.IsZero() && k.clock.Since(k.lastAttempt) < k.opts.MinRefetchInterval {
			k.status.Suppressed++
			k.mu.Unlock()
			k.opts.Metrics.refetch(k.issuerHash, true)
			return false
		}
		done = k.startFetchLocked()
		defer k.opts.Metrics.refetch(k.issuerHash, false)
	}
	wait := k.lastAttempt.Add(unknownKidWait).Sub(k.clock.Now())
	k.mu.Unlock()
	gate := refetchGateFrom(ctx)
	if gate == nil {
		gate = &refetchGate{waiters: &k.waiters}
	}
	if wait <= 0 || !gate.enter() {
		return false
	}
	defer gate.leave()

	timer := k.clock.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-done:
		return true
	case <-timer.C():
	case <-ctx.Done():
	}
	return false
}

// refresh fetches the keys and waits for the fetch, sharing one that is already running. The background
// refresh loop calls it.
func (k *KeySet) refresh(ctx context.Context) {
	k.mu.Lock()
	var done <-chan struct{} = k.inflight
	if done == nil {
		done = k.startFetchLocked()
	}
	k.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// startFetchLocked starts a fetch in the background and returns a channel closed when it finishes;
// lastAttempt records its start. The fetch runs on the lifecycle context with its own deadline, never
// on a review's context: one caller giving up must not abort it for the others. Callers hold mu and
// ensure no fetch is running.
func (k *KeySet) startFetchLocked() <-chan struct{} {
	done := make(chan struct{})
	k.inflight = done
	k.lastAttempt = k.clock.Now()
	ctx := k.ctx
	go func() {
		ctx, cancel := context.WithTimeout(ctx, fetchDeadline)
		keys, uri, jwksHash, err := k.fetch(ctx)
		cancel()
		k.opts.Metrics.fetch(k.issuerHash, err, k.clock.Now(), jwksHash)

		k.mu.Lock()
		k.status.Attempted = true
		k.status.LastError = err
		if err == nil {
			k.keys.Store(&keys)
			k.status.JWKSURI = uri
			k.status.Keys = keyInfos(keys)
			k.status.LastSuccess = k.clock.Now()
		}
		k.inflight = nil
		close(done)
		k.mu.Unlock()

		if err != nil {
			k.opts.Log.V(1).Info("Key refresh failed; keeping the last good keys", "issuer", k.opts.Issuer, "error", err.Error())
		} else {
			k.opts.Log.V(1).Info("Keys refreshed", "issuer", k.opts.Issuer, "keys", len(keys))
		}
		if k.opts.OnRefresh != nil {
			k.opts.OnRefresh()
		}
	}()
	return done
}

// fetch runs discovery and fetches the JWKS; it also returns a short hash of the JWKS for metrics.
func (k *KeySet) fetch(ctx context.Context) ([]jose.JSONWebKey, string, string, error) {
	uri, err := discover(ctx, k.opts.Client, k.opts.DiscoveryURL, k.opts.Issuer)
	if err != nil {
		return nil, "", "", err
	}
	body, err := get(ctx, k.opts.Client, uri, acceptJWKS, maxJWKSBytes)
	if err != nil {
		return nil, uri, "", fmt.Errorf("could not fetch JWKS: %w", err)
	}
	keys, err := ParseJWKS(body)
	if err != nil {
		return nil, uri, "", fmt.Errorf("could not parse JWKS from %s: %w", uri, err)
	}
	sum := sha256.Sum256(body)
	return keys, uri, hex.EncodeToString(sum[:6]), nil
}

// ParseJWKS parses a JWKS document and keeps only usable public signing keys: RSA of at least 2048
// bits or ECDSA, with use absent or "sig". Keys that fail to parse are skipped so that one key of an
// unsupported type does not take down the whole set; a set with no usable key is an error.
func ParseJWKS(data []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("could not decode JWKS: %w", err)
	}
	if len(raw.Keys) > maxKeysPerSet {
		return nil, fmt.Errorf("JWKS holds %d keys, more than the limit of %d", len(raw.Keys), maxKeysPerSet)
	}
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(r); err != nil {
			continue
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		if !key.IsPublic() {
			key = key.Public() // never hold private material, even if a misconfigured issuer publishes it
		}
		switch pub := key.Key.(type) {
		case *rsa.PublicKey:
			if pub.N.BitLen() < minRSABits {
				continue
			}
		case *ecdsa.PublicKey:
		default:
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	sort.SliceStable(keys, func(i, j int) bool { return keys[i].KeyID < keys[j].KeyID })
	return keys, nil
}

func keyInfos(keys []jose.JSONWebKey) []KeyInfo {
	out := make([]KeyInfo, 0, len(keys))
	for _, k := range keys {
		out = append(out, KeyInfo{KID: k.KeyID, Alg: k.Algorithm})
	}
	return out
}

// payloadKey carries a *[]byte through the apiserver authenticator into VerifySignature, so the mapping
// step can read the verified claims without parsing the token again.
type payloadKey struct{}

func withPayloadRecorder(ctx context.Context) (context.Context, *[]byte) {
	p := new([]byte)
	return context.WithValue(ctx, payloadKey{}, p), p
}

func recordPayload(ctx context.Context, payload []byte) {
	if p, ok := ctx.Value(payloadKey{}).(*[]byte); ok {
		*p = payload
	}
}

// refetchGate is what the router tells a review's key sets: an issuer may have several objects, each
// with a key set of its own, and a review tries them in turn. The gate lets the review wait for an
// unknown-kid refetch once, not once per object, and counts the waiting reviews of the whole issuer
// against maxRefetchWaiters. A key set used outside a router counts its own waiters the same way. A review runs on one goroutine (go-oidc and the apiserver authenticator
// call the key set synchronously); used is atomic all the same, as it costs nothing.
type refetchGate struct {
	used    atomic.Bool
	waiters *atomic.Int64
}

type refetchGateKey struct{}

func withRefetchGate(ctx context.Context, waiters *atomic.Int64) context.Context {
	return context.WithValue(ctx, refetchGateKey{}, &refetchGate{waiters: waiters})
}

func refetchGateFrom(ctx context.Context) *refetchGate {
	g, _ := ctx.Value(refetchGateKey{}).(*refetchGate)
	return g
}

// enter takes a waiting place, or reports that the review may not wait.
func (g *refetchGate) enter() bool {
	if g.used.Load() {
		return false
	}
	if g.waiters.Add(1) > maxRefetchWaiters {
		g.waiters.Add(-1)
		return false
	}
	g.used.Store(true)
	return true
}

func (g *refetchGate) leave() { g.waiters.Add(-1) }
