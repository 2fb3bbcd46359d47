package authn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authenticationv1beta1 "k8s.io/api/authentication/v1beta1"
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
	r, ok := decodeReviewFast(body)
	if !ok {
		r = reviewEnvelope{}
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, fmt.Errorf("%w: could not decode JSON", ErrBadReview)
		}
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
	buf := buffers.Get().(*bytes.Buffer)
	defer putBuffer(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, req.Body, limit)); err != nil {
		http.Error(w, fmt.Sprintf("request body larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
		return
	}
	review, err := DecodeReview(buf.Bytes()) // copies what it keeps: buf is reused below
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	start := time.Now()
	ctx, info := withReviewInfo(req.Context())
	status, result := h.review(ctx, review)
	buf.Reset()
	writeReview(w, buf, review.APIVersion, status)
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

// writeReview answers in the requested version (v1 and v1beta1 share the shape), encoding into buf
// without reflection; the bytes equal encoding/json's for the same TokenReview (tested). The response is
// built from the status alone, so spec.token can never leak back to the caller.
func writeReview(w http.ResponseWriter, buf *bytes.Buffer, apiVersion string, status authenticationv1.TokenReviewStatus) {
	b := buf.AvailableBuffer()
	b = append(b, `{"kind":"TokenReview","apiVersion":`...)
	b = appendJSONString(b, apiVersion)
	b = append(b, `,"metadata":{},"spec":{},"status":{`...)
	comma := false
	field := func(name string) {
		if comma {
			b = append(b, ',')
		}
		comma = true
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	if status.Authenticated {
		field("authenticated")
		b = append(b, "true"...)
	}
	field("user")
	b = appendUser(b, status.User)
	if len(status.Audiences) > 0 {
		field("audiences")
		b = appendStrings(b, status.Audiences)
	}
	if status.Error != "" {
		field("error")
		b = appendJSONString(b, status.Error)
	}
	b = append(b, "}}\n"...)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
	if cap(b) > buf.Cap() {
		*buf = *bytes.NewBuffer(b[:0]) // keep the grown array for the next review
	}
}

func appendUser(b []byte, u authenticationv1.UserInfo) []byte {
	b = append(b, '{')
	comma := false
	sep := func() {
		if comma {
			b = append(b, ',')
		}
		comma = true
	}
	if u.Username != "" {
		sep()
		b = append(b, `"username":`...)
		b = appendJSONString(b, u.Username)
	}
	if u.UID != "" {
		sep()
		b = append(b, `"uid":`...)
		b = appendJSONString(b, u.UID)
	}
	if len(u.Groups) > 0 {
		sep()
		b = append(b, `"groups":`...)
		b = appendStrings(b, u.Groups)
	}
	if len(u.Extra) > 0 {
		sep()
		b = append(b, `"extra":{`...)
		for i, k := range slices.Sorted(maps.Keys(u.Extra)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			if u.Extra[k] == nil {
				b = append(b, "null"...)
			} else {
				b = appendStrings(b, u.Extra[k])
			}
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendJSONString quotes s as encoding/json does by default: HTML-safe, invalid UTF-8 replaced by
// U+FFFD, and U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBuffer returns buf to the pool unless a huge body grew it.
func putBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= 128<<10 {
		buffers.Put(buf)
	}
}

// TokenHash is how a token appears in logs: the first 12 hex digits of its SHA-256, enough to correlate
// log lines and useless for replay.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}
