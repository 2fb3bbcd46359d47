// Package federation is the tooling side of clustertrust: reading an upstream issuer (through its
// Kubernetes API server with credentials, or directly), deciding how a downstream can trust it, writing
// its discovery documents for static hosting, and keeping a downstream's static keys current. The
// `webhook trust`, `publish-discovery` and `sync-keys` commands are thin wrappers over it.
package federation

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/clustertrust/clustertrust/internal/authn"
)

// The paths every kube-apiserver serves its ServiceAccount issuer's documents on.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/openid/v1/jwks"
)

// Upstream reads an issuer's discovery document and JWKS: through a Kubernetes API server with the
// credentials of a kubeconfig (which works for a private cluster), or, for any other OIDC issuer,
// directly from the issuer URL.
type Upstream struct {
	// API is set when the upstream is a Kubernetes cluster.
	API rest.Interface
	// APIHost and APICAPEM are the API server's URL and the CA the kubeconfig trusts for it (may be
	// empty when the kubeconfig trusts the system roots).
	APIHost  string
	APICAPEM []byte
	// IssuerURL and IssuerCAPEM are used when API is nil.
	IssuerURL   string
	IssuerCAPEM []byte
}

// NewKubernetesUpstream reads the upstream through the API server of cfg.
func NewKubernetesUpstream(cfg *rest.Config) (*Upstream, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("could not create a client for the upstream: %w", err)
	}
	ca := cfg.CAData
	if len(ca) == 0 && cfg.CAFile != "" {
		// rest.LoadTLSFiles fills CAData from CAFile.
		c := rest.CopyConfig(cfg)
		if err := rest.LoadTLSFiles(c); err != nil {
			return nil, err
		}
		ca = c.CAData
	}
	return &Upstream{API: cs.Discovery().RESTClient(), APIHost: strings.TrimSuffix(cfg.Host, "/"), APICAPEM: ca}, nil
}

// Discovery returns the issuer's discovery document, raw and decoded.
func (u *Upstream) Discovery(ctx context.Context) (map[string]any, Document, error) {
	if u.API == nil {
		return u.discoverIssuer(ctx)
	}
	body, err := u.API.Get().AbsPath(DiscoveryPath).DoRaw(ctx)
	if err != nil {
		return nil, Document{}, fmt.Errorf("could not read the upstream's discovery document: %w", err)
	}
	return decodeDocument(body)
}

// discoverIssuer runs OpenID Connect discovery against IssuerURL with go-oidc, which also checks that
// the document names the issuer it was fetched for.
func (u *Upstream) discoverIssuer(ctx context.Context) (map[string]any, Document, error) {
	hc, err := httpClient(u.IssuerCAPEM, nil)
	if err != nil {
		return nil, Document{}, err
	}
	defer hc.CloseIdleConnections()
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, hc), u.IssuerURL)
	if err != nil {
		return nil, Document{}, fmt.Errorf("could not read the issuer's discovery document: %w", err)
	}
	var raw map[string]any
	if err := provider.Claims(&raw); err != nil {
		return nil, Document{}, fmt.Errorf("could not decode the issuer's discovery document: %w", err)
	}
	body, err := json.Marshal(raw)
	if err != nil {
		return nil, Document{}, err
	}
	return decodeDocument(body)
}

// JWKS returns the issuer's key set, checked to hold at least one usable key.
func (u *Upstream) JWKS(ctx context.Context) ([]byte, error) {
	var body []byte
	var err error
	if u.API != nil {
		body, err = u.API.Get().AbsPath(JWKSPath).SetHeader("Accept", "application/jwk-set+json, application/json").DoRaw(ctx)
	} else {
		var doc Document
		if _, doc, err = u.Discovery(ctx); err == nil {
			body, err = fetch(ctx, doc.JWKSURI, u.IssuerCAPEM, nil)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("could not read the upstream's keys: %w", err)
	}
	if _, err := authn.ParseJWKS(body); err != nil {
		return nil, fmt.Errorf("the upstream's key set is not usable: %w", err)
	}
	return body, nil
}

// Document is the part of a discovery document this package uses.
type Document struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

func decodeDocument(body []byte) (map[string]any, Document, error) {
	var raw map[string]any
	var doc Document
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, doc, fmt.Errorf("could not decode the discovery document: %w", err)
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, doc, fmt.Errorf("could not decode the discovery document: %w", err)
	}
	if !strings.HasPrefix(doc.Issuer, "https://") || !strings.HasPrefix(doc.JWKSURI, "https://") {
		return nil, doc, fmt.Errorf("the discovery document names issuer %q and jwks_uri %q; both must be https URLs", doc.Issuer, doc.JWKSURI)
	}
	return raw, doc, nil
}

// httpClient is the client clustertrust itself would use for an issuer with caPEM (authn.NewHTTPClient);
// without caPEM, roots (when not nil) replace the system roots, which is how tests stand for a public CA.
func httpClient(caPEM []byte, roots *x509.CertPool) (*http.Client, error) {
	hc, err := authn.NewHTTPClient(caPEM)
	if err != nil {
		return nil, err
	}
	if len(caPEM) == 0 && roots != nil {
		hc.Transport.(*http.Transport).TLSClientConfig.RootCAs = roots
	}
	return hc, nil
}

// fetch GETs url anonymously with httpClient(caPEM, roots), bounded as authn's key fetches are.
func fetch(ctx context.Context, url string, caPEM []byte, roots *x509.CertPool) ([]byte, error) {
	hc, err := httpClient(caPEM, roots)
	if err != nil {
		return nil, err
	}
	defer hc.CloseIdleConnections()
	return authn.Fetch(ctx, hc, url)
}
