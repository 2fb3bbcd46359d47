package app

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clustertrust/clustertrust/internal/testissuer"
	"github.com/clustertrust/clustertrust/test/framework"
)

// TestServeFileSource runs the whole `webhook serve --source=file` process (the only test in this
// package that completes a server: metrics are process-global) with no API server anywhere: it answers a
// review from a manifest, keeps answering when the manifest is broken, reports the broken file in
// /metrics, and its probes say ready and live.
func TestServeFileSource(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := writeServing(t, dir)
	issuers := filepath.Join(dir, "issuers")
	if err := os.Mkdir(issuers, 0o700); err != nil {
		t.Fatal(err)
	}
	iss, err := testissuer.New(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	writeFile(t, filepath.Join(issuers, "hub.yaml"), fmt.Sprintf(`apiVersion: authentication.clustertrust.io/v1alpha1
kind: OpenIDConnect
metadata: {name: hub}
spec:
  issuerURL: %s
  audiences: [downstream]
  jwks: {keys: %s}
`, iss.URL, base64.StdEncoding.EncodeToString(iss.JWKS())))

	ports := make([]string, 3)
	for i := range ports {
		p, err := framework.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = strconv.Itoa(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	logs := &framework.SyncBuffer{}
	go func() {
		exited <- Main(ctx, []string{"serve", "--source=file", "--config-dir", issuers,
			"--bind-address", "127.0.0.1", "--secure-port", ports[0],
			"--tls-cert-file", cert, "--tls-private-key-file", key,
			"--metrics-bind-address", "127.0.0.1:" + ports[1], "--health-probe-bind-address", "127.0.0.1:" + ports[2],
		}, io.Discard, logs)
	}()
	defer func() {
		cancel()
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("serve exited with %d", code)
			}
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop within 20s")
		}
	}()

	probe := "http://127.0.0.1:" + ports[2]
	framework.Eventually(t, 10*time.Second, "ready", func() error { return get(probe + "/readyz") })
	for _, path := range []string{"/livez", "/healthz", "/livez/reviews"} {
		if err := get(probe + path); err != nil {
			t.Fatal(err)
		}
	}
	token, err := iss.Mint(testissuer.ServiceAccountClaims("tenant-a", "reconciler", "downstream"))
	if err != nil {
		t.Fatal(err)
	}
	url := "https://127.0.0.1:" + ports[0] + "/authenticate"
	if st := framework.ReviewDirect(t, url, ca.CertPEM(), nil, token, "downstream"); !st.Authenticated || st.User.Username != "hub:system:serviceaccount:tenant-a:reconciler" {
		t.Fatalf("review = %+v", st)
	}

	writeFile(t, filepath.Join(issuers, "hub.yaml"), "kind: [")
	metrics := "http://127.0.0.1:" + ports[1] + "/metrics"
	framework.Eventually(t, 10*time.Second, "the broken file counted", func() error {
		body, err := framework.Get(metrics)
		if err != nil {
			return err
		}
		if !strings.Contains(body, "clustertrust_config_invalid_files 1") {
			return errors.New("clustertrust_config_invalid_files is not 1")
		}
		// The other documented file-source metrics have non-zero samples too.
		for _, m := range []string{`clustertrust_config_reloads_total{result="ok"} `, `clustertrust_config_reloads_total{result="invalid_files"} `, "clustertrust_config_last_reload_success_timestamp_seconds "} {
			i := strings.Index(body, m)
			if i < 0 || strings.HasPrefix(body[i+len(m):], "0\n") {
				return fmt.Errorf("%s has no non-zero sample", m)
			}
		}
		return nil
	})
	if st := framework.ReviewDirect(t, url, ca.CertPEM(), nil, token, "downstream"); !st.Authenticated {
		t.Fatalf("after a broken edit the last good issuer stopped answering: %+v", st)
	}
	if strings.Contains(logs.String(), token) {
		t.Fatal("the token appeared in the logs")
	}
}

func get(url string) error {
	_, err := framework.Get(url)
	return err
}
