package authn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/go-logr/logr"

	"github.com/clustertrust/clustertrust/internal/testissuer"
)

const secretToken = "headerAA.eyJpc3MiOiJodHRwczovL2EifQ.signature-that-must-never-be-echoedA"

// fakeAuthenticator accepts the token "good.good.good" and rejects everything else.
type fakeAuthenticator struct{ gotAudiences []string }

func (f *fakeAuthenticator) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	f.gotAudiences, _ = authenticator.AudiencesFrom(ctx)
	switch token {
	case "good.good.good":
		return &authenticator.Response{
			User:      &user.DefaultInfo{Name: "hub:alice", UID: "u1", Groups: []string{"hub:dev"}, Extra: map[string][]string{"k": {"v"}}},
			Audiences: []string{"aud-1"},
		}, true, nil
	case "brok.brok.brok":
		return nil, false, errors.New("could not check")
	}
	return nil, false, errors.New("token signature is invalid")
}

func post(t *testing.T, h http.Handler, method, body string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, "/authenticate", strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec, out
}

func TestHandler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		method      string
		body        string
		wantCode    int
		wantVersion string
		wantAuthn   bool
		wantError   string
	}{
		{name: "v1 authenticated", body: `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"good.good.good","audiences":["aud-1"]}}`, wantCode: 200, wantVersion: "authentication.k8s.io/v1", wantAuthn: true},
		{name: "v1beta1 answered in v1beta1", body: `{"apiVersion":"authentication.k8s.io/v1beta1","kind":"TokenReview","spec":{"token":"good.good.good"}}`, wantCode: 200, wantVersion: "authentication.k8s.io/v1beta1", wantAuthn: true},
		{name: "rejected", body: `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + secretToken + `"}}`, wantCode: 200, wantVersion: "authentication.k8s.io/v1", wantError: "clustertrust: bad_signature: the token's signature does not verify"},
		{name: "empty token", body: `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{}}`, wantCode: 200, wantVersion: "authentication.k8s.io/v1", wantError: "token is empty"},
		{name: "oversized token", body: `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + strings.Repeat("a", MaxTokenBytes+1) + `"}}`, wantCode: 200, wantVersion: "authentication.k8s.io/v1", wantError: "longer than"},
		{name: "wrong kind", body: `{"apiVersion":"authentication.k8s.io/v1","kind":"SubjectAccessReview"}`, wantCode: 400},
		{name: "wrong version", body: `{"apiVersion":"authentication.k8s.io/v2","kind":"TokenReview"}`, wantCode: 400},
		{name: "malformed JSON", body: `{"apiVersion":`, wantCode: 400},
		{name: "body too large", body: `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + strings.Repeat("a", MaxTokenBytes+reviewEnvelopeBytes) + `"}}`, wantCode: 413},
		{name: "GET", method: http.MethodGet, wantCode: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			h := &Handler{Authenticator: &fakeAuthenticator{}, Log: logr.Discard()}
			rec, out := post(t, h, method, tt.body)
			if rec.Code != tt.wantCode {
				t.Fatalf("code = %d, want %d (%s)", rec.Code, tt.wantCode, rec.Body)
			}
			if strings.Contains(rec.Body.String(), secretToken) || strings.Contains(rec.Body.String(), "signature-that") {
				t.Fatal("response echoes the token")
			}
			if tt.wantCode != 200 {
				return
			}
			if out["apiVersion"] != tt.wantVersion || out["kind"] != "TokenReview" {
				t.Fatalf("answered %v %v", out["apiVersion"], out["kind"])
			}
			if _, ok := out["spec"]; ok {
				if spec, _ := out["spec"].(map[string]any); len(spec) > 0 {
					t.Fatalf("response carries a spec: %v", spec)
				}
			}
			status, _ := out["status"].(map[string]any)
			if got := status["authenticated"] == true; got != tt.wantAuthn {
				t.Fatalf("authenticated = %v, want %v", got, tt.wantAuthn)
			}
			if tt.wantError != "" && !strings.Contains(status["error"].(string), tt.wantError) {
				t.Fatalf("error = %v, want %q", status["error"], tt.wantError)
			}
		})
	}
}

func TestHandlerPassesAudiencesAndUser(t *testing.T) {
	t.Parallel()
	fake := &fakeAuthenticator{}
	h := &Handler{Authenticator: fake, Log: logr.Discard()}
	rec, _ := post(t, h, http.MethodPost, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"good.good.good","audiences":["aud-1","aud-2"]}}`)
	var review authenticationv1.TokenReview
	if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil {
		t.Fatal(err)
	}
	if strings.Join(fake.gotAudiences, ",") != "aud-1,aud-2" {
		t.Fatalf("authenticator saw audiences %v", fake.gotAudiences)
	}
	s := review.Status
	if s.User.Username != "hub:alice" || s.User.UID != "u1" || s.User.Groups[0] != "hub:dev" || s.User.Extra["k"][0] != "v" || s.Audiences[0] != "aud-1" {
		t.Fatalf("status = %+v", s)
	}
}

func FuzzDecodeReview(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"x","audiences":["a"]}}`))
	f.Add([]byte(`{"apiVersion":"authentication.k8s.io/v1beta1","kind":"TokenReview"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeReview(body)
		if err == nil && (r.Kind != "TokenReview" || !strings.HasPrefix(r.APIVersion, "authentication.k8s.io/")) {
			t.Fatalf("accepted %q", body)
		}
		if err != nil && !errors.Is(err, ErrBadReview) {
			t.Fatalf("error %v does not wrap ErrBadReview", err)
		}
	})
}

// blockingAuthenticator holds every review until release is closed.
type blockingAuthenticator struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blockingAuthenticator) AuthenticateToken(context.Context, string) (*authenticator.Response, bool, error) {
	b.entered <- struct{}{}
	<-b.release
	return nil, false, errors.New("refused")
}

func TestHandlerLimits(t *testing.T) {
	t.Parallel()
	review := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"xxxx.yyyy.zzzz"}}`
	t.Run("concurrency bound answers 429 with Retry-After", func(t *testing.T) {
		t.Parallel()
		b := &blockingAuthenticator{entered: make(chan struct{}, 2), release: make(chan struct{})}
		h := &Handler{Authenticator: b, Log: logr.Discard(), MaxInFlight: 2}
		done := make(chan struct{})
		for range 2 {
			go func() { post(t, h, http.MethodPost, review); done <- struct{}{} }()
		}
		<-b.entered
		<-b.entered
		rec, _ := post(t, h, http.MethodPost, review)
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("third concurrent review: %d %v, want 429 with Retry-After", rec.Code, rec.Header())
		}
		close(b.release)
		<-done
		<-done
		rec, _ = post(t, h, http.MethodPost, review)
		if rec.Code != http.StatusOK {
			t.Fatalf("after the others finished: %d", rec.Code)
		}
	})
	t.Run("configured token size", func(t *testing.T) {
		t.Parallel()
		h := &Handler{Authenticator: &fakeAuthenticator{}, Log: logr.Discard(), MaxTokenBytes: 1024}
		_, out := post(t, h, http.MethodPost, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+strings.Repeat("a", 1025)+`"}}`)
		if status, _ := out["status"].(map[string]any); !strings.Contains(status["error"].(string), "longer than 1024 bytes") {
			t.Fatalf("out = %v", out)
		}
	})
}

// TestWriteReviewMatchesEncodingJSON pins the hand-written encoder to encoding/json's bytes for the
// same TokenReview, tricky strings included.
func TestWriteReviewMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	tricky := []string{"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>", "ctl \x00\x01\x08\x0c\n\r\t\x1f\x7f",
		"utf8 é ☃ 𝄞", "bad \xff\xfe utf8", "sep \u2028 \u2029", "hub:system:serviceaccount:tenant-a:reconciler"}
	statuses := []authenticationv1.TokenReviewStatus{
		{},
		{Error: "token is not valid"},
		{Authenticated: true, User: authenticationv1.UserInfo{Username: "a"}},
		{Authenticated: true, Audiences: []string{"x", "y"}, User: authenticationv1.UserInfo{
			Username: "hub:a", UID: "hub:u", Groups: []string{"g1", "g2"},
			Extra: map[string]authenticationv1.ExtraValue{"z/last": {"1"}, "a/first": {"2", "3"}, "m/nil": nil, "e/empty": {}},
		}},
	}
	for _, s := range tricky {
		statuses = append(statuses, authenticationv1.TokenReviewStatus{Authenticated: true, Error: s, Audiences: []string{s}, User: authenticationv1.UserInfo{
			Username: s, UID: s, Groups: []string{s, s}, Extra: map[string]authenticationv1.ExtraValue{s: {s}},
		}})
	}
	for _, version := range []string{"authentication.k8s.io/v1", "authentication.k8s.io/v1beta1"} {
		for i, st := range statuses {
			want, err := json.Marshal(&authenticationv1.TokenReview{TypeMeta: metav1.TypeMeta{APIVersion: version, Kind: "TokenReview"}, Status: st})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			writeReview(rec, &bytes.Buffer{}, version, st)
			if got := rec.Body.String(); got != string(want)+"\n" {
				t.Errorf("%s status %d:\n got %s\nwant %s", version, i, got, want)
			}
		}
	}
}

// TestCachedAnswerIsTheSameBytes: a success the cache holds is written from the encoding its first
// hit kept, and that must be the very answer an uncached review writes, in either API version.
func TestCachedAnswerIsTheSameBytes(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, jose.RS256)
	r := NewRouter()
	r.Store("hub", startEntry(t, baseConfig(iss)))
	token := mint(t, iss, testissuer.ServiceAccountClaims("tenant-a", "reconciler", testAudience))
	uncached := &Handler{Authenticator: r, Issuers: r, Log: logr.Discard()}
	cached := &Handler{Authenticator: NewCachingAuthenticator(r, CacheOptions{TTL: time.Hour}), Issuers: r, Log: logr.Discard()}
	for _, version := range []string{"authentication.k8s.io/v1", "authentication.k8s.io/v1beta1"} {
		body := `{"apiVersion":"` + version + `","kind":"TokenReview","spec":{"token":"` + token + `","audiences":["` + testAudience + `","other"]}}`
		want, _ := post(t, uncached, http.MethodPost, body)
		if !strings.Contains(want.Body.String(), `"authenticated":true`) {
			t.Fatalf("not authenticated: %s", want.Body)
		}
		// v1: a miss, the first hit (which keeps the encoding), a hit of the kept encoding; v1beta1:
		// the same review (the same cache key) answered from v1's encoding.
		for i := range 3 {
			got, _ := post(t, cached, http.MethodPost, body)
			if got.Code != want.Code || got.Body.String() != want.Body.String() || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") {
				t.Fatalf("%s, review %d: %d %q, want %d %q", version, i+1, got.Code, got.Body, want.Code, want.Body)
			}
		}
	}
}

// TestPooledBodyBufferLeavesNoToken: request bodies are read into pooled buffers; one returned to the
// pool must not keep the bearer token readable.
func TestPooledBodyBufferLeavesNoToken(t *testing.T) {
	buf := new(bytes.Buffer)
	buf.WriteString(`{"spec":{"token":"eyJhbGciOiJSUzI1NiJ9.e30.c2VjcmV0LXNpZ25hdHVyZQ"}}`)
	putBuffer(buf)
	b := buf.AvailableBuffer()
	if bytes.Contains(b[:cap(b)], []byte("c2VjcmV0LXNpZ25hdHVyZQ")) {
		t.Fatal("a pooled body buffer still holds the token")
	}
}
