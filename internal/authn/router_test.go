package authn

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

func TestRouterAuthenticates(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	r.Store("hub", startEntry(t, baseConfig(iss)))

	token := mint(t, iss, testissuer.ServiceAccountClaims("tenant-a", "reconciler", testAudience))
	resp, ok, err := r.AuthenticateToken(context.Background(), token)
	if err != nil || !ok {
		t.Fatalf("AuthenticateToken() = %v, %v", ok, err)
	}
	u := resp.User
	if got, want := u.GetName(), "hub:system:serviceaccount:tenant-a:reconciler"; got != want {
		t.Errorf("username = %q, want %q", got, want)
	}
	if got, want := u.GetGroups(), []string{"hub:system:serviceaccounts", "hub:system:serviceaccounts:tenant-a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("groups = %v, want %v", got, want)
	}
	if got, want := u.GetUID(), "hub:uid-reconciler"; got != want {
		t.Errorf("uid = %q, want %q", got, want)
	}
	wantExtra := map[string][]string{
		ExtraAuthenticatorName:  {"hub"},
		ExtraAuthenticatorUID:   {"uid-hub"},
		ExtraServiceAccountNS:   {"tenant-a"},
		ExtraServiceAccountName: {"reconciler"},
		ExtraServiceAccountUID:  {"uid-reconciler"},
		ExtraPodName:            {"reconciler-pod"},
		ExtraPodUID:             {"uid-pod-reconciler"},
		ExtraNodeName:           {"node-1"},
		"authentication.kubernetes.io/credential-id": {"JTI=jti-reconciler"},
	}
	if got := u.GetExtra(); !reflect.DeepEqual(got, wantExtra) {
		t.Errorf("extra = %v, want %v", got, wantExtra)
	}
}

func TestRouterMapping(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.ES256)
	tests := []struct {
		name       string
		mutate     func(*Config)
		claims     testissuer.Claims
		wantUser   string
		wantGroups []string
		wantErr    bool
	}{
		{name: "default prefix", claims: testissuer.Claims{"sub": "alice", "aud": testAudience}, wantUser: "hub:alice"},
		{name: "prefix disabled", mutate: func(c *Config) { c.UsernamePrefix = "" }, claims: testissuer.Claims{"sub": "alice", "aud": testAudience}, wantUser: "alice"},
		{name: "system username refused", mutate: func(c *Config) { c.UsernamePrefix = "" }, claims: testissuer.Claims{"sub": "system:admin", "aud": testAudience}, wantErr: true},
		{name: "other username claim", mutate: func(c *Config) { c.UsernameClaim = "email" }, claims: testissuer.Claims{"sub": "x", "email": "a@b.c", "email_verified": true, "aud": testAudience}, wantUser: "hub:a@b.c"},
		{name: "groups claim prefixed", mutate: func(c *Config) { c.GroupsClaim = "groups" }, claims: testissuer.Claims{"sub": "a", "groups": []string{"dev", "system:masters"}, "aud": testAudience}, wantUser: "hub:a", wantGroups: []string{"hub:dev", "hub:system:masters"}},
		{name: "system groups dropped without prefix", mutate: func(c *Config) { c.GroupsClaim = "groups"; c.GroupsPrefix = "" }, claims: testissuer.Claims{"sub": "a", "groups": []string{"dev", "system:masters"}, "aud": testAudience}, wantUser: "hub:a", wantGroups: []string{"dev"}},
		{name: "SA groups dropped without prefix", mutate: func(c *Config) { c.GroupsPrefix = "" }, claims: testissuer.ServiceAccountClaims("ns", "sa", testAudience), wantUser: "hub:system:serviceaccount:ns:sa"},
		{name: "SA groups off", mutate: func(c *Config) { c.ServiceAccountGroups = false }, claims: testissuer.ServiceAccountClaims("ns", "sa", testAudience), wantUser: "hub:system:serviceaccount:ns:sa"},
		{name: "required claim present", mutate: func(c *Config) { c.RequiredClaims = map[string]string{"tenant": "a"} }, claims: testissuer.Claims{"sub": "a", "tenant": "a", "aud": testAudience}, wantUser: "hub:a"},
		{name: "required claim wrong", mutate: func(c *Config) { c.RequiredClaims = map[string]string{"tenant": "a"} }, claims: testissuer.Claims{"sub": "a", "tenant": "b", "aud": testAudience}, wantErr: true},
		{name: "CEL username", mutate: func(c *Config) { c.ClaimMappings.Username.Expression = `"cel:" + claims.sub` }, claims: testissuer.Claims{"sub": "a", "aud": testAudience}, wantUser: "cel:a"},
		{name: "CEL username system refused", mutate: func(c *Config) { c.ClaimMappings.Username.Expression = `"system:" + claims.sub` }, claims: testissuer.Claims{"sub": "a", "aud": testAudience}, wantErr: true},
		{name: "CEL claim validation", mutate: func(c *Config) {
			c.ClaimValidationRules = []apiserver.ClaimValidationRule{{Expression: `claims.sub != "mallory"`, Message: "no mallory"}}
		}, claims: testissuer.Claims{"sub": "mallory", "aud": testAudience}, wantErr: true},
		{name: "lifetime within bound", mutate: func(c *Config) { c.MaxTokenLifetime = 2 * time.Hour }, claims: testissuer.Claims{"sub": "a", "aud": testAudience}, wantUser: "hub:a"},
		{name: "lifetime over bound", mutate: func(c *Config) { c.MaxTokenLifetime = time.Minute }, claims: testissuer.Claims{"sub": "a", "aud": testAudience}, wantErr: true},
		{name: "second audience accepted", mutate: func(c *Config) { c.Audiences = []string{"other", testAudience} }, claims: testissuer.Claims{"sub": "a", "aud": []string{testAudience, "x"}}, wantUser: "hub:a"},
		{name: "wrong audience", claims: testissuer.Claims{"sub": "a", "aud": "https://elsewhere"}, wantErr: true},
		{name: "expired", claims: testissuer.Claims{"sub": "a", "aud": testAudience, "exp": time.Now().Add(-time.Minute).Unix()}, wantErr: true},
		{name: "missing sub", claims: testissuer.Claims{"sub": nil, "aud": testAudience}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig(iss)
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			r := NewRouter()
			r.Store("hub", startEntry(t, cfg))
			resp, ok, err := r.AuthenticateToken(context.Background(), mint(t, iss, tt.claims))
			if tt.wantErr {
				if ok || err == nil {
					t.Fatalf("AuthenticateToken() = %v, %v; want a rejection", ok, err)
				}
				return
			}
			if err != nil || !ok {
				t.Fatalf("AuthenticateToken() = %v, %v", ok, err)
			}
			if got := resp.User.GetName(); got != tt.wantUser {
				t.Errorf("username = %q, want %q", got, tt.wantUser)
			}
			if got := resp.User.GetGroups(); len(got)+len(tt.wantGroups) > 0 && !reflect.DeepEqual(got, tt.wantGroups) {
				t.Errorf("groups = %v, want %v", got, tt.wantGroups)
			}
		})
	}
}

func TestRouterRejectsForgeries(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	r.Store("hub", startEntry(t, baseConfig(iss)))
	claims := testissuer.Claims{"iss": iss.URL, "sub": "a", "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	pubDER, err := x509.MarshalPKIXPublicKey(iss.SigningKey().Private.Public())
	if err != nil {
		t.Fatal(err)
	}
	other, err := testissuer.NewKey(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	sameKID := other
	sameKID.KID = iss.SigningKey().KID
	hmacWithPublicKey := func() string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubDER}, (&jose.SignerOptions{}).WithHeader("kid", iss.SigningKey().KID))
		if err != nil {
			t.Fatal(err)
		}
		obj, _ := signer.Sign([]byte(`{"iss":"` + iss.URL + `","sub":"a","aud":"` + testAudience + `","exp":9999999999}`))
		s, _ := obj.CompactSerialize()
		return s
	}
	algNone := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+iss.URL+`","sub":"a","aud":"`+testAudience+`","exp":9999999999}`)) + "."
	sign := func(k testissuer.Key) string {
		s, err := testissuer.Sign(k, claims, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct{ name, token string }{
		{"alg none", algNone},
		{"HS256 with the public key as secret", hmacWithPublicKey()},
		{"untrusted key, unknown kid", sign(other)},
		{"untrusted key, trusted kid", sign(sameKID)},
		{"tampered payload", func() string {
			good := sign(iss.SigningKey())
			parts := splitToken(good)
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"` + iss.URL + `","sub":"admin","aud":"` + testAudience + `","exp":9999999999}`))
			return parts[0] + "." + parts[1] + "." + parts[2]
		}()},
		{"unknown issuer", func() string {
			c := testissuer.Claims{}
			for k, v := range claims {
				c[k] = v
			}
			c["iss"] = "https://unknown.example"
			s, _ := testissuer.Sign(iss.SigningKey(), c, nil)
			return s
		}()},
		{"garbage", "not-a-token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, ok, _ := r.AuthenticateToken(context.Background(), tt.token)
			if ok || resp != nil {
				t.Fatalf("forged token authenticated as %v", resp.User)
			}
		})
	}
}

func TestRouterStoreDeleteAndOrder(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	token := mint(t, iss, testissuer.Claims{"sub": "a", "aud": testAudience})

	if _, ok, err := r.AuthenticateToken(context.Background(), token); ok || !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("empty router: %v, %v; want ErrUnknownIssuer", ok, err)
	}
	// Same username mapping, so no conflict: both are routed and the oldest answers first.
	newer := baseConfig(iss)
	newer.Name, newer.CreatedAt = "b-newer", time.Unix(2000, 0)
	older := baseConfig(iss)
	older.Name, older.CreatedAt = "z-older", time.Unix(1000, 0)
	r.Store(newer.Name, startEntry(t, newer))
	r.Store(older.Name, startEntry(t, older))
	authenticatedBy := func() string {
		resp, ok, err := r.AuthenticateToken(context.Background(), token)
		if !ok || err != nil {
			t.Fatalf("AuthenticateToken() = %v, %v", ok, err)
		}
		return resp.User.GetExtra()[ExtraAuthenticatorName][0]
	}
	for range 20 { // map order must never decide
		if got := authenticatedBy(); got != "z-older" {
			t.Fatalf("authenticated by %q, want the oldest entry", got)
		}
	}
	r.Delete(older.Name)
	if got := authenticatedBy(); got != "b-newer" {
		t.Fatalf("after deleting the oldest: authenticated by %q", got)
	}
	r.Delete(newer.Name)
	if _, ok, _ := r.AuthenticateToken(context.Background(), token); ok {
		t.Fatal("token accepted after every entry was deleted")
	}
	if r.Len() != 0 {
		t.Fatalf("Len() = %d", r.Len())
	}
}

func TestRouterAudiences(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	r.Store("hub", startEntry(t, baseConfig(iss)))
	token := mint(t, iss, testissuer.Claims{"sub": "a", "aud": []string{testAudience, "second"}})
	tests := []struct {
		name      string
		requested []string
		want      []string
	}{
		{name: "none requested", requested: nil, want: nil},
		{name: "intersection", requested: []string{"second", "foreign"}, want: []string{"second"}},
		{name: "foreign only is not vouched for", requested: []string{"https://cluster-b"}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if tt.requested != nil {
				ctx = authenticator.WithAudiences(ctx, tt.requested)
			}
			resp, ok, err := r.AuthenticateToken(ctx, token)
			if !ok || err != nil {
				t.Fatalf("AuthenticateToken() = %v, %v", ok, err)
			}
			if !slices.Equal(resp.Audiences, tt.want) {
				t.Fatalf("audiences = %v, want %v", resp.Audiences, tt.want)
			}
		})
	}
}

func TestNewEntryRejectsBadConfig(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"no audience", func(c *Config) { c.Audiences = nil }},
		{"http issuer", func(c *Config) { c.Issuer = "http://insecure.example" }},
		{"symmetric alg", func(c *Config) { c.SigningAlgs = []string{"HS256"} }},
		{"bad CA", func(c *Config) { c.CABundle = []byte("not pem") }},
		{"bad static JWKS", func(c *Config) { c.StaticJWKS = []byte(`{"keys":[]}`) }},
		{"CEL compile error", func(c *Config) { c.ClaimMappings.Username.Expression = "claims.sub +"; c.UsernamePrefix = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig(iss)
			tt.mutate(&cfg)
			if e, err := NewEntry(cfg, EntryOptions{Compiler: sharedCompiler}); err == nil {
				e.Close()
				t.Fatal("NewEntry() succeeded")
			}
		})
	}
}

func splitToken(s string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func TestRouterConflicts(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	token := mint(t, iss, testissuer.Claims{"sub": "a", "aud": testAudience})
	tests := []struct {
		name         string
		mutate       func(newer *Config)
		wantConflict bool
	}{
		{name: "different prefix, same audience", mutate: func(c *Config) { c.UsernamePrefix = "other:" }, wantConflict: true},
		{name: "different claim, same audience", mutate: func(c *Config) { c.UsernameClaim = "email" }, wantConflict: true},
		{name: "CEL username, same audience", mutate: func(c *Config) { c.UsernamePrefix = ""; c.ClaimMappings.Username.Expression = "claims.sub" }, wantConflict: true},
		{name: "different prefix, disjoint audiences", mutate: func(c *Config) { c.UsernamePrefix = "other:"; c.Audiences = []string{"elsewhere"} }},
		{name: "same mapping, different groups prefix", mutate: func(c *Config) { c.GroupsPrefix = "g:" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := NewRouter()
			older := baseConfig(iss)
			older.Name, older.CreatedAt = "older", time.Unix(1000, 0)
			newer := baseConfig(iss)
			newer.Name, newer.CreatedAt = "newer", time.Unix(2000, 0)
			tt.mutate(&newer)
			r.Store("newer", startEntry(t, newer)) // stored first: age, not arrival, decides
			r.Store("older", startEntry(t, older))
			winner, conflict := r.Conflict("newer")
			if conflict != tt.wantConflict || (conflict && winner != "older") {
				t.Fatalf("Conflict(newer) = %q, %v; want conflict %v with older", winner, conflict, tt.wantConflict)
			}
			if _, c := r.Conflict("older"); c {
				t.Fatal("the older entry is marked as conflicting")
			}
			if !tt.wantConflict {
				return
			}
			// The loser never authenticates, even for tokens only it would accept.
			resp, ok, _ := r.AuthenticateToken(context.Background(), token)
			if !ok || resp.User.GetExtra()[ExtraAuthenticatorName][0] != "older" {
				t.Fatalf("token authenticated by %v, want older", resp)
			}
			r.Delete("older")
			if _, c := r.Conflict("newer"); c {
				t.Fatal("still conflicting after the winner was deleted")
			}
			resp, ok, _ = r.AuthenticateToken(context.Background(), mint(t, iss, testissuer.Claims{"sub": "a", "email": "a@x", "aud": testAudience}))
			if !ok || resp.User.GetExtra()[ExtraAuthenticatorName][0] != "newer" {
				t.Fatalf("after the winner was deleted: %v, %v", ok, resp)
			}
		})
	}
}

func TestRouterCELAndClaims(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	base := testissuer.Claims{"sub": "alice", "aud": testAudience, "team": "blue", "roles": []string{"dev", "ops"}, "level": 3}
	tests := []struct {
		name      string
		mutate    func(*Config)
		claims    testissuer.Claims
		wantErr   string
		checkUser func(t *testing.T, u user.Info)
	}{
		{name: "CEL groups", mutate: func(c *Config) { c.ClaimMappings.Groups.Expression = `dyn(claims.roles).map(r, "team:" + r)` },
			checkUser: func(t *testing.T, u user.Info) {
				wantStrings(t, "groups", u.GetGroups(), []string{"team:dev", "team:ops"})
			}},
		{name: "CEL groups producing system: are dropped", mutate: func(c *Config) { c.ClaimMappings.Groups.Expression = `["system:masters", "ok"]` },
			checkUser: func(t *testing.T, u user.Info) { wantStrings(t, "groups", u.GetGroups(), []string{"ok"}) }},
		{name: "CEL uid", mutate: func(c *Config) { c.ClaimMappings.UID.Expression = `"uid-" + claims.sub` },
			checkUser: func(t *testing.T, u user.Info) { wantStrings(t, "uid", []string{u.GetUID()}, []string{"uid-alice"}) }},
		{name: "CEL extra", mutate: func(c *Config) {
			c.ClaimMappings.Extra = []apiserver.ExtraMapping{{Key: "example.com/team", ValueExpression: "claims.team"}}
		}, checkUser: func(t *testing.T, u user.Info) {
			wantStrings(t, "extra", u.GetExtra()["example.com/team"], []string{"blue"})
		}},
		{name: "user validation rule passes", mutate: func(c *Config) {
			c.UserValidationRules = []apiserver.UserValidationRule{{Expression: `!user.username.startsWith("hub:bob")`, Message: "no bob"}}
		}},
		{name: "user validation rule fails", mutate: func(c *Config) {
			c.UserValidationRules = []apiserver.UserValidationRule{{Expression: `!user.username.startsWith("hub:alice")`, Message: "alice is barred"}}
		}, wantErr: "alice is barred"},
		{name: "claim validation runtime error", mutate: func(c *Config) {
			c.ClaimValidationRules = []apiserver.ClaimValidationRule{{Expression: `claims.missing == "x"`, Message: "m"}}
		}, wantErr: "claim validation"},
		{name: "CEL username runtime error", mutate: func(c *Config) { c.UsernamePrefix = ""; c.ClaimMappings.Username.Expression = "claims.missing" }, wantErr: "username"},
		{name: "extra claims copied, missing skipped", mutate: func(c *Config) { c.ExtraClaims = []string{"team", "roles", "level", "absent"} },
			checkUser: func(t *testing.T, u user.Info) {
				x := u.GetExtra()
				wantStrings(t, "team", x[ExtraClaimPrefix+"team"], []string{"blue"})
				wantStrings(t, "roles", x[ExtraClaimPrefix+"roles"], []string{"dev", "ops"})
				wantStrings(t, "level", x[ExtraClaimPrefix+"level"], []string{"3"})
				if _, ok := x[ExtraClaimPrefix+"absent"]; ok {
					t.Error("a missing claim produced an extra")
				}
			}},
		{name: "required claims all present", mutate: func(c *Config) { c.RequiredClaims = map[string]string{"team": "blue", "sub": "alice"} }},
		{name: "required claim missing", mutate: func(c *Config) { c.RequiredClaims = map[string]string{"region": "eu"} }, wantErr: "region"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig(iss)
			tt.mutate(&cfg)
			r := NewRouter()
			r.Store("hub", startEntry(t, cfg))
			resp, ok, err := r.AuthenticateToken(context.Background(), mint(t, iss, base))
			if tt.wantErr != "" {
				if ok || err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("AuthenticateToken() = %v, %v; want an error containing %q", ok, err, tt.wantErr)
				}
				return
			}
			if !ok || err != nil {
				t.Fatalf("AuthenticateToken() = %v, %v", ok, err)
			}
			if tt.checkUser != nil {
				tt.checkUser(t, resp.User)
			}
		})
	}
}

func wantStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}
