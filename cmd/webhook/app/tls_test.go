package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/clustertrust/clustertrust/internal/pki"
)

// TestServingCertificateRotation replaces the serving certificate files under a running server, as
// cert-manager renews them in place, and checks that new connections get the new certificate.
func TestServingCertificateRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := pki.NewCA("rotation")
	if err != nil {
		t.Fatal(err)
	}
	issue := func() pki.Pair {
		p, err := ca.Serving("webhook", []net.IP{net.ParseIP("127.0.0.1")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first, second := issue(), issue()
	certFile, keyFile, err := first.Write(dir, "serving")
	if err != nil {
		t.Fatal(err)
	}
	watcher, err := certwatcher.New(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = watcher.Start(ctx) }()

	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}), watcher.GetCertificate, tls.NoClientCert)
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	served := func() string {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer func() { _ = conn.Close() }()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	serial := func(p pki.Pair) string {
		c, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		return leaf.SerialNumber.String()
	}
	if got := served(); got != serial(first) {
		t.Fatalf("serving %s, want the first certificate", got)
	}
	// Rename into place, as a Secret volume update does.
	if _, _, err := second.Write(dir, "next"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"crt", "key"} {
		if err := os.Rename(filepath.Join(dir, "next."+f), filepath.Join(dir, "serving."+f)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for served() != serial(second) {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was not served within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
