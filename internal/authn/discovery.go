package authn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strings"
	"time"
)

const (
	// maxDiscoveryBytes bounds the discovery document; real ones are under 4 KiB.
	maxDiscoveryBytes = 64 << 10
	// maxJWKSBytes bounds a JWKS response; a few dozen RSA-4096 keys fit in well under 256 KiB, and a
	// hostile or broken issuer must not make us buffer more.
	maxJWKSBytes = 256 << 10
	// fetchTimeout bounds one discovery or JWKS request so that a hanging issuer only ever delays its
	// own key refresh, never a request for another issuer.
	fetchTimeout = 10 * time.Second
	// fetchDeadline bounds one whole key fetch, discovery and JWKS together.
	fetchDeadline = 2 * fetchTimeout
	// maxRedirects is how many redirects a discovery or JWKS request follows; issuers behind a CDN or a
	// load balancer use one or two.
	maxRedirects = 3
)

// ErrInsecureRedirect is returned when a discovery or JWKS request is redirected to a URL that is not
// https: keys fetched over plain HTTP could be replaced by anyone on the path.
var ErrInsecureRedirect = errors.New("refusing a redirect to a non-https URL")

// NewHTTPClient returns the client used for one issuer's discovery and JWKS fetches: TLS 1.2 or newer,
// trusting caBundle (PEM) instead of the system roots when it is set, with a per-request timeout.
func NewHTTPClient(caBundle []byte) (*http.Client, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caBundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caBundle) {
			return nil, errors.New("could not parse caBundle: no PEM certificates found")
		}
		tlsConfig.RootCAs = pool
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	transport.Proxy = nil // issuers are reached directly; a proxy would be one more party to trust
	return &http.Client{Transport: transport, Timeout: fetchTimeout, CheckRedirect: checkRedirect}, nil
}

// checkRedirect keeps discovery and JWKS fetches on https through redirects: the https check on the
// configured URL would mean nothing if a 302 could move the fetch to plain HTTP.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != "https" {
		return fmt.Errorf("%w (%s)", ErrInsecureRedirect, req.URL.Redacted())
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	return nil
}

// discoveryDocument holds the fields of /.well-known/openid-configuration that we use.
type discoveryDocument struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// discover fetches the discovery document at discoveryURL and returns its jwks_uri after checking that
// the document names issuer, as OpenID Connect Discovery requires; a mismatch means the document belongs
// to someone else.
func discover(ctx context.Context, client *http.Client, discoveryURL, issuer string) (string, error) {
	body, err := get(ctx, client, discoveryURL, acceptDiscovery, maxDiscoveryBytes)
	if err != nil {
		return "", fmt.Errorf("could not fetch discovery document: %w", err)
	}
	var doc discoveryDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("could not decode discovery document: %w", err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("discovery document names issuer %q, want %q", doc.Issuer, issuer)
	}
	if !strings.HasPrefix(doc.JWKSURI, "https://") {
		return "", fmt.Errorf("discovery document has jwks_uri %q, want an https URL", redact(doc.JWKSURI))
	}
	return doc.JWKSURI, nil
}

// Accept headers. kube-apiserver answers 406 to a JWKS request that does not accept
// application/jwk-set+json, so the JWKS fetch names both media types.
const (
	acceptDiscovery = "application/json"
	acceptJWKS      = "application/jwk-set+json, application/json"
)

// Fetch GETs url as key fetches do, for tools that read an issuer's documents: it accepts a JWKS or
// JSON, reads at most 256 KiB and gives up after 10 s.
func Fetch(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	return get(ctx, client, url, acceptJWKS, maxJWKSBytes)
}

// get performs one bounded GET and returns the body of a 200 response.
func get(ctx context.Context, client *http.Client, url, accept string, maxBytes int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("could not build request: %w", err)
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			ue.URL = redact(ue.URL) // the URL of the last redirect, as the issuer wrote it
		}
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", redact(url), resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("could not read %s: %w", redact(url), err)
	}
	if int64(len(body)) > maxBytes {
		return nil, fmt.Errorf("GET %s: response larger than %d bytes", redact(url), maxBytes)
	}
	return body, nil
}

// redact hides the password of a URL's user info: URLs from an issuer's documents and redirects end up
// in errors, and so in status conditions and logs.
func redact(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}
