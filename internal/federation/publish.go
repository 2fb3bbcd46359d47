package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Published says what PublishDiscovery wrote and what the upstream must change for it to be used.
type Published struct {
	Files []string
	// Issuer is the public issuer; CurrentIssuer the one the upstream uses today.
	Issuer, CurrentIssuer string
	JWKSURI               string
	// Flags are the kube-apiserver flags to set on the upstream.
	Flags []string
}

// PublishDiscovery writes the upstream's discovery document and JWKS under dir, laid out for static
// hosting at publicURL (publicURL/.well-known/openid-configuration and publicURL/openid/v1/jwks), with
// issuer and jwks_uri rewritten to publicURL. Every other field of the document is kept.
func PublishDiscovery(ctx context.Context, up *Upstream, publicURL, dir string) (*Published, error) {
	u, err := url.Parse(publicURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("--public-url %q must be an https URL without query, fragment or user info", publicURL)
	}
	publicURL = strings.TrimSuffix(publicURL, "/")
	raw, doc, err := up.Discovery(ctx)
	if err != nil {
		return nil, err
	}
	jwks, err := up.JWKS(ctx)
	if err != nil {
		return nil, err
	}
	p := &Published{Issuer: publicURL, CurrentIssuer: doc.Issuer, JWKSURI: publicURL + JWKSPath}
	raw["issuer"] = p.Issuer
	raw["jwks_uri"] = p.JWKSURI
	docJSON, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return nil, err
	}
	for path, content := range map[string][]byte{DiscoveryPath: docJSON, JWKSPath: compactJSON(jwks)} {
		file := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(path, "/")))
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil { //nolint:gosec // G301: published, public documents
			return nil, err
		}
		if err := os.WriteFile(file, append(content, '\n'), 0o644); err != nil { //nolint:gosec // G306: published, public documents
			return nil, err
		}
		p.Files = append(p.Files, file)
	}
	p.Flags = []string{
		"--service-account-issuer=" + p.Issuer,
		"--service-account-jwks-uri=" + p.JWKSURI,
	}
	if doc.Issuer != p.Issuer {
		// kube-apiserver signs with the first issuer and accepts tokens of all of them, so existing
		// tokens keep working while pods pick up new ones.
		p.Flags = append(p.Flags, "--service-account-issuer="+doc.Issuer+"   # second, while tokens of the old issuer are still in use")
	}
	return p, nil
}
