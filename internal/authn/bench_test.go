package authn

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// benchEntry returns a router with one static-key entry for iss and a valid ServiceAccount token.
func benchRouter(b *testing.B, alg jose.SignatureAlgorithm) (*Router, string) {
	b.Helper()
	iss, err := testissuer.New(alg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(iss.Close)
	cfg := Config{
		Name: "hub", Issuer: iss.URL, Audiences: []string{testAudience}, StaticJWKS: iss.JWKS(),
		UsernameClaim: "sub", UsernamePrefix: "hub:", GroupsPrefix: "hub:", ServiceAccountGroups: true,
	}
	e, err := NewEntry(cfg, EntryOptions{Compiler: sharedCompiler, Log: logr.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Close)
	r := NewRouter()
	r.Store("hub", e)
	tok, err := iss.Mint(testissuer.ServiceAccountClaims("tenant-a", "reconciler", testAudience))
	if err != nil {
		b.Fatal(err)
	}
	return r, tok
}

func BenchmarkAuthenticate(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256} {
		b.Run(string(alg)+"/cold", func(b *testing.B) {
			r, tok := benchRouter(b, alg)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := r.AuthenticateToken(ctx, tok); !ok {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(alg)+"/cached", func(b *testing.B) {
			r, tok := benchRouter(b, alg)
			c := NewCachingAuthenticator(r, CacheOptions{TTL: time.Hour})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := c.AuthenticateToken(ctx, tok); !ok {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPeekIssuer(b *testing.B) {
	_, tok := benchRouter(b, jose.ES256)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PeekIssuer(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRouterLookup measures peek plus routing with many issuers: the per-review cost must not
// grow with the number of OpenIDConnect objects.
func BenchmarkRouterLookup(b *testing.B) {
	key, err := testissuer.NewKey(jose.ES256)
	if err != nil {
		b.Fatal(err)
	}
	jwks := []byte(fmt.Sprintf(`{"keys":[%s]}`, mustJSON(jose.JSONWebKey{Key: key.Private.Public(), KeyID: key.KID, Use: "sig"})))
	for _, n := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("issuers=%d", n), func(b *testing.B) {
			r := NewRouter()
			for i := range n {
				cfg := Config{Name: fmt.Sprintf("o%d", i), Issuer: fmt.Sprintf("https://issuer-%d.example", i), Audiences: []string{"a"}, StaticJWKS: jwks, UsernameClaim: "sub"}
				ks, err := NewKeySet(KeySetOptions{Issuer: cfg.Issuer, StaticJWKS: jwks})
				if err != nil {
					b.Fatal(err)
				}
				r.Store(cfg.Name, &Entry{cfg: cfg, keys: ks, cancel: func() {}})
			}
			tok, err := testissuer.Sign(key, testissuer.Claims{"iss": fmt.Sprintf("https://issuer-%d.example", n/2), "sub": "a"}, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				iss, err := PeekIssuer(tok)
				if err != nil {
					b.Fatal(err)
				}
				if rt := r.lookup(iss); rt == nil || len(rt.entries) != 1 {
					b.Fatal("not routed")
				}
			}
		})
	}
}

// BenchmarkHandler is one review through the /authenticate handler (decode, authenticate, encode),
// without TLS: the handler's own share of a review.
func BenchmarkHandler(b *testing.B) {
	for _, cached := range []bool{false, true} {
		name := "uncached"
		if cached {
			name = "cached"
		}
		b.Run("RS256/"+name, func(b *testing.B) {
			r, tok := benchRouter(b, jose.RS256)
			var a TokenAuthenticator = r
			if cached {
				a = NewCachingAuthenticator(r, CacheOptions{TTL: time.Hour})
			}
			r.SetMaxInFlight(256) // as webhook serve's defaults
			h := &Handler{Authenticator: a, Issuers: r, Log: logr.Discard(), MaxInFlight: 256}
			body := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + tok + `","audiences":["` + testAudience + `"]}}`)
			b.ReportAllocs()
			for b.Loop() {
				w := &discardResponse{header: http.Header{}}
				h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/authenticate", bytes.NewReader(body)))
				if w.status != 0 && w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}

type discardResponse struct {
	header http.Header
	status int
}

func (d *discardResponse) Header() http.Header         { return d.header }
func (d *discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardResponse) WriteHeader(status int)      { d.status = status }

// BenchmarkRouterStore measures replacing one entry in a router holding n entries: a change touches
// only its issuer, so the cost must not grow with n (loading n objects is then linear, not quadratic).
func BenchmarkRouterStore(b *testing.B) {
	key, err := testissuer.NewKey(jose.ES256)
	if err != nil {
		b.Fatal(err)
	}
	jwks := []byte(fmt.Sprintf(`{"keys":[%s]}`, mustJSON(jose.JSONWebKey{Key: key.Private.Public(), KeyID: key.KID, Use: "sig"})))
	entry := func(i int) *Entry {
		cfg := Config{Name: fmt.Sprintf("o%d", i), Issuer: fmt.Sprintf("https://issuer-%d.example", i), Audiences: []string{"a"}, StaticJWKS: jwks, UsernameClaim: "sub"}
		ks, err := NewKeySet(KeySetOptions{Issuer: cfg.Issuer, StaticJWKS: jwks})
		if err != nil {
			b.Fatal(err)
		}
		return &Entry{cfg: cfg, keys: ks, cancel: func() {}}
	}
	for _, n := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("issuers=%d", n), func(b *testing.B) {
			r := NewRouter()
			for i := range n {
				r.Store(fmt.Sprintf("o%d", i), entry(i))
			}
			replacement := entry(n / 2)
			b.ReportAllocs()
			for b.Loop() {
				r.Store(fmt.Sprintf("o%d", n/2), replacement)
			}
		})
	}
}
