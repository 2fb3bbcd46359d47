//go:build integration

package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/testissuer"
	"github.com/clustertrust/clustertrust/test/framework"
)

func newOIDC(name string, iss *testissuer.Issuer) *v1alpha1.OpenIDConnect {
	return &v1alpha1.OpenIDConnect{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.OpenIDConnectSpec{
			IssuerURL: iss.URL,
			Audiences: []string{audience},
			CABundle:  iss.CAPEM(),
		},
	}
}

func createOIDC(t *testing.T, obj *v1alpha1.OpenIDConnect) {
	t.Helper()
	if err := adminClient.Create(context.Background(), obj); err != nil {
		t.Fatalf("create OpenIDConnect %s: %v", obj.Name, err)
	}
	t.Cleanup(func() { _ = adminClient.Delete(context.Background(), obj) })
}

func TestEndToEndThroughKubeAPIServer(t *testing.T) {
	ctx := context.Background()
	token := func() string {
		tok, err := issuer.Mint(testissuer.ServiceAccountClaims("tenant-a", "reconciler", audience))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}()

	if _, err := whoami(ctx, token); !apierrors.IsUnauthorized(err) {
		t.Fatalf("before any OpenIDConnect: err = %v, want 401", err)
	}

	createOIDC(t, newOIDC("hub", issuer))
	took := framework.Eventually(t, 10*time.Second, "token accepted after the object is created", func() error {
		_, err := whoami(ctx, token)
		return err
	})
	t.Logf("token accepted %s after the OpenIDConnect was created", took.Round(time.Millisecond))

	t.Run("SelfSubjectReview shows the prefixed username", func(t *testing.T) {
		got, err := whoami(ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		if want := "hub:system:serviceaccount:tenant-a:reconciler"; got != want {
			t.Fatalf("username = %q, want %q", got, want)
		}
	})

	t.Run("status reports Ready, keys and the example username", func(t *testing.T) {
		framework.Eventually(t, 10*time.Second, "Ready=True", func() error {
			c, obj, err := condition("hub", v1alpha1.ConditionReady)
			if err != nil {
				return err
			}
			if c.Status != metav1.ConditionTrue || c.Reason != v1alpha1.ReasonActive {
				return fmt.Errorf("Ready = %s/%s: %s", c.Status, c.Reason, c.Message)
			}
			ks := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionKeysSynced)
			if ks == nil || ks.Status != metav1.ConditionTrue {
				return fmt.Errorf("KeysSynced = %+v", ks)
			}
			s := obj.Status
			if s.ObservedGeneration != obj.Generation || s.JWKSURI != issuer.URL+"/jwks" || len(s.Keys) != 1 ||
				s.Keys[0].KID != issuer.SigningKey().KID || s.LastKeysRefreshTime == nil ||
				s.ExampleUsername != "hub:system:serviceaccount:<namespace>:<name>" || s.UsernamePrefix != "hub:" || s.KeyCount != 1 {
				return fmt.Errorf("status = %+v", s)
			}
			return nil
		})
	})

	t.Run("RBAC allows exactly what the RoleBinding grants", func(t *testing.T) {
		for _, ns := range []string{"team", "other"} {
			if err := adminClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		role := &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-reader", Namespace: "team"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "hub-reconciler", Namespace: "team"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "hub:system:serviceaccount:tenant-a:reconciler"}},
		}
		for _, o := range []client.Object{role, binding} {
			if err := adminClient.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		c, err := kubernetes.NewForConfig(framework.TokenConfig(env.Config, token))
		if err != nil {
			t.Fatal(err)
		}
		framework.Eventually(t, 10*time.Second, "list pods in team", func() error {
			_, err := c.CoreV1().Pods("team").List(ctx, metav1.ListOptions{})
			return err
		})
		if _, err := c.CoreV1().Pods("other").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("list pods in other: err = %v, want 403", err)
		}
		if _, err := c.CoreV1().Secrets("team").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("list secrets in team: err = %v, want 403", err)
		}
		if _, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("list namespaces: err = %v, want 403", err)
		}
	})

	t.Run("bad tokens are refused with 401", func(t *testing.T) {
		forger, err := testissuer.NewKey(jose.RS256)
		if err != nil {
			t.Fatal(err)
		}
		claims := testissuer.ServiceAccountClaims("tenant-a", "reconciler", audience)
		claims["iss"] = issuer.URL
		claims["exp"] = time.Now().Add(time.Hour).Unix()
		expired := testissuer.ServiceAccountClaims("tenant-a", "reconciler", audience)
		expired["exp"] = time.Now().Add(-time.Minute).Unix()
		expired["iat"] = time.Now().Add(-time.Hour).Unix()
		expired["nbf"] = time.Now().Add(-time.Hour).Unix()
		mustMint := func(c testissuer.Claims) string {
			tok, err := issuer.Mint(c)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		untrusted, err := testissuer.Sign(forger, claims, nil)
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(claims)
		algNone := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
		cases := map[string]string{
			"wrong audience": mustMint(testissuer.ServiceAccountClaims("tenant-a", "reconciler", "https://some-other-cluster:6443")),
			"expired":        mustMint(expired),
			"untrusted key":  untrusted,
			"alg none":       algNone,
		}
		for name, tok := range cases {
			if _, err := whoami(ctx, tok); !apierrors.IsUnauthorized(err) {
				t.Errorf("%s: err = %v, want 401", name, err)
			}
			if st := reviewDirect(t, tok); st.Authenticated || st.Error == "" || strings.Contains(st.Error, tok) {
				t.Errorf("%s: direct review = %+v", name, st)
			}
		}
	})

	t.Run("direct TokenReview answers audiences as the intersection", func(t *testing.T) {
		st := reviewDirect(t, token, "https://cluster-b.example", audience)
		if !st.Authenticated || len(st.Audiences) != 1 || st.Audiences[0] != audience {
			t.Fatalf("status = %+v, want audiences [%s]", st, audience)
		}
		st = reviewDirect(t, token, "https://cluster-b.example")
		if len(st.Audiences) != 0 {
			t.Fatalf("foreign audience vouched for: %v", st.Audiences)
		}
	})

	t.Run("deleting the object refuses its tokens", func(t *testing.T) {
		if err := adminClient.Delete(ctx, &v1alpha1.OpenIDConnect{ObjectMeta: metav1.ObjectMeta{Name: "hub"}}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		webhook := framework.Eventually(t, 5*time.Second, "webhook refuses the token", func() error {
			if reviewDirect(t, token).Authenticated {
				return fmt.Errorf("still authenticated")
			}
			return nil
		})
		apiserver := framework.Eventually(t, 30*time.Second, "kube-apiserver refuses the token", func() error {
			if _, err := whoami(ctx, token); !apierrors.IsUnauthorized(err) {
				return fmt.Errorf("err = %w", err)
			}
			return nil
		})
		_ = start
		t.Logf("after delete: webhook refused after %s, kube-apiserver after %s", webhook.Round(time.Millisecond), (webhook + apiserver).Round(time.Millisecond))
		if webhook > 2*time.Second {
			t.Errorf("webhook took %s to refuse a deleted issuer's token, want <= 2s", webhook)
		}
	})
}

func TestInvalidObjectIsReportedAndNotRouted(t *testing.T) {
	ctx := context.Background()
	iss, err := testissuer.New(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	bad := newOIDC("bad-cel", iss)
	bad.Spec.UsernamePrefix = ""
	bad.Spec.ClaimMappings = &v1alpha1.ClaimMappings{Username: &v1alpha1.CELExpression{Expression: "claims.sub +"}}
	createOIDC(t, bad)

	framework.WaitCondition(t, adminClient, "bad-cel", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, "claimMappings")
	tok, err := iss.Mint(testissuer.Claims{"sub": "alice", "aud": audience})
	if err != nil {
		t.Fatal(err)
	}
	if st := reviewDirect(t, tok); st.Authenticated {
		t.Fatal("token of an invalid object authenticated")
	}

	// Fixing the object routes it.
	var obj v1alpha1.OpenIDConnect
	if err := adminClient.Get(ctx, client.ObjectKey{Name: "bad-cel"}, &obj); err != nil {
		t.Fatal(err)
	}
	obj.Spec.ClaimMappings.Username.Expression = `"fixed:" + claims.sub`
	if err := adminClient.Update(ctx, &obj); err != nil {
		t.Fatal(err)
	}
	waitAuthenticatedAs(t, tok, "fixed:alice")
}

func TestKeysSyncedFalseKeepsServing(t *testing.T) {
	iss, err := testissuer.New(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	createOIDC(t, newOIDC("flaky", iss))
	tok, err := iss.Mint(testissuer.Claims{"sub": "alice", "aud": audience})
	if err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 10*time.Second, "authenticated", func() error {
		if !reviewDirect(t, tok).Authenticated {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	iss.SetFailing(true)
	// A token with an unknown kid forces a (failing) refetch; the webhook must keep its last good keys.
	if _, err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	unknown, _ := iss.Mint(testissuer.Claims{"sub": "bob", "aud": audience})
	framework.Eventually(t, 10*time.Second, "KeysSynced=False while Ready stays True", func() error {
		// Each review may trigger one refetch (at most one per --min-refetch-interval), which fails.
		if reviewDirect(t, unknown).Authenticated {
			t.Fatal("token of an unreachable issuer's unknown key authenticated")
		}
		ks, obj, err := condition("flaky", v1alpha1.ConditionKeysSynced)
		if err != nil {
			return err
		}
		ready := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
		if ks.Status != metav1.ConditionFalse || ks.Reason != v1alpha1.ReasonFetchFailed || ready == nil || ready.Status != metav1.ConditionTrue {
			return fmt.Errorf("KeysSynced = %+v, Ready = %+v", ks, ready)
		}
		return nil
	})
	if !reviewDirect(t, tok).Authenticated {
		t.Fatal("token of the last good key refused while the issuer is failing")
	}
}

func TestStaticKeysNeedNoNetwork(t *testing.T) {
	iss, err := testissuer.New(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	jwks := iss.JWKS()
	tok, err := iss.Mint(testissuer.Claims{"sub": "alice", "aud": audience})
	if err != nil {
		t.Fatal(err)
	}
	obj := newOIDC("static", iss)
	obj.Spec.CABundle = nil
	obj.Spec.JWKS = &v1alpha1.JWKSSpec{Keys: jwks}
	iss.Close() // the issuer is unreachable from here on
	createOIDC(t, obj)
	waitAuthenticatedAs(t, tok, "static:alice")
}

func TestReadyz(t *testing.T) {
	if err := waitHTTP(probeURL+"/readyz", time.Second); err != nil {
		t.Fatalf("readyz: %v", err)
	}
	if err := waitHTTP(probeURL+"/healthz", time.Second); err != nil {
		t.Fatalf("healthz: %v", err)
	}
}

// Every token a test sends is remembered, so TestNoTokenLeaks can look for it afterwards.
var (
	sentMu sync.Mutex
	sent   []string
)

func remember(token string) {
	sentMu.Lock()
	defer sentMu.Unlock()
	sent = append(sent, token)
}

func whoami(ctx context.Context, token string) (string, error) {
	remember(token)
	return framework.Whoami(ctx, env.Config, token)
}

func reviewDirect(t *testing.T, token string, audiences ...string) authenticationv1.TokenReviewStatus {
	t.Helper()
	remember(token)
	return framework.ReviewDirect(t, webhookURL, webhookCA, &reviewerCert, token, audiences...)
}

func condition(name, typ string) (*metav1.Condition, *v1alpha1.OpenIDConnect, error) {
	return framework.Condition(context.Background(), adminClient, name, typ)
}

func TestConflictingObjects(t *testing.T) {
	ctx := context.Background()
	iss, err := testissuer.New(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	createOIDC(t, newOIDC("first", iss))
	framework.WaitCondition(t, adminClient, "first", v1alpha1.ConditionReady, metav1.ConditionTrue, "", "")
	second := newOIDC("second", iss)
	second.Spec.UsernamePrefix = "other:"
	createOIDC(t, second)
	framework.WaitCondition(t, adminClient, "second", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonConflict, `"first"`)
	tok, err := iss.Mint(testissuer.Claims{"sub": "alice", "aud": audience})
	if err != nil {
		t.Fatal(err)
	}
	if user, err := whoami(ctx, tok); err != nil || user != "first:alice" {
		t.Fatalf("whoami = %q, %v; want the older object's mapping", user, err)
	}
	// Removing the older object hands the issuer to the newer one.
	if err := adminClient.Delete(ctx, newOIDC("first", iss)); err != nil {
		t.Fatal(err)
	}
	waitAuthenticatedAs(t, tok, "other:alice")
	framework.WaitCondition(t, adminClient, "second", v1alpha1.ConditionReady, metav1.ConditionTrue, "", "")
}

// waitAuthenticatedAs waits until the webhook, asked directly, authenticates token as username.
func waitAuthenticatedAs(t *testing.T, token, username string) {
	t.Helper()
	framework.Eventually(t, 10*time.Second, "authenticated as "+username, func() error {
		if st := reviewDirect(t, token); !st.Authenticated || st.User.Username != username {
			return fmt.Errorf("status = %+v", st)
		}
		return nil
	})
}

func TestCallerMustPresentAnAllowedClientCertificate(t *testing.T) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(webhookCA)
	stranger, err := tls.X509KeyPair(strangerCert.CertPEM, strangerCert.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "a name not allowed": {stranger}} {
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}}}
		resp, err := hc.Post(webhookURL, "application/json", strings.NewReader(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"x"}}`)) //nolint:noctx // bounded by the client timeout
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %s, want 401", name, resp.Status)
		}
	}
	// Probes stay reachable without any certificate.
	if err := waitHTTP(probeURL+"/readyz", time.Second); err != nil {
		t.Fatalf("readyz: %v", err)
	}
	// The refusals are counted.
	resp, err := http.Get(metricsURL) //nolint:noctx // loopback test server
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !regexp.MustCompile(`(?m)^clustertrust_unauthorized_callers_total [1-9]`).Match(body) {
		t.Fatalf("clustertrust_unauthorized_callers_total does not count the refusals:\n%s", grepLines(string(body), "unauthorized"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
