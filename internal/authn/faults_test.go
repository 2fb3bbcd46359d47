package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// faultyIssuer serves discovery and a JWKS, and misbehaves in one chosen way once broken is set.
type faultyIssuer struct {
	server *httptest.Server
	good   *testissuer.Issuer // its keys and minting
	fault  string
	broken atomic.Bool
}

func newFaultyIssuer(t *testing.T, fault string, cert *tls.Certificate) *faultyIssuer {
	t.Helper()
	f := &faultyIssuer{good: newIssuer(t, jose.RS256), fault: fault}
	f.server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	if cert != nil {
		f.server.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	}
	f.server.StartTLS()
	t.Cleanup(f.server.Close)
	return f
}

func (f *faultyIssuer) serve(w http.ResponseWriter, r *http.Request) {
	broken := f.broken.Load()
	if r.URL.Path == wellKnownPath {
		iss := f.server.URL
		if broken && f.fault == "issuer mismatch" {
			iss = "https://someone-else.example"
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": f.server.URL + "/jwks"})
		return
	}
	if !broken {
		_, _ = w.Write(f.good.JWKS())
		return
	}
	switch f.fault {
	case "hang":
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	case "500":
		http.Error(w, "boom", http.StatusInternalServerError)
	case "50 MiB":
		chunk := []byte(strings.Repeat(" ", 1<<20))
		_, _ = w.Write([]byte(`{"keys":[`))
		for range 50 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	case "invalid JSON":
		_, _ = w.Write([]byte(`{"keys":[{"kty":`))
	case "use enc":
		var set map[string][]map[string]any
		_ = json.Unmarshal(f.good.JWKS(), &set)
		for _, k := range set["keys"] {
			k["use"] = "enc"
		}
		_ = json.NewEncoder(w).Encode(set)
	default:
		_, _ = w.Write(f.good.JWKS())
	}
}

// selfSignedCert returns a certificate for hosts valid from notBefore to notAfter, and its PEM.
func selfSignedCert(t *testing.T, hosts []string, ips []net.IP, notBefore, notAfter time.Time) (*tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "issuer"},
		NotBefore: notBefore, NotAfter: notAfter, DNSNames: hosts, IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestFaultyIssuers breaks one issuer in each way an issuer can break, after it served good keys once,
// and checks that clustertrust keeps the last good keys for it, reports a readable error, stays
// prompt, and keeps serving a healthy issuer next to it.
func TestFaultyIssuers(t *testing.T) {
	t.Parallel()
	loopback := []net.IP{net.ParseIP("127.0.0.1")}
	tests := []struct {
		name    string
		fault   string
		cert    func(t *testing.T) (*tls.Certificate, []byte)
		wantErr string
	}{
		{name: "hangs", fault: "hang", wantErr: "deadline exceeded"},
		{name: "answers 500", fault: "500", wantErr: "500"},
		{name: "answers 50 MiB", fault: "50 MiB", wantErr: "larger than"},
		{name: "answers invalid JSON", fault: "invalid JSON", wantErr: "could not decode JWKS"},
		{name: "publishes only encryption keys", fault: "use enc", wantErr: ErrNoKeys.Error()},
		{name: "claims another issuer", fault: "issuer mismatch", wantErr: "names issuer"},
		{name: "serves an expired certificate", cert: func(t *testing.T) (*tls.Certificate, []byte) {
			return selfSignedCert(t, nil, loopback, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
		}, wantErr: "expired"},
		{name: "serves a certificate for another host", cert: func(t *testing.T) (*tls.Certificate, []byte) {
			return selfSignedCert(t, []string{"other.example"}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		}, wantErr: "doesn't contain any IP SANs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			healthy := newIssuer(t, jose.ES256)
			var cert *tls.Certificate
			var caPEM []byte
			if tt.cert != nil {
				// Good keys are first loaded statically; the bad certificate only shows on refresh.
				cert, caPEM = tt.cert(t)
			}
			f := newFaultyIssuer(t, tt.fault, cert)
			if caPEM == nil {
				caPEM = pemOf(f.server.Certificate())
			}
			client, err := NewHTTPClient(caPEM)
			if err != nil {
				t.Fatal(err)
			}
			client.Timeout = 300 * time.Millisecond
			ks, err := NewKeySet(KeySetOptions{Issuer: f.server.URL, Client: client, MinRefetchInterval: time.Millisecond, Log: logr.Discard()})
			if err != nil {
				t.Fatal(err)
			}
			if tt.cert == nil {
				ks.refresh(context.Background())
				if err := ks.Status().LastError; err != nil || len(ks.Status().Keys) != 1 {
					t.Fatalf("first load: %v, %v", err, ks.Status().Keys)
				}
			} else {
				keys, _ := ParseJWKS(f.good.JWKS())
				ks.keys.Store(&keys)
			}
			f.broken.Store(true)

			start := time.Now()
			ks.refresh(context.Background())
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("a broken issuer held the refresh for %s", took)
			}
			st := ks.Status()
			if st.LastError == nil || !strings.Contains(st.LastError.Error(), tt.wantErr) {
				t.Fatalf("LastError = %v, want it to mention %q", st.LastError, tt.wantErr)
			}

			// Last good keys keep serving.
			f.good.URL = f.server.URL
			token, err := f.good.Mint(testissuer.Claims{"sub": "a", "aud": testAudience})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ks.VerifySignature(context.Background(), token); err != nil {
				t.Fatalf("last good key refused after a failed refresh: %v", err)
			}

			// A healthy issuer next to it is unaffected, even while the broken one is being refetched.
			r := NewRouter()
			r.Store("healthy", startEntry(t, baseConfig(healthy)))
			go func() {
				unknown, _ := testissuer.NewKey(jose.RS256)
				forged, _ := testissuer.Sign(unknown, testissuer.Claims{"iss": f.server.URL}, nil)
				_, _ = ks.VerifySignature(context.Background(), forged) // an unknown kid: triggers a refetch
			}()
			start = time.Now()
			if _, ok, err := r.AuthenticateToken(context.Background(), mint(t, healthy, testissuer.Claims{"sub": "b", "aud": testAudience})); !ok || err != nil {
				t.Fatalf("healthy issuer: %v, %v", ok, err)
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("healthy issuer took %s next to a broken one", took)
			}
		})
	}
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
