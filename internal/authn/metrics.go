package authn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Review results, the values of the result label.
const (
	ResultAuthenticated = "authenticated"
	ResultInvalid       = "invalid"
	ResultUnknownIssuer = "unknown_issuer"
	ResultError         = "error"
	// ResultOverloaded is a review answered 429: all slots, or its issuer's share of them, were taken.
	ResultOverloaded = "overloaded"
)

// Metrics are the request path's Prometheus metrics. Issuers are labelled by IssuerHash, never by URL:
// a URL can be long and sensitive, and only routed issuers get a label so that an attacker choosing
// iss values cannot grow the label set. A nil *Metrics records nothing.
type Metrics struct {
	reviews        *prometheus.CounterVec
	reviewDuration *prometheus.HistogramVec
	fetches        *prometheus.CounterVec
	lastFetch      *prometheus.GaugeVec
	keySet         *prometheus.GaugeVec
	refetches      *prometheus.CounterVec
	cache          *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clustertrust_tokenreviews_total", Help: "TokenReviews answered, by result, issuer hash and refusal reason (empty when authenticated).",
		}, []string{"result", "issuer", "reason"}),
		reviewDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "clustertrust_tokenreview_duration_seconds", Help: "Time to answer a TokenReview, by result.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"result"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clustertrust_jwks_fetches_total", Help: "Discovery and JWKS fetches, by issuer hash and result (success or failure).",
		}, []string{"issuer", "result"}),
		lastFetch: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clustertrust_jwks_last_success_timestamp_seconds", Help: "When the issuer's keys were last fetched successfully (Unix time).",
		}, []string{"issuer"}),
		keySet: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clustertrust_jwks_keyset_info", Help: "1 for the key set each issuer currently uses, labelled by a hash of its JWKS.",
		}, []string{"issuer", "keyset"}),
		refetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clustertrust_unknown_kid_refetches_total", Help: "Key refetches caused by tokens with an unknown kid, by issuer hash and outcome (fetched or suppressed by the rate limit).",
		}, []string{"issuer", "outcome"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clustertrust_cache_requests_total", Help: "Result cache lookups, by result (hit or miss).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.reviews, m.reviewDuration, m.fetches, m.lastFetch, m.keySet, m.refetches, m.cache} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// IssuerHash labels an issuer in metrics: the first 8 hex digits of the SHA-256 of its URL.
func IssuerHash(issuer string) string {
	sum := sha256.Sum256([]byte(issuer))
	return hex.EncodeToString(sum[:4])
}

// reviewInfo travels in the context of one review so the router can say which issuer answered, and
// which object made the answer: the one that authenticated the token, or the first that refused it. It
// also carries what the review read of its token (see reviewToken), so that is read once.
type reviewInfo struct {
	issuer, object string
	token          *peekedToken
}

type reviewInfoKey struct{}

func withReviewInfo(ctx context.Context) (context.Context, *reviewInfo) {
	info := &reviewInfo{}
	return context.WithValue(ctx, reviewInfoKey{}, info), info
}

// reviewInfoOf is the review's info, or nil outside a review (the router used on its own).
func reviewInfoOf(ctx context.Context) *reviewInfo {
	info, _ := ctx.Value(reviewInfoKey{}).(*reviewInfo)
	return info
}

func noteIssuer(ctx context.Context, e *Entry) {
	if info := reviewInfoOf(ctx); info != nil && e != nil {
		info.issuer = e.issuerHash
	}
}

// noteObject records the object whose verdict the review answers with.
func noteObject(ctx context.Context, object string) {
	if info := reviewInfoOf(ctx); info != nil {
		info.object = object
	}
}

// classify maps the error of a refused review to a result label, from its reason, so both paths label
// the same refusal alike (the general path wraps the key set's errors with %v, which errors.Is cannot
// see through).
func classify(err error) string {
	switch reasonOf(err) {
	case ReasonOverload:
		return ResultOverloaded
	case ReasonUnknownIssuer:
		return ResultUnknownIssuer
	case ReasonInternal, ReasonNoKeys:
		return ResultError
	default:
		return ResultInvalid
	}
}

func (m *Metrics) review(result, issuer, reason string, took time.Duration) {
	if m == nil {
		return
	}
	m.reviews.WithLabelValues(result, issuer, reason).Inc()
	m.reviewDuration.WithLabelValues(result).Observe(took.Seconds())
}

func (m *Metrics) fetch(issuer string, err error, now time.Time, jwksHash string) {
	if m == nil {
		return
	}
	if err != nil {
		m.fetches.WithLabelValues(issuer, "failure").Inc()
		return
	}
	m.fetches.WithLabelValues(issuer, "success").Inc()
	m.lastFetch.WithLabelValues(issuer).Set(float64(now.Unix()))
	m.keySet.DeletePartialMatch(prometheus.Labels{"issuer": issuer})
	m.keySet.WithLabelValues(issuer, jwksHash).Set(1)
}

func (m *Metrics) refetch(issuer string, suppressed bool) {
	if m == nil {
		return
	}
	outcome := "fetched"
	if suppressed {
		outcome = "suppressed"
	}
	m.refetches.WithLabelValues(issuer, outcome).Inc()
}

func (m *Metrics) cacheLookup(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.cache.WithLabelValues("hit").Inc()
	} else {
		m.cache.WithLabelValues("miss").Inc()
	}
}
