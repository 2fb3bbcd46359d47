package convert

import (
	"fmt"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apiserver/pkg/apis/apiserver"
)

// maxNameBase leaves room for a "-<n>" suffix within a DNS-1123 subdomain's 253 characters.
const maxNameBase = validation.DNS1123SubdomainMaxLength - 10

// ObjectNames returns the names FromAuthenticationConfiguration gives the objects of jwts: the
// issuer's host (then its port and path segments, joined by "-"), lowercased and made a DNS-1123
// subdomain, after NamePrefix. A name already taken by an earlier authenticator gets "-2", "-3", ...,
// so names are unique and depend only on the authenticators and their order.
func (o Options) ObjectNames(jwts []apiserver.JWTAuthenticator) ([]string, error) {
	// "system" is never given: an object of that name would default its prefixes to "system:".
	used := map[string]bool{"system": true}
	names := make([]string, 0, len(jwts))
	for i, j := range jwts {
		base := o.NamePrefix + nameFromIssuer(j.Issuer.URL)
		if len(base) > maxNameBase {
			base = strings.TrimRight(base[:maxNameBase], "-.")
		}
		name := base
		for n := 2; used[name]; n++ {
			name = fmt.Sprintf("%s-%d", base, n)
		}
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return nil, fmt.Errorf("jwt[%d] (%s): the object name %q is invalid (check the name prefix %q): %s", i, j.Issuer.URL, name, o.NamePrefix, strings.Join(errs, "; "))
		}
		used[name] = true
		names = append(names, name)
	}
	return names, nil
}

// nameFromIssuer makes a DNS-1123 subdomain of an issuer URL's host, port and path.
func nameFromIssuer(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil || u.Hostname() == "" {
		return "issuer"
	}
	labels := strings.Split(strings.ToLower(u.Hostname()), ".")
	last := []string{labels[len(labels)-1]}
	if p := u.Port(); p != "" {
		last = append(last, p)
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg != "" {
			last = append(last, strings.ToLower(seg))
		}
	}
	labels[len(labels)-1] = strings.Join(last, "-")
	var out []string
	for _, l := range labels {
		if l = dnsLabel(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return "issuer"
	}
	return strings.Join(out, ".")
}

// dnsLabel replaces what a DNS label may not hold with "-", collapses runs of "-" and trims them from
// the ends.
func dnsLabel(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.Trim(b.String(), "-")
}
