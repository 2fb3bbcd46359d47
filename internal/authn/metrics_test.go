package authn

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	iss := newIssuer(t, jose.RS256)
	cfg := baseConfig(iss)
	cfg.MinRefetchInterval = time.Hour
	e, err := NewEntry(cfg, EntryOptions{Compiler: sharedCompiler, Log: logr.Discard(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	t.Cleanup(e.Close)
	waitFor(t, func() bool { return e.KeyStatus().Attempted })
	r := NewRouter()
	r.Store("hub", e)
	h := &Handler{Authenticator: NewCachingAuthenticator(r, CacheOptions{TTL: time.Minute, Metrics: m}), Log: logr.Discard(), Metrics: m}
	reviewBody := func(tok string) string {
		return `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + tok + `"}}`
	}
	good := mint(t, iss, testissuer.Claims{"sub": "a", "aud": testAudience})
	forger, _ := testissuer.NewKey(jose.RS256)
	unknownKID, _ := testissuer.Sign(forger, testissuer.Claims{"iss": iss.URL, "sub": "a", "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix()}, nil)
	stranger, _ := testissuer.Sign(forger, testissuer.Claims{"iss": "https://stranger.example", "sub": "a"}, nil)
	for _, tok := range []string{good, good, unknownKID, stranger} {
		post(t, h, http.MethodPost, reviewBody(tok))
	}

	hash := IssuerHash(iss.URL)
	checks := []struct {
		name   string
		metric prometheus.Collector
		labels []string
		want   float64
	}{
		{"authenticated reviews", m.reviews, []string{ResultAuthenticated, hash, ""}, 2},
		{"invalid reviews, by reason", m.reviews, []string{ResultInvalid, hash, ReasonUnknownKID}, 1},
		{"unknown issuer reviews carry no issuer label", m.reviews, []string{ResultUnknownIssuer, "", ReasonUnknownIssuer}, 1},
		{"successful fetches", m.fetches, []string{hash, "success"}, 1},
		{"suppressed refetches", m.refetches, []string{hash, "suppressed"}, 1},
		{"cache hits", m.cache, []string{"hit"}, 1},
		{"cache misses", m.cache, []string{"miss"}, 3},
	}
	for _, c := range checks {
		var got float64
		switch v := c.metric.(type) {
		case *prometheus.CounterVec:
			got = testutil.ToFloat64(v.WithLabelValues(c.labels...))
		}
		if got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.reviewDuration); n == 0 {
		t.Error("no review latency recorded")
	}
	if got := testutil.ToFloat64(m.lastFetch.WithLabelValues(hash)); got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last fetch timestamp %v", got)
	}
	if n := testutil.CollectAndCount(m.keySet); n != 1 {
		t.Errorf("keyset info series = %d, want 1", n)
	}
	// Issuer URLs never appear as labels.
	all, _ := reg.Gather()
	for _, mf := range all {
		if strings.Contains(mf.String(), iss.URL) || strings.Contains(mf.String(), "stranger.example") {
			t.Fatalf("%s carries an issuer URL", mf.GetName())
		}
	}
}
