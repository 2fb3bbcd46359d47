package authn

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// TestEveryReasonThroughTheHandler: for each refusal reason a token that earns it goes through the HTTP
// handler as serve wires it (cache, router admission, metrics). Each answer carries the reason and its
// object in status.error, counts under its reason label, and neither the answer nor the V(2) log line
// holds any part of the token.
func TestEveryReasonThroughTheHandler(t *testing.T) {
	now := time.Now()
	// One issuer per object, so each object sees only the tokens meant for it.
	objects := map[string]func(*Config){
		"hub":         func(*Config) {},
		"es-only":     func(c *Config) { c.SigningAlgs = []string{"ES256"} },
		"short-lived": func(c *Config) { c.MaxTokenLifetime = 10 * time.Minute },
		"team-a":      func(c *Config) { c.RequiredClaims = map[string]string{"team": "a"} },
		"by-email":    func(c *Config) { c.UsernameClaim = "email" },
		"groups":      func(c *Config) { c.GroupsClaim = "groups" },
		"rule": func(c *Config) {
			c.ClaimValidationRules = []apiserver.ClaimValidationRule{{Expression: "claims.sub == 'alice'", Message: "only alice"}}
		},
		"mapping": func(c *Config) {
			c.UsernameClaim, c.UsernamePrefix = "", ""
			c.ClaimMappings.Username = apiserver.PrefixedClaimOrExpression{Expression: "claims.nickname"}
		},
		"user-rule": func(c *Config) {
			c.UserValidationRules = []apiserver.UserValidationRule{{Expression: "!user.username.endsWith(':mallory')", Message: "not mallory"}}
		},
		"raw":  func(c *Config) { c.UsernamePrefix = "" },
		"down": func(*Config) {},
	}
	issuers := map[string]*testissuer.Issuer{}
	r := NewRouter()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	for name, configure := range objects {
		iss := newIssuer(t, jose.RS256)
		issuers[name] = iss
		cfg := baseConfig(iss)
		cfg.Name = name
		configure(&cfg)
		if name == "down" {
			iss.SetFailing(true)
		}
		e, err := NewEntry(cfg, EntryOptions{Compiler: sharedCompiler, Log: logr.Discard(), Metrics: m})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		e.Start()
		t.Cleanup(e.Close)
		waitFor(t, func() bool { return e.KeyStatus().Attempted })
		r.Store(name, e)
	}
	r.SetMaxInFlight(8)
	var logs strings.Builder
	log := funcr.New(func(prefix, args string) { logs.WriteString(prefix + args + "\n") }, funcr.Options{Verbosity: 2})
	h := &Handler{Authenticator: NewCachingAuthenticator(r, CacheOptions{TTL: time.Minute, Metrics: m}), Issuers: r, Log: log, Metrics: m, MaxInFlight: 8}

	claims := func(obj string, extra testissuer.Claims) testissuer.Claims {
		c := testissuer.Claims{"iss": issuers[obj].URL, "sub": "alice", "aud": testAudience, "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix()}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
				continue
			}
			c[k] = v
		}
		return c
	}
	signed := func(obj string, extra testissuer.Claims) string {
		tok, err := issuers[obj].Mint(claims(obj, extra))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	forger, _ := testissuer.NewKey(jose.RS256)
	forged := func(obj string, headers map[jose.HeaderKey]any) string {
		tok, err := testissuer.Sign(forger, claims(obj, nil), headers)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cases := []struct {
		reason, object, token string
		code                  int
	}{
		{ReasonMalformed, "", "bm90.YS5qd3Q.c2ln", 200},
		{ReasonMalformed, "", "not a token at all", 200},
		{ReasonUnknownIssuer, "", func() string { t, _ := testissuer.MintFor(forger, "https://stranger.example", nil); return t }(), 200},
		{ReasonUnknownKID, "hub", forged("hub", nil), 200},
		{ReasonBadSignature, "hub", forged("hub", map[jose.HeaderKey]any{"kid": issuers["hub"].SigningKey().KID}), 200},
		{ReasonAlgorithm, "es-only", signed("es-only", nil), 200},
		{ReasonExpired, "hub", signed("hub", testissuer.Claims{"exp": now.Add(-time.Hour).Unix(), "iat": now.Add(-2 * time.Hour).Unix()}), 200},
		{ReasonNotYetValid, "hub", signed("hub", testissuer.Claims{"nbf": now.Add(time.Hour).Unix()}), 200},
		{ReasonAudience, "hub", signed("hub", testissuer.Claims{"aud": "https://elsewhere.example"}), 200},
		{ReasonLifetime, "short-lived", signed("short-lived", testissuer.Claims{"exp": now.Add(time.Hour).Unix()}), 200},
		{ReasonRequiredClaim, "team-a", signed("team-a", nil), 200},
		{ReasonUsernameClaim, "by-email", signed("by-email", nil), 200},
		{ReasonGroupsClaim, "groups", signed("groups", testissuer.Claims{"groups": 42}), 200},
		{ReasonClaimRule, "rule", signed("rule", testissuer.Claims{"sub": "bob"}), 200},
		{ReasonClaimMapping, "mapping", signed("mapping", nil), 200},
		{ReasonUserRule, "user-rule", signed("user-rule", testissuer.Claims{"sub": "mallory"}), 200},
		{ReasonDistributedClaims, "groups", signed("groups", testissuer.Claims{
			"_claim_names":   map[string]any{"groups": "src1"},
			"_claim_sources": map[string]any{"src1": map[string]any{"endpoint": "https://127.0.0.1:1/groups"}},
		}), 200},
		{ReasonSystemIdentity, "raw", signed("raw", testissuer.Claims{"sub": "system:admin"}), 200},
		{ReasonEmptyUsername, "raw", signed("raw", testissuer.Claims{"sub": " "}), 200},
		{ReasonNoKeys, "down", signed("down", nil), 200},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		t.Run(c.reason, func(t *testing.T) {
			code, errText := postReview(t, h, c.token)
			if code != c.code {
				t.Fatalf("HTTP %d, want %d", code, c.code)
			}
			want := "clustertrust: " + c.reason + ": "
			if !strings.HasPrefix(errText, want) {
				t.Fatalf("status.error = %q, want it to start with %q", errText, want)
			}
			if c.object != "" && !strings.Contains(errText, "(OpenIDConnect "+c.object+")") {
				t.Errorf("status.error = %q does not name the object %s", errText, c.object)
			}
			assertNoTokenIn(t, c.token, errText)
			covered[c.reason] = true

			// explain gives the same verdict, with a hint for an object's refusal.
			x := r.Explain(context.Background(), c.token, nil, 0)
			if x.Authenticated || x.Reason != c.reason {
				t.Fatalf("Explain: authenticated %v, reason %q; the handler said %q", x.Authenticated, x.Reason, c.reason)
			}
			if c.object != "" {
				if len(x.Attempts) == 0 || x.Attempts[0].Object != c.object || x.Attempts[0].Hint == "" {
					t.Errorf("Explain attempts %+v: want %s first, with a hint", x.Attempts, c.object)
				}
			} else if x.Hint == "" {
				t.Errorf("Explain gives no hint for %s", c.reason)
			}
			b, _ := json.Marshal(x)
			assertNoTokenIn(t, c.token, string(b))
		})
	}
	t.Run("explain of a good token", func(t *testing.T) {
		x := r.Explain(context.Background(), signed("hub", nil), nil, 0)
		if !x.Authenticated || x.User == nil || x.User.Username != "hub:alice" || x.User.Object != "hub" || x.Claims.Issuer != issuers["hub"].URL {
			t.Fatalf("%+v", x)
		}
	})

	// Overload: the issuer's fair share is taken, so the next review of it is answered 429.
	t.Run(ReasonOverload, func(t *testing.T) {
		tok := signed("hub", nil)
		var releases []func()
		for {
			release, _, err := r.Admit(context.Background(), tok)
			if err != nil {
				break
			}
			releases = append(releases, release)
		}
		code, body := postReview(t, h, tok)
		for _, release := range releases {
			release()
		}
		if code != http.StatusTooManyRequests || !strings.Contains(body, "clustertrust: overload: ") {
			t.Fatalf("HTTP %d %q, want 429 naming the overload", code, body)
		}
		assertNoTokenIn(t, tok, body)
		covered[ReasonOverload] = true
	})

	// Internal: no token earns it; a review that runs out of time does.
	t.Run(ReasonInternal, func(t *testing.T) {
		slow := &Handler{Authenticator: authenticatorFunc(func(ctx context.Context, _ string) (*authenticator.Response, bool, error) {
			return nil, false, context.DeadlineExceeded
		}), Log: log, Metrics: m}
		tok := signed("hub", nil)
		code, errText := postReview(t, slow, tok)
		if code != 200 || !strings.HasPrefix(errText, "clustertrust: internal: ") {
			t.Fatalf("HTTP %d %q", code, errText)
		}
		covered[ReasonInternal] = true
	})

	for _, reason := range Reasons {
		if !covered[reason] {
			t.Errorf("no token earned reason %s", reason)
		}
		if refusalMessages[reason] == "" {
			t.Errorf("reason %s has no message", reason)
		}
	}
	// Each reason is counted under its label.
	for _, c := range cases {
		var sum float64
		for _, result := range []string{ResultInvalid, ResultUnknownIssuer, ResultError} {
			issuer := ""
			if c.object != "" {
				issuer = IssuerHash(issuers[c.object].URL)
			}
			sum += testutil.ToFloat64(m.reviews.WithLabelValues(result, issuer, c.reason))
		}
		if sum == 0 {
			t.Errorf("no review counted under reason %s", c.reason)
		}
	}
	if got := testutil.ToFloat64(m.reviews.WithLabelValues(ResultOverloaded, IssuerHash(issuers["hub"].URL), ReasonOverload)); got != 1 {
		t.Errorf("overloaded reviews counted %v, want 1", got)
	}
	// The V(2) log names the object, the reason and the token's hash, never the token.
	for _, c := range cases {
		assertNoTokenIn(t, c.token, logs.String())
	}
	if !strings.Contains(logs.String(), `"reason"="audience"`) || !strings.Contains(logs.String(), `"object"="hub"`) ||
		!strings.Contains(logs.String(), TokenHash(cases[8].token)) {
		t.Errorf("the V(2) refusal lines lack object, reason or token hash:\n%s", logs.String())
	}
}

type authenticatorFunc func(context.Context, string) (*authenticator.Response, bool, error)

func (f authenticatorFunc) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	return f(ctx, token)
}

// postReview sends a v1 TokenReview and returns the HTTP status and status.error (or the body when the
// answer is not a TokenReview).
func postReview(t *testing.T, h http.Handler, token string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": map[string]any{"token": token}})
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/authenticate", strings.NewReader(string(body)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return rec.Code, rec.Body.String()
	}
	var out struct {
		Status struct {
			Authenticated bool   `json:"authenticated"`
			Error         string `json:"error"`
		} `json:"status"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("answer is not a TokenReview: %v: %s", err, rec.Body.String())
	}
	if out.Status.Authenticated {
		t.Fatal("the token was authenticated")
	}
	assertNoTokenIn(t, token, rec.Body.String())
	return rec.Code, out.Status.Error
}

// assertNoTokenIn fails when any 16-character slice of token (or the whole of a shorter one) is in s.
func assertNoTokenIn(t *testing.T, token, s string) {
	t.Helper()
	const window = 16
	if len(token) <= window {
		if strings.Contains(s, token) {
			t.Fatalf("the token appears in %q", s)
		}
		return
	}
	for i := 0; i+window <= len(token); i++ {
		if strings.Contains(s, token[i:i+window]) {
			t.Fatalf("a slice of the token (at %d) appears in the output", i)
		}
	}
}

// TestRefusalOfTheObjectMeantForTheToken: two objects of one issuer for different audiences. An expired
// token minted for the second is refused as expired by the second, not as a wrong audience by the first,
// in status.error, the metric and explain alike.
func TestRefusalOfTheObjectMeantForTheToken(t *testing.T) {
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	for i, aud := range []string{"https://a.example", "https://b.example"} {
		cfg := baseConfig(iss)
		cfg.Name, cfg.Audiences, cfg.CreatedAt = []string{"hub-a", "hub-b"}[i], []string{aud}, time.Unix(int64(1000+i), 0)
		r.Store(cfg.Name, startEntry(t, cfg))
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{Authenticator: r, Issuers: r, Log: logr.Discard(), Metrics: m}
	now := time.Now()
	expired := mint(t, iss, testissuer.Claims{"sub": "x", "aud": "https://b.example", "iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()})
	if _, msg := postReview(t, h, expired); !strings.HasPrefix(msg, "clustertrust: expired: ") || !strings.Contains(msg, "OpenIDConnect hub-b") {
		t.Fatalf("status.error = %q, want expired by hub-b", msg)
	}
	if got := testutil.ToFloat64(m.reviews.WithLabelValues(ResultInvalid, IssuerHash(iss.URL), ReasonExpired)); got != 1 {
		t.Errorf("counted under expired: %v", got)
	}
	if x := r.Explain(context.Background(), expired, nil, 0); x.Reason != ReasonExpired {
		t.Errorf("explain says %s", x.Reason)
	}
	// A token for neither audience is still refused for its audience, by the first object.
	other := mint(t, iss, testissuer.Claims{"sub": "x", "aud": "https://c.example"})
	if _, msg := postReview(t, h, other); !strings.HasPrefix(msg, "clustertrust: audience: ") || !strings.Contains(msg, "OpenIDConnect hub-a") {
		t.Fatalf("status.error = %q, want audience by hub-a", msg)
	}
}
