//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// leakWindow is the length of a token slice that must never appear anywhere: long enough that it cannot
// occur by chance, short enough to catch a truncated or partial token.
const leakWindow = 20

// TestNoTokenLeaks runs last (its file sorts last): after every other test of the package has sent its
// valid and invalid tokens through the webhook, running at debug verbosity (--v 4), it looks for any
// 20-character slice of any of those tokens in the webhook's logs, its metrics, the objects' status
// and the events.
func TestNoTokenLeaks(t *testing.T) {
	ctx := context.Background()
	// A few more reviews of its own, valid and invalid, so the test stands on its own.
	iss, err := testissuer.New("ES256")
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	obj := newOIDC("leak-check", iss)
	createOIDC(t, obj)
	good, _ := iss.Mint(testissuer.Claims{"sub": "alice", "aud": audience})
	expired, _ := iss.Mint(testissuer.Claims{"sub": "alice", "aud": audience, "exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix(), "nbf": time.Now().Add(-2 * time.Hour).Unix()})
	for _, tok := range []string{good, expired, good[:len(good)-5] + "AAAAA", "not-a-jwt-but-secret-looking-0123456789"} {
		reviewDirect(t, tok)
		_, _ = whoami(ctx, tok)
	}

	var haystack []string
	logs, err := os.ReadFile(webhookLog)
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) == 0 {
		t.Fatal("the webhook log is empty: the test would prove nothing")
	}
	haystack = append(haystack, string(logs))
	resp, err := http.Get(metricsURL) //nolint:noctx // loopback test server
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	haystack = append(haystack, string(metrics))
	var list v1alpha1.OpenIDConnectList
	if err := adminClient.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	statuses, _ := json.Marshal(list)
	haystack = append(haystack, string(statuses))
	events, err := kube.EventsV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventsJSON, _ := json.Marshal(events.Items)
	haystack = append(haystack, string(eventsJSON))

	grams := ngrams(haystack, leakWindow)
	sentMu.Lock()
	tokens := append([]string(nil), sent...)
	sentMu.Unlock()
	if len(tokens) < 10 {
		t.Fatalf("only %d tokens were sent: the test would prove little", len(tokens))
	}
	for _, tok := range tokens {
		for i := 0; i+leakWindow <= len(tok); i++ {
			if _, ok := grams[tok[i:i+leakWindow]]; ok {
				t.Fatalf("a %d-character slice of a token (at offset %d) appears in logs, metrics, status or events", leakWindow, i)
			}
		}
	}
	t.Logf("checked %d tokens against %d bytes of logs, %d of metrics, %d of status and %d of events",
		len(tokens), len(logs), len(metrics), len(statuses), len(eventsJSON))
}

// ngrams returns every n-character substring of the texts.
func ngrams(texts []string, n int) map[string]struct{} {
	out := map[string]struct{}{}
	for _, s := range texts {
		for i := 0; i+n <= len(s); i++ {
			out[s[i:i+n]] = struct{}{}
		}
	}
	return out
}
