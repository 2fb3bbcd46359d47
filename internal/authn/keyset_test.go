package authn

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

func remoteKeySet(t *testing.T, iss *testissuer.Issuer, minRefetch time.Duration) *KeySet {
	t.Helper()
	client, err := NewHTTPClient(iss.CAPEM())
	if err != nil {
		t.Fatal(err)
	}
	ks, err := NewKeySet(KeySetOptions{Issuer: iss.URL, Client: client, MinRefetchInterval: minRefetch, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ks.Start(ctx)
	waitFor(t, func() bool { return ks.Status().Attempted })
	return ks
}

func TestKeySetVerifies(t *testing.T) {
	t.Parallel()
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			iss := newIssuer(t, alg)
			ks := remoteKeySet(t, iss, time.Hour)
			st := ks.Status()
			if st.LastError != nil || len(st.Keys) != 1 || st.Keys[0].KID != iss.SigningKey().KID || st.JWKSURI != iss.URL+"/jwks" {
				t.Fatalf("status = %+v", st)
			}
			payload, err := ks.VerifySignature(context.Background(), mint(t, iss, testissuer.Claims{"sub": "a"}))
			if err != nil {
				t.Fatalf("VerifySignature() error = %v", err)
			}
			var c map[string]any
			if err := json.Unmarshal(payload, &c); err != nil || c["sub"] != "a" {
				t.Fatalf("payload = %s", payload)
			}
		})
	}
}

func TestKeySetRotationRefetchesOnUnknownKID(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	ks := remoteKeySet(t, iss, time.Millisecond)
	before := iss.JWKSFetches.Load()
	if _, err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.VerifySignature(context.Background(), mint(t, iss, nil)); err != nil {
		t.Fatalf("token signed by the rotated key: %v", err)
	}
	if got := iss.JWKSFetches.Load() - before; got != 1 {
		t.Fatalf("JWKS fetched %d times for one unknown kid, want 1", got)
	}
	if n := len(ks.Status().Keys); n != 2 {
		t.Fatalf("keys = %d, want old and new", n)
	}
}

func TestKeySetUnknownKIDFloodIsRateLimited(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	ks := remoteKeySet(t, iss, time.Hour)
	forger, err := testissuer.NewKey(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	iss.SetSigningKey(forger) // unknown kid, never published
	token := mint(t, iss, nil)
	before := iss.JWKSFetches.Load()
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ks.VerifySignature(context.Background(), token); err == nil {
				t.Error("forged token verified")
			}
		}()
	}
	wg.Wait()
	// The first key load was less than MinRefetchInterval ago, so the flood causes no fetch at all.
	if got := iss.JWKSFetches.Load() - before; got != 0 {
		t.Fatalf("200 unknown-kid tokens caused %d JWKS fetches, want 0", got)
	}
	if ks.Status().Suppressed == 0 {
		t.Fatal("suppressed refetches not counted")
	}
}

// TestKeySetSingleFlight: a burst of reviews of a token signed with a key the issuer has just rotated
// in causes one fetch; at most maxRefetchWaiters of them wait for it, the others answer at once, and
// afterwards every review verifies without another fetch.
func TestKeySetSingleFlight(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	ks := remoteKeySet(t, iss, time.Millisecond)
	if _, err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	iss.SetDelay(200 * time.Millisecond)
	token := mint(t, iss, nil)
	time.Sleep(5 * time.Millisecond) // let the rate limit window pass
	before := iss.JWKSFetches.Load()
	var wg sync.WaitGroup
	var verified atomic.Int64
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ks.VerifySignature(context.Background(), token); err == nil {
				verified.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := iss.JWKSFetches.Load() - before; got != 1 {
		t.Fatalf("50 concurrent unknown-kid reviews caused %d fetches, want 1", got)
	}
	if n := verified.Load(); n < 1 || n > maxRefetchWaiters {
		t.Fatalf("%d reviews verified during the fetch, want between 1 and %d (the waiters)", n, maxRefetchWaiters)
	}
	if _, err := ks.VerifySignature(context.Background(), token); err != nil {
		t.Fatalf("after the fetch: %v", err)
	}
	if got := iss.JWKSFetches.Load() - before; got != 1 {
		t.Fatalf("a review after the fetch fetched again (%d fetches)", got)
	}
}

func TestKeySetFailedRefreshKeepsLastGoodKeys(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.ES256)
	ks := remoteKeySet(t, iss, time.Millisecond)
	token := mint(t, iss, nil)
	iss.SetFailing(true)
	ks.refresh(context.Background())
	st := ks.Status()
	if st.LastError == nil || len(st.Keys) != 1 {
		t.Fatalf("after a failed refresh: status = %+v, want an error and the old key", st)
	}
	if _, err := ks.VerifySignature(context.Background(), token); err != nil {
		t.Fatalf("token no longer verifies after a failed refresh: %v", err)
	}
	iss.SetFailing(false)
	ks.refresh(context.Background())
	if st := ks.Status(); st.LastError != nil {
		t.Fatalf("recovered refresh: %v", st.LastError)
	}
}

func TestKeySetDeadIssuer(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	iss.SetFailing(true)
	ks := remoteKeySet(t, iss, time.Hour)
	st := ks.Status()
	if st.LastError == nil || len(st.Keys) != 0 {
		t.Fatalf("status = %+v, want an error and no keys", st)
	}
	if _, err := ks.VerifySignature(context.Background(), mint(t, iss, nil)); err == nil {
		t.Fatal("verified without keys")
	}
}

func TestKeySetDiscoveryIssuerMismatch(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	iss.SetDiscoveryIssuer("https://someone-else.example")
	ks := remoteKeySet(t, iss, time.Hour)
	if err := ks.Status().LastError; err == nil || !strings.Contains(err.Error(), "names issuer") {
		t.Fatalf("LastError = %v, want an issuer mismatch", err)
	}
}

func TestKeySetRefusesUntrustedCertificate(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	client, err := NewHTTPClient(nil) // system roots: the test server's certificate is not among them
	if err != nil {
		t.Fatal(err)
	}
	ks, err := NewKeySet(KeySetOptions{Issuer: iss.URL, Client: client, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	ks.refresh(context.Background())
	if err := ks.Status().LastError; err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("LastError = %v, want a certificate error", err)
	}
}

func TestKeySetBodyCap(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == wellKnownPath {
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": "https://" + r.Host, "jwks_uri": "https://" + r.Host + "/jwks"})
			return
		}
		_, _ = w.Write([]byte(`{"keys":[`))
		_, _ = w.Write([]byte(strings.Repeat(" ", 2*maxJWKSBytes)))
	}))
	t.Cleanup(srv.Close)
	ks, err := NewKeySet(KeySetOptions{Issuer: srv.URL, Client: srv.Client(), Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	ks.refresh(context.Background())
	if err := ks.Status().LastError; err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("LastError = %v, want a size error", err)
	}
}

func TestKeySetStatic(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	ks, err := NewKeySet(KeySetOptions{Issuer: iss.URL, StaticJWKS: iss.JWKS(), Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	iss.SetFailing(true) // a static key set never calls out
	if _, err := ks.VerifySignature(context.Background(), mint(t, iss, nil)); err != nil {
		t.Fatalf("VerifySignature() error = %v", err)
	}
	if iss.DiscoveryFetches.Load()+iss.JWKSFetches.Load() != 0 {
		t.Fatal("static key set fetched over the network")
	}
}

func TestParseJWKS(t *testing.T) {
	t.Parallel()
	rsaKey, _ := testissuer.NewKey(jose.RS256)
	ecKey, _ := testissuer.NewKey(jose.ES256)
	jwk := func(k testissuer.Key, use string) string {
		b, _ := json.Marshal(jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.KID, Use: use, Algorithm: string(k.Alg)})
		return string(b)
	}
	private, _ := json.Marshal(jose.JSONWebKey{Key: rsaKey.Private, KeyID: "private"})
	tests := []struct {
		name     string
		jwks     string
		wantKIDs []string
		wantErr  error
	}{
		{name: "rsa and ec", jwks: `{"keys":[` + jwk(rsaKey, "sig") + `,` + jwk(ecKey, "") + `]}`, wantKIDs: sortedKIDs(rsaKey.KID, ecKey.KID)},
		{name: "enc key skipped", jwks: `{"keys":[` + jwk(rsaKey, "enc") + `,` + jwk(ecKey, "sig") + `]}`, wantKIDs: []string{ecKey.KID}},
		{name: "symmetric key skipped", jwks: `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"hmac"},` + jwk(ecKey, "sig") + `]}`, wantKIDs: []string{ecKey.KID}},
		{name: "garbage key skipped", jwks: `{"keys":[{"kty":"RSA","n":"!!"},` + jwk(ecKey, "sig") + `]}`, wantKIDs: []string{ecKey.KID}},
		{name: "private key reduced to public", jwks: `{"keys":[` + string(private) + `]}`, wantKIDs: []string{"private"}},
		{name: "only enc", jwks: `{"keys":[` + jwk(rsaKey, "enc") + `]}`, wantErr: ErrNoKeys},
		{name: "empty", jwks: `{"keys":[]}`, wantErr: ErrNoKeys},
		{name: "not JSON", jwks: `nope`, wantErr: errAny},
		{name: "too many keys", jwks: `{"keys":[` + strings.Repeat(jwk(ecKey, "sig")+",", maxKeysPerSet) + jwk(ecKey, "sig") + `]}`, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			keys, err := ParseJWKS([]byte(tt.jwks))
			if tt.wantErr != nil {
				if err == nil || (!errors.Is(tt.wantErr, errAny) && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("ParseJWKS() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseJWKS() error = %v", err)
			}
			var kids []string
			for _, k := range keys {
				if !k.IsPublic() {
					t.Fatalf("key %q holds private material", k.KeyID)
				}
				kids = append(kids, k.KeyID)
			}
			if strings.Join(kids, ",") != strings.Join(tt.wantKIDs, ",") {
				t.Fatalf("kids = %v, want %v", kids, tt.wantKIDs)
			}
		})
	}
}

var errAny = errors.New("any error")

func sortedKIDs(a, b string) []string {
	if a < b {
		return []string{a, b}
	}
	return []string{b, a}
}
