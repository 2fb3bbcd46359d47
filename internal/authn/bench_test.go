package authn

import (
	"context"
	"fmt"
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
			r.mu.Lock()
			for i := range n {
				cfg := Config{Name: fmt.Sprintf("o%d", i), Issuer: fmt.Sprintf("https://issuer-%d.example", i), Audiences: []string{"a"}, StaticJWKS: jwks, UsernameClaim: "sub"}
				ks, err := NewKeySet(KeySetOptions{Issuer: cfg.Issuer, StaticJWKS: jwks})
				if err != nil {
					b.Fatal(err)
				}
				r.byKey[cfg.Name] = &Entry{cfg: cfg, keys: ks, cancel: func() {}}
			}
			r.rebuild()
			r.mu.Unlock()
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
				if len((*r.index.Load())[iss]) != 1 {
					b.Fatal("not routed")
				}
			}
		})
	}
}
