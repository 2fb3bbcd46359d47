package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// TestExplain runs `webhook explain` on tokens a user gets wrong, with objects from --config-dir whose
// keys come from the issuer's discovery, and checks the verdict, the exit code and the named fix.
func TestExplain(t *testing.T) {
	dir := t.TempDir()
	iss, err := testissuer.New(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	writeFile(t, filepath.Join(dir, "hub.yaml"), fmt.Sprintf(`apiVersion: authentication.clustertrust.io/v1alpha1
kind: OpenIDConnect
metadata: {name: hub}
spec:
  issuerURL: %s
  audiences: [https://downstream.example]
  caBundle: %s
`, iss.URL, base64.StdEncoding.EncodeToString(iss.CAPEM())))
	writeFile(t, filepath.Join(dir, "other.yaml"), `apiVersion: authentication.clustertrust.io/v1alpha1
kind: OpenIDConnect
metadata: {name: other}
spec:
  issuerURL: https://other.example
  audiences: [https://downstream.example]
`)
	now := time.Now()
	mint := func(claims testissuer.Claims) string {
		tok, err := iss.Mint(claims)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	stranger, _ := testissuer.NewKey(jose.RS256)
	unknownIssuer, _ := testissuer.MintFor(stranger, "https://stranger.example", testissuer.Claims{"aud": "https://downstream.example", "sub": "x"})
	for _, c := range []struct {
		name, token string
		code        int
		want        []string
	}{
		{"good", mint(testissuer.ServiceAccountClaims("tenant-a", "reconciler", "https://downstream.example")), 0,
			[]string{"Authenticated by hub as hub:system:serviceaccount:tenant-a:reconciler", "other  ", "not considered: its issuer is https://other.example"}},
		{"wrong audience", mint(testissuer.Claims{"sub": "a", "aud": "https://upstream.example"}), 1,
			[]string{"1. hub: refused: audience", `the token was minted for audience ["https://upstream.example"]`, "add one of the token's audiences to spec.audiences, or mint the token with --audience https://downstream.example"}},
		{"expired", mint(testissuer.Claims{"sub": "a", "aud": "https://downstream.example", "iat": now.Add(-2 * time.Hour).Unix(), "nbf": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()}), 1,
			[]string{"refused: expired", "the token expired at", "get a fresh one"}},
		{"unknown issuer", unknownIssuer, 1,
			[]string{"Not authenticated: unknown_issuer", `no OpenIDConnect object has spec.issuerURL "https://stranger.example"`}},
		{"not a token", "hello", 1, []string{"Not authenticated: malformed"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			cmd := NewRootCommand(&out, &errOut)
			cmd.SetIn(strings.NewReader(c.token + "\n"))
			cmd.SetArgs([]string{"explain", "--config-dir", dir, "--timeout", "10s"})
			code := 0
			if err := cmd.ExecuteContext(context.Background()); err != nil {
				code = 1
			}
			t.Logf("webhook explain:\n%s", out.String())
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, c.code, out.String(), errOut.String())
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if len(c.token) > 20 && strings.Contains(out.String()+errOut.String(), c.token[len(c.token)-20:]) {
				t.Fatal("the output holds the token's signature")
			}
		})
	}

	t.Run("json, from a file", func(t *testing.T) {
		tokenFile := filepath.Join(t.TempDir(), "token")
		writeFile(t, tokenFile, mint(testissuer.Claims{"sub": "a", "aud": "https://upstream.example"}))
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), []string{"explain", "--config-dir", dir, "--token-file", tokenFile, "--output", "json"}, &out, &errOut); code != 1 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		var report struct {
			Authenticated bool   `json:"authenticated"`
			Reason        string `json:"reason"`
			Attempts      []struct {
				Object, Reason, Hint string
			} `json:"attempts"`
			Claims struct {
				Aud []string `json:"aud"`
			} `json:"unverifiedClaims"`
		}
		if err := json.Unmarshal(out.Bytes(), &report); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		if report.Authenticated || report.Reason != "audience" || len(report.Attempts) != 1 || report.Attempts[0].Object != "hub" || report.Claims.Aud[0] != "https://upstream.example" {
			t.Fatalf("%+v", report)
		}
	})
}

// TestExplainSeesWhatTheWebhookServes: explain loads --config-dir as the file source does and routes as
// the router does: of two conflicting objects the one the webhook serves answers (the other is named as
// in Conflict), a file the webhook refuses is named and not used, an object being deleted is not routed,
// and --max-token-bytes is the webhook's.
func TestExplainSeesWhatTheWebhookServes(t *testing.T) {
	iss, err := testissuer.New(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	manifest := func(name string) string {
		return fmt.Sprintf(`apiVersion: authentication.clustertrust.io/v1alpha1
kind: OpenIDConnect
metadata: {name: %s}
spec:
  issuerURL: %s
  audiences: [https://downstream.example]
  caBundle: %s
`, name, iss.URL, base64.StdEncoding.EncodeToString(iss.CAPEM()))
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), manifest("zeta"))
	writeFile(t, filepath.Join(dir, "b.yaml"), manifest("alpha"))
	writeFile(t, filepath.Join(dir, "c.yaml"), manifest("alpha")) // declares alpha again: refused as a whole
	token := func() string {
		tok, err := iss.Mint(testissuer.Claims{"sub": "bob", "aud": "https://downstream.example"})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}()
	run := func(t *testing.T, stdin string, args ...string) (string, int) {
		t.Helper()
		var out, errOut bytes.Buffer
		cmd := NewRootCommand(&out, &errOut)
		cmd.SetIn(strings.NewReader(stdin))
		cmd.SetArgs(args)
		code := 0
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			code = 1
			var exit *exitError
			if errors.As(err, &exit) {
				code = exit.code
			}
		}
		return out.String() + errOut.String(), code
	}
	out, code := run(t, token, "explain", "--config-dir", dir)
	if code != 0 || !strings.Contains(out, "Authenticated by alpha as alpha:bob") ||
		!strings.Contains(out, "zeta                 not considered: not routed: it conflicts with alpha") ||
		!strings.Contains(out, "Refused file ") {
		t.Fatalf("exit %d:\n%s", code, out)
	}

	// An object being deleted is not routed.
	objs := []v1alpha1.OpenIDConnect{{ObjectMeta: metav1.ObjectMeta{Name: "gone", DeletionTimestamp: &metav1.Time{Time: time.Now()}},
		Spec: v1alpha1.OpenIDConnectSpec{IssuerURL: iss.URL, Audiences: []string{"https://downstream.example"}, CABundle: iss.CAPEM()}}}
	report, err := explain(context.Background(), objs, token, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if report.Authenticated || report.Objects[0].Considered || !strings.Contains(report.Objects[0].Why, "being deleted") {
		t.Fatalf("%+v", report)
	}

	// Errors exit 2, apart from "not authenticated" (1).
	if _, code := run(t, token, "explain", "--config-dir", filepath.Join(dir, "missing")); code != 2 {
		t.Errorf("a missing --config-dir: exit %d, want 2", code)
	}
	// The webhook's --max-token-bytes.
	if out, code := run(t, token, "explain", "--config-dir", dir, "--max-token-bytes", "100"); code != 1 || !strings.Contains(out, "longer than 100 bytes") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}
