// Package serving holds the webhook's HTTPS concerns that are not the request path itself:
// authenticating the caller (kube-apiserver) by client certificate against a client CA that is re-read
// from disk when it changes.
package serving

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/go-logr/logr"
)

// VerifyOptionsProvider supplies the current client CA, as k8s.io/apiserver's dynamic CA content does.
type VerifyOptionsProvider interface {
	VerifyOptions() (x509.VerifyOptions, bool)
}

// ClientCertAuth admits only callers that present a client certificate signed by the client CA and,
// when AllowedNames is set, whose common name or a DNS name is one of them. Others get 401.
//
// The certificate is requested at the TLS layer but verified here, per request, so that a rotated CA
// file takes effect without rebuilding the listener and a refusal is an HTTP 401 that can be counted
// and logged, not an opaque handshake failure.
type ClientCertAuth struct {
	CA           VerifyOptionsProvider
	AllowedNames []string
	Next         http.Handler
	Log          logr.Logger

	rejected atomic.Int64
}

// Rejected counts refused requests.
func (a *ClientCertAuth) Rejected() int64 { return a.rejected.Load() }

func (a *ClientCertAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := a.verify(r); err != nil {
		a.rejected.Add(1)
		a.Log.V(2).Info("Caller refused", "remote", r.RemoteAddr, "reason", err.Error())
		http.Error(w, "unauthorized: "+err.Error(), http.StatusUnauthorized)
		return
	}
	a.Next.ServeHTTP(w, r)
}

func (a *ClientCertAuth) verify(r *http.Request) error {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return errors.New("a client certificate is required")
	}
	opts, ok := a.CA.VerifyOptions()
	if !ok {
		return errors.New("no client CA is loaded")
	}
	leaf := r.TLS.PeerCertificates[0]
	opts.Intermediates = x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("the client certificate is not trusted: %w", err)
	}
	if len(a.AllowedNames) > 0 && !slices.Contains(a.AllowedNames, leaf.Subject.CommonName) &&
		!slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return slices.Contains(a.AllowedNames, n) }) {
		return fmt.Errorf("the client certificate for %q is not among the allowed names", leaf.Subject.CommonName)
	}
	return nil
}
