package authn

import (
	"context"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

func FuzzParseJWKS(f *testing.F) {
	iss, err := testissuer.New(jose.ES256)
	if err != nil {
		f.Fatal(err)
	}
	defer iss.Close()
	f.Add(iss.JWKS())
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseJWKS(data)
		if err != nil {
			return
		}
		if len(keys) == 0 || len(keys) > maxKeysPerSet {
			t.Fatalf("ParseJWKS returned %d keys without an error", len(keys))
		}
		for _, k := range keys {
			if !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
				t.Fatalf("ParseJWKS kept an unusable key: %+v", k)
			}
		}
	})
}

// FuzzAuthenticate drives the whole request path (peek, routing, signature, claims, mapping) with a
// fixed static key set. Nothing may panic, and whatever authenticates must carry the entry's prefix.
func FuzzAuthenticate(f *testing.F) {
	iss, err := testissuer.New(jose.RS256)
	if err != nil {
		f.Fatal(err)
	}
	defer iss.Close()
	cfg := baseConfig(iss)
	cfg.StaticJWKS, cfg.CABundle = iss.JWKS(), nil
	cfg.GroupsClaim = "groups"
	entry, err := NewEntry(cfg, EntryOptions{Compiler: sharedCompiler, Log: logr.Discard()})
	if err != nil {
		f.Fatal(err)
	}
	defer entry.Close()
	r := NewRouter()
	r.Store("hub", entry)
	for _, c := range []testissuer.Claims{
		testissuer.ServiceAccountClaims("ns", "sa", testAudience),
		{"sub": "system:admin", "aud": testAudience, "groups": []string{"system:masters"}},
		{"sub": "a", "aud": []string{}},
	} {
		tok, err := iss.Mint(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
	f.Fuzz(func(t *testing.T, token string) {
		resp, ok, err := r.AuthenticateToken(context.Background(), token)
		if !ok {
			if resp != nil {
				t.Fatal("response without authentication")
			}
			return
		}
		if err != nil {
			t.Fatalf("authenticated with an error: %v", err)
		}
		if !strings.HasPrefix(resp.User.GetName(), "hub:") {
			t.Fatalf("authenticated as %q, without the prefix", resp.User.GetName())
		}
		for _, g := range resp.User.GetGroups() {
			if strings.HasPrefix(g, "system:") {
				t.Fatalf("system group %q", g)
			}
		}
	})
}
