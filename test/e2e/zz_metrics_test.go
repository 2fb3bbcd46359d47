//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// documentedMetrics are the metrics the README documents, each of which must have a non-zero sample
// after the suite. (clustertrust_unauthorized_callers_total needs --client-ca-file; the integration
// suite checks it.)
var documentedMetrics = []string{
	"clustertrust_tokenreviews_total",
	"clustertrust_tokenreview_duration_seconds_count",
	"clustertrust_jwks_fetches_total",
	"clustertrust_jwks_last_success_timestamp_seconds",
	"clustertrust_jwks_keyset_info",
	"clustertrust_unknown_kid_refetches_total",
	"clustertrust_cache_requests_total",
	"clustertrust_cache_entries",
	"clustertrust_cache_bytes",
	"clustertrust_issuers",
}

// TestMetricsAfterSuite runs last (its file sorts last) and scrapes clustertrust's /metrics.
func TestMetricsAfterSuite(t *testing.T) {
	url := os.Getenv("WEBHOOK_METRICS_URL")
	if url == "" {
		t.Fatal("WEBHOOK_METRICS_URL is not set: run `make test-e2e` (hack/e2e.sh)")
	}
	trust(t, "metrics", nil)
	waitReady(t, "metrics")
	token := upstream.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience)
	for range 2 { // the second is a cache hit
		if st := reviewDirect(t, token); !st.Authenticated {
			t.Fatalf("review: %+v", st)
		}
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	nonZero := map[string]bool{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		if i := strings.LastIndex(line, " "); i > 0 {
			rest = line[i+1:]
		}
		if v, err := strconv.ParseFloat(rest, 64); err == nil && v != 0 {
			nonZero[name] = true
		}
	}
	for _, m := range documentedMetrics {
		if !nonZero[m] {
			t.Errorf("metric %s has no non-zero sample", m)
		}
	}
}
