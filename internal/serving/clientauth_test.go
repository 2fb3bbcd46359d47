package serving

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"

	"github.com/clustertrust/clustertrust/internal/pki"
)

func client(t *testing.T, serverCA []byte, cert *pki.Pair) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(serverCA)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		c, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

func TestClientCertAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCA, _ := pki.NewCA("server")
	serving, _ := serverCA.Serving("webhook", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	clientCA, _ := pki.NewCA("client")
	otherCA, _ := pki.NewCA("other")
	caFile := filepath.Join(dir, "client-ca.crt")
	if err := os.WriteFile(caFile, clientCA.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	ca, err := dynamiccertificates.NewDynamicCAContentFromFile("client-ca", caFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go ca.Run(ctx, 1)

	auth := &ClientCertAuth{CA: ca, AllowedNames: []string{"kube-apiserver"}, Log: logr.Discard(),
		Next: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	srv := httptest.NewUnstartedServer(auth)
	cert, _ := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	apiserver, _ := clientCA.Client("kube-apiserver")
	stranger, _ := clientCA.Client("someone-else")
	foreign, _ := otherCA.Client("kube-apiserver")
	get := func(c *pki.Pair) int {
		resp, err := client(t, serverCA.CertPEM(), c).Get(srv.URL) //nolint:noctx // bounded by the client timeout
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name string
		cert *pki.Pair
		want int
	}{
		{"allowed name", &apiserver, http.StatusOK},
		{"no certificate", nil, http.StatusUnauthorized},
		{"name not allowed", &stranger, http.StatusUnauthorized},
		{"signed by another CA", &foreign, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		if got := get(tt.cert); got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}
	if got := auth.Rejected(); got != 3 {
		t.Errorf("rejected = %d, want 3", got)
	}

	// Rotating the CA file takes effect without a restart.
	if err := os.WriteFile(caFile, otherCA.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(70 * time.Second) // fsnotify is immediate; the fallback poll is once a minute
	for get(&foreign) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the rotated client CA was not picked up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := get(&apiserver); got != http.StatusUnauthorized {
		t.Fatalf("a certificate of the replaced CA: status %d, want 401", got)
	}
}
