package authn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authenticationv1beta1 "k8s.io/api/authentication/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

	inflight chan struct{}
	once     sync.Once
}

func (h *Handler) maxTokenBytes() int {
	if h.MaxTokenBytes > 0 {
		return h.MaxTokenBytes
	}
	return MaxTokenBytes
}

// reviewEnvelope is the part of a TokenReview the handler reads. v1 and v1beta1 share this shape.
type reviewEnvelope struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       struct {
		Token     string   `json:"token"`
		Audiences []string `json:"audiences"`
	} `json:"spec"`
}

// ErrBadReview is wrapped by DecodeReview errors.
var ErrBadReview = errors.New("invalid TokenReview")

// DecodeReview parses a TokenReview request body.
func DecodeReview(body []byte) (*reviewEnvelope, error) {
	var r reviewEnvelope
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: could not decode JSON", ErrBadReview)
	}
	if r.Kind != "TokenReview" {
		return nil, fmt.Errorf("%w: kind must be TokenReview", ErrBadReview)
	}
	switch r.APIVersion {
	case authenticationv1.SchemeGroupVersion.String(), authenticationv1beta1.SchemeGroupVersion.String():
	default:
		return nil, fmt.Errorf("%w: apiVersion must be authentication.k8s.io/v1 or v1beta1", ErrBadReview)
	}
	return &r, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "only POST is allowed", http.StatusMethodNotAllowed)
		return
	}
	if h.MaxInFlight > 0 {
		h.once.Do(func() { h.inflight = make(chan struct{}, h.MaxInFlight) })
		select {
		case h.inflight <- struct{}{}:
			defer func() { <-h.inflight }()
		default:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many concurrent reviews", http.StatusTooManyRequests)
			return
		}
	}
	limit := int64(h.maxTokenBytes() + reviewEnvelopeBytes)
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, limit))
	if err != nil {
		http.Error(w, fmt.Sprintf("request body larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
		return
	}
	review, err := DecodeReview(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	start := time.Now()
	ctx, info := withReviewInfo(req.Context())
	status, result := h.review(ctx, review)
	writeReview(w, review.APIVersion, status)
	h.Metrics.review(result, info.issuer, time.Since(start))
}

// review authenticates the token of r and builds the v1 status to answer with, and the result label.
func (h *Handler) review(ctx context.Context, r *reviewEnvelope) (authenticationv1.TokenReviewStatus, string) {
	token := r.Spec.Token
	if token == "" {
		return authenticationv1.TokenReviewStatus{Error: "token is empty"}, ResultInvalid
	}
	if len(token) > h.maxTokenBytes() {
		return authenticationv1.TokenReviewStatus{Error: fmt.Sprintf("token is longer than %d bytes", h.maxTokenBytes())}, ResultInvalid
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	if len(r.Spec.Audiences) > 0 {
		ctx = authenticator.WithAudiences(ctx, r.Spec.Audiences)
	}
	resp, ok, err := h.Authenticator.AuthenticateToken(ctx, token)
	log := h.Log.V(4)
	if log.Enabled() {
		// Hash only when the line is written: a SHA-256 per review is not free on the hot path.
		log = log.WithValues("token", TokenHash(token))
	}
	if err != nil || !ok {
		msg := "token is not valid"
		if err != nil {
			msg = err.Error()
		}
		log.Info("Token rejected", "reason", msg)
		return authenticationv1.TokenReviewStatus{Error: msg}, classify(false, err)
	}
	u := resp.User
	log.Info("Token authenticated", "username", u.GetName())
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
	return status, ResultAuthenticated
}

// writeReview answers in the requested version. The response is built fresh, so spec.token can never
// leak back to the caller.
func writeReview(w http.ResponseWriter, apiVersion string, status authenticationv1.TokenReviewStatus) {
	var out any
	if apiVersion == authenticationv1beta1.SchemeGroupVersion.String() {
		s := authenticationv1beta1.TokenReviewStatus{
			Authenticated: status.Authenticated,
			User: authenticationv1beta1.UserInfo{
				Username: status.User.Username,
				UID:      status.User.UID,
				Groups:   status.User.Groups,
			},
			Audiences: status.Audiences,
			Error:     status.Error,
		}
		if status.User.Extra != nil {
			s.User.Extra = make(map[string]authenticationv1beta1.ExtraValue, len(status.User.Extra))
			for k, v := range status.User.Extra {
				s.User.Extra[k] = authenticationv1beta1.ExtraValue(v)
			}
		}
		out = &authenticationv1beta1.TokenReview{
			TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: "TokenReview"},
			Status:   s,
		}
	} else {
		out = &authenticationv1.TokenReview{
			TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: "TokenReview"},
			Status:   status,
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// TokenHash is how a token appears in logs: the first 12 hex digits of its SHA-256, enough to correlate
// log lines and useless for replay.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}
