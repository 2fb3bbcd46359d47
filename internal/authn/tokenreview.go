package authn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
)

const (
	// reviewEnvelopeBytes is what a TokenReview body may hold besides its token: the envelope and a
	// few audiences fit with room to spare.
	reviewEnvelopeBytes = 16 << 10
	// reviewTimeout bounds one review, including a possible unknown-kid refetch; kube-apiserver's own
	// webhook timeout is 10s.
	reviewTimeout = 8 * time.Second
)

// TokenAuthenticator is what the handler needs: the Router satisfies it.
type TokenAuthenticator interface {
	AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error)
}

// IssuerAdmitter admits the review of a token against its issuer's fair share of review slots: the
// Router satisfies it.
type IssuerAdmitter interface {
	Admit(ctx context.Context, token string) (release func(), issuerHash string, err error)
}

// Handler serves POST /authenticate: it answers TokenReviews of authentication.k8s.io/v1 and v1beta1
// in the version they were asked in. It never echoes the token back.
type Handler struct {
	Authenticator TokenAuthenticator
	Log           logr.Logger
	// MaxTokenBytes bounds spec.token (MaxTokenBytes when zero); the body may hold 16 KiB more.
	MaxTokenBytes int
	// Metrics, when set, records every review's result and latency.
	Metrics *Metrics
	// MaxInFlight bounds concurrent reviews; beyond it the handler answers 429 with Retry-After, which
	// kube-apiserver retries, instead of queueing work it cannot finish in time. Zero means no bound.
	MaxInFlight int
	// Issuers, when set, admits each review against its issuer's share before it takes one of the
	// MaxInFlight slots, and refuses a token of an unknown issuer before any other work.
	Issuers IssuerAdmitter

	inflight chan struct{}
	once     sync.Once
}

func (h *Handler) maxTokenBytes() int {
	if h.MaxTokenBytes > 0 {
		return h.MaxTokenBytes
	}
	return MaxTokenBytes
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "only POST is allowed", http.StatusMethodNotAllowed)
		return
	}
	limit := int64(h.maxTokenBytes() + reviewEnvelopeBytes)
	buf := buffers.Get().(*bytes.Buffer)
	defer putBuffer(buf)
	buf.Reset()
	// The body is read before a review slot is taken, so a client that sends slowly holds a
	// connection (bounded by the server's read timeout), never the capacity reviews need.
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, req.Body, limit)); err != nil {
		http.Error(w, fmt.Sprintf("request body larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
		return
	}
	review, err := decodeReview(buf.Bytes()) // copies what it keeps: buf is reused below
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	start := time.Now()
	v := h.review(req.Context(), review)
	if v.result == ResultOverloaded {
		h.Metrics.review(v.result, v.issuer, v.reason, time.Since(start))
		tooManyRequests(w, v.status.Error)
		return
	}
	buf.Reset()
	if v.encoded != nil {
		writeEncodedReview(w, buf, review.APIVersion, v.encoded)
	} else {
		writeReview(w, buf, review.APIVersion, v.status)
	}
	h.Metrics.review(v.result, v.issuer, v.reason, time.Since(start))
}

// verdict is a review's answer and how it is counted: the result and reason labels, the issuer hash.
// A cached success may come already encoded (encoded, by appendStatus), and status is then empty.
type verdict struct {
	status                 authenticationv1.TokenReviewStatus
	encoded                []byte
	result, issuer, reason string
}

// acquire takes one of MaxInFlight review slots, without waiting.
func (h *Handler) acquire() bool {
	if h.MaxInFlight <= 0 {
		return true
	}
	h.once.Do(func() { h.inflight = make(chan struct{}, h.MaxInFlight) })
	select {
	case h.inflight <- struct{}{}:
		return true
	default:
		return false
	}
}

func (h *Handler) release() {
	if h.MaxInFlight > 0 {
		<-h.inflight
	}
}

// tooManyRequests answers 429 with Retry-After, which kube-apiserver's webhook client retries with
// backoff, rather than queueing work that cannot finish within its timeout.
func tooManyRequests(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", "1")
	http.Error(w, msg, http.StatusTooManyRequests)
}

// review authenticates the token of r and builds the v1 status to answer with, the result and reason
// labels and the issuer label. The order is the order of cost: checks of the token's form, the issuer's
// share of slots, a slot of all issuers', then verification.
func (h *Handler) review(ctx context.Context, r *reviewEnvelope) (v verdict) {
	token := r.Spec.Token
	var refusal error // why, when refused
	ctx, info := withReviewInfo(ctx)
	defer func() {
		if info.issuer != "" {
			v.issuer = info.issuer
		}
		if v.result == ResultAuthenticated {
			return
		}
		v.status = authenticationv1.TokenReviewStatus{Error: RefusalMessage(v.reason, info.object, refusal)}
		if log := h.Log.V(2); log.Enabled() && token != "" {
			log.Info("Token refused", "object", info.object, "reason", v.reason, "token", TokenHash(token), "issuer", v.issuer)
		}
	}()
	refuse := func(err error) verdict {
		refusal = err
		return verdict{result: classify(err), issuer: v.issuer, reason: reasonOf(err)}
	}
	if err := checkForm(token, h.maxTokenBytes()); err != nil {
		return refuse(err)
	}
	// A result the cache holds is answered before admission: it costs a hash and a map lookup, so it
	// needs neither the issuer's share of review slots nor a slot of all issuers'.
	cache, _ := h.Authenticator.(*CachingAuthenticator)
	cached := cache.answer(ctx, token, r.Spec.Audiences)
	resp, err := cached.resp, cached.err
	if !cached.hit {
		if len(token) <= MaxTokenBytesLimit {
			// Read once what the admission, the routing and the fast path read of the token
			// (reviewToken): its form is checked, so the peek need not check it again.
			info.token = peekCanonical(token)
		}
		if cache != nil {
			ctx = withCacheKey(ctx, token, cached.key)
		}
		if h.Issuers != nil {
			release, hash, err := h.Issuers.Admit(ctx, token)
			v.issuer = hash
			if err != nil {
				return refuse(err)
			}
			defer release()
		}
		if !h.acquire() {
			return refuse(ErrOverloaded)
		}
		defer h.release()
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, reviewTimeout)
		defer cancel()
		if len(r.Spec.Audiences) > 0 {
			ctx = authenticator.WithAudiences(ctx, r.Spec.Audiences)
		}
		var ok bool
		resp, ok, err = h.Authenticator.AuthenticateToken(ctx, token)
		if err == nil && !ok {
			err = errNotAuthenticated
		}
	}
	if err != nil {
		if log := h.Log.V(4); log.Enabled() {
			// The library's own words, which may quote a claim: only at the verbosity that logs every review.
			log.Info("Token refused: detail", "token", TokenHash(token), "error", err.Error())
		}
		return refuse(err)
	}
	u := resp.User
	if log := h.Log.V(4); log.Enabled() {
		log.Info("Token authenticated", "username", u.GetName(), "object", info.object, "token", TokenHash(token))
	}
	if cached.hit {
		if enc := cached.item.status.Load(); enc != nil {
			return verdict{encoded: *enc, result: ResultAuthenticated, issuer: v.issuer}
		}
	}
	status := authenticationv1.TokenReviewStatus{
		Authenticated: true,
		User: authenticationv1.UserInfo{
			Username: u.GetName(),
			UID:      u.GetUID(),
			Groups:   u.GetGroups(),
		},
		Audiences: resp.Audiences,
	}
	if extra := u.GetExtra(); len(extra) > 0 {
		status.User.Extra = make(map[string]authenticationv1.ExtraValue, len(extra))
		for k, v := range extra {
			status.User.Extra[k] = v
		}
	}
	if cached.hit {
		enc := appendStatus(nil, status)
		cached.item.status.Store(&enc)
	}
	return verdict{status: status, result: ResultAuthenticated, issuer: v.issuer}
}

// errNotAuthenticated stands for an authenticator's "no" without an error, which the router never gives.
var errNotAuthenticated = errors.New("token is not valid")

// checkForm is what the handler checks of a token before anything reads it: that it is there, not
// longer than maxTokenBytes, and a compact JWS in canonical form. Its errors name no part of the token.
func checkForm(token string, maxTokenBytes int) error {
	switch {
	case token == "":
		return &formError{"token is empty"}
	case len(token) > maxTokenBytes:
		return &formError{fmt.Sprintf("token is longer than %d bytes", maxTokenBytes)}
	case !canonical(token):
		return ErrNonCanonicalToken
	}
	return nil
}

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBuffer returns buf to the pool unless a huge body grew it.
func putBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= 128<<10 {
		// The request body held a bearer token: a pooled buffer must not keep it readable.
		buf.Reset()
		b := buf.AvailableBuffer()
		clear(b[:cap(b)])
		buffers.Put(buf)
	}
}

// TokenHash is how a token appears in logs: the first 12 hex digits of its SHA-256, enough to correlate
// log lines and useless for replay.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}
