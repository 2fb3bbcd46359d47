//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/testissuer"
	"github.com/clustertrust/clustertrust/test/framework"
)

// The tests run in file order and each cleans up what it creates.

func TestServiceAccountTokenMapsToPrefixedUser(t *testing.T) {
	trust(t, "hub", nil)
	waitReady(t, "hub")
	token := upstream.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience)

	user, err := whoami(t, token)
	if err != nil {
		t.Fatalf("SelfSubjectReview: %v", err)
	}
	if want := "hub:system:serviceaccount:tenant-a:reconciler"; user != want {
		t.Fatalf("username = %q, want %q", user, want)
	}

	bindRole(t, "apps", "hub-reconciler", rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}, []string{"pods"}, []string{"list"})
	c := asToken(t, token)
	ctx := context.Background()
	framework.Eventually(t, 10*time.Second, "list pods in apps", func() error {
		_, err := c.CoreV1().Pods("apps").List(ctx, metav1.ListOptions{})
		return err
	})
	if _, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list pods in default: %v, want 403", err)
	}
	if _, err := c.CoreV1().Secrets("apps").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets in apps: %v, want 403", err)
	}
	if err := c.CoreV1().Pods("apps").Delete(ctx, "x", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("delete a pod in apps: %v, want 403", err)
	}
}

func TestGroupBindingGrantsUpstreamNamespace(t *testing.T) {
	trust(t, "hub", nil)
	waitReady(t, "hub")
	bindRole(t, "shared", "tenant-b-readers", rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "hub:system:serviceaccounts:tenant-b"}, []string{"configmaps"}, []string{"list"})
	ctx := context.Background()
	for _, sa := range []string{"builder", "deployer"} {
		c := asToken(t, upstream.serviceAccountToken(t, "tenant-b", sa, downstreamAudience))
		framework.Eventually(t, 10*time.Second, "tenant-b/"+sa+" lists configmaps", func() error {
			_, err := c.CoreV1().ConfigMaps("shared").List(ctx, metav1.ListOptions{})
			return err
		})
	}
	other := asToken(t, upstream.serviceAccountToken(t, "tenant-c", "builder", downstreamAudience))
	if _, err := other.CoreV1().ConfigMaps("shared").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("tenant-c/builder: %v, want 403", err)
	}
}

func TestUntrustedTokensAreRefused(t *testing.T) {
	trust(t, "hub", nil)
	waitReady(t, "hub")
	forger, err := testissuer.NewKey(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	claims := testissuer.ServiceAccountClaims("tenant-a", "reconciler", downstreamAudience)
	claims["iss"] = upstream.issuer(t)
	claims["iat"] = time.Now().Unix()
	claims["nbf"] = time.Now().Unix()
	claims["exp"] = time.Now().Add(time.Hour).Unix()
	forged, err := testissuer.Sign(forger, claims, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, token string }{
		{"wrong audience", upstream.serviceAccountToken(t, "tenant-a", "reconciler", "https://some-other-cluster.example:6443")},
		{"token from an untrusted third cluster", third.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience)},
		{"trusted iss signed by another key", forged},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := whoami(t, tc.token); !apierrors.IsUnauthorized(err) {
				t.Fatalf("err = %v, want 401", err)
			}
			if st := reviewDirect(t, tc.token); st.Authenticated {
				t.Fatalf("webhook authenticated it as %q", st.User.Username)
			}
		})
	}
}

func TestTrustAddedAndRemovedAtRuntime(t *testing.T) {
	token := upstream.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience)
	var addWebhook, addAPIServer, delWebhook, delAPIServer []time.Duration
	for i := range 3 {
		name := fmt.Sprintf("runtime-%d", i)
		if _, err := whoami(t, token); !apierrors.IsUnauthorized(err) {
			t.Fatalf("before trust: %v, want 401", err)
		}
		start := time.Now()
		trust(t, name, nil)
		framework.Eventually(t, 2*time.Second, "webhook accepts after create", func() error {
			if !reviewDirect(t, token).Authenticated {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		addWebhook = append(addWebhook, time.Since(start))
		framework.Eventually(t, 5*time.Second, "kube-apiserver accepts after create", func() error {
			_, err := whoami(t, token)
			return err
		})
		addAPIServer = append(addAPIServer, time.Since(start))

		start = time.Now()
		untrust(t, name)
		framework.Eventually(t, 2*time.Second, "webhook refuses after delete", func() error {
			if reviewDirect(t, token).Authenticated {
				return fmt.Errorf("still authenticated")
			}
			return nil
		})
		delWebhook = append(delWebhook, time.Since(start))
		// kube-apiserver caches successful token authentications for 10s regardless of the webhook TTL.
		framework.Eventually(t, 20*time.Second, "kube-apiserver refuses after delete", func() error {
			if _, err := whoami(t, token); !apierrors.IsUnauthorized(err) {
				return fmt.Errorf("err = %w", err)
			}
			return nil
		})
		delAPIServer = append(delAPIServer, time.Since(start))
	}
	t.Logf("median over 3 rounds: accepted by webhook %s, by kube-apiserver %s; refused by webhook %s, by kube-apiserver %s",
		median(addWebhook).Round(time.Millisecond), median(addAPIServer).Round(time.Millisecond),
		median(delWebhook).Round(time.Millisecond), median(delAPIServer).Round(time.Millisecond))
}

func TestUpstreamKeyRotation(t *testing.T) {
	trust(t, "hub", nil)
	waitReady(t, "hub")
	before := upstream.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience)
	if _, err := whoami(t, before); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	clusters(t, "rotate-key", "upstream")
	after := upstream.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience)
	if kid(t, after) == kid(t, before) {
		t.Fatal("the upstream did not switch to a new signing key")
	}
	for name, tok := range map[string]string{"new key": after, "old key": before} {
		framework.Eventually(t, 10*time.Second, name+" accepted", func() error {
			user, err := whoami(t, tok)
			if err != nil {
				return err
			}
			if user != "hub:system:serviceaccount:tenant-a:reconciler" {
				return fmt.Errorf("user = %q", user)
			}
			return nil
		})
	}
}

func TestUpstreamUnreachableKeepsServing(t *testing.T) {
	trust(t, "hub", nil)
	waitReady(t, "hub")
	token := upstream.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience)
	if _, err := whoami(t, token); err != nil {
		t.Fatal(err)
	}
	clusters(t, "stop", "upstream")
	t.Cleanup(func() { clusters(t, "start", "upstream") })

	// With a short key refresh interval, several background refreshes fail in this window.
	const window = 2 * time.Minute
	sawKeysSyncedFalse := false
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		if user, err := whoami(t, token); err != nil || user != "hub:system:serviceaccount:tenant-a:reconciler" {
			t.Fatalf("%s after the upstream stopped: user %q, err %v", time.Until(deadline), user, err)
		}
		ks, obj, err := condition("hub", v1alpha1.ConditionKeysSynced)
		if err != nil {
			t.Fatal(err)
		}
		if ks.Status == metav1.ConditionFalse && ks.Reason == v1alpha1.ReasonFetchFailed {
			sawKeysSyncedFalse = true
		}
		if ready, _, _ := condition(obj.Name, v1alpha1.ConditionReady); ready == nil || ready.Status != metav1.ConditionTrue {
			t.Fatalf("Ready = %+v while the upstream is unreachable, want True", ready)
		}
		time.Sleep(5 * time.Second)
	}
	if !sawKeysSyncedFalse {
		t.Fatal("KeysSynced never turned False while the upstream was unreachable")
	}
}

func TestStaticJWKSWithIssuerUnreachable(t *testing.T) {
	const audience = "https://static.downstream.example"
	upstream.issuer(t) // read while the upstream still answers
	jwks := upstream.jwks(t)
	token := upstream.serviceAccountToken(t, "tenant-a", "reconciler", audience)
	clusters(t, "stop", "upstream")
	t.Cleanup(func() { clusters(t, "start", "upstream") })

	trust(t, "hub-static", func(o *v1alpha1.OpenIDConnect) {
		o.Spec.Audiences = []string{audience}
		o.Spec.CABundle = nil
		o.Spec.JWKS = &v1alpha1.JWKSSpec{Keys: jwks}
	})
	waitReady(t, "hub-static")
	user, err := whoami(t, token)
	if err != nil {
		t.Fatalf("static keys: %v", err)
	}
	if want := "hub-static:system:serviceaccount:tenant-a:reconciler"; user != want {
		t.Fatalf("username = %q, want %q", user, want)
	}
}

// kid returns the key id in a token's header.
func kid(t *testing.T, token string) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Header.KeyID
}
