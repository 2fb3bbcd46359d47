//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/pki"
	"github.com/clustertrust/clustertrust/internal/testissuer"
	"github.com/clustertrust/clustertrust/test/framework"
)

// webhookRun runs `webhook args...` with stdin and returns its output and exit code.
func webhookRun(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin := os.Getenv("WEBHOOK_BIN")
	if bin == "" {
		t.Fatal("WEBHOOK_BIN is not set: run `make test-e2e` (hack/e2e.sh)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...) //nolint:gosec // G204: the binary under test
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("webhook %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// TestRefusalReasonInKubeAPIServerLog: kube-apiserver logs the status.error of a refused token, so the
// reason reaches the operator who reads kube-apiserver's log, and nothing of the token does.
func TestRefusalReasonInKubeAPIServerLog(t *testing.T) {
	trust(t, "hub", nil)
	waitReady(t, "hub")
	wrongAudience := upstream.serviceAccountToken(t, "tenant-a", "reconciler", "https://some-other-cluster.example:6443")
	untrusted := third.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience)
	for _, c := range []struct{ token, want string }{
		{wrongAudience, "clustertrust: audience: the token's audience (aud) is not one the object accepts (OpenIDConnect hub)"},
		{untrusted, "clustertrust: unknown_issuer: no OpenIDConnect object trusts the token's issuer (iss)"},
	} {
		if _, err := whoami(t, c.token); !apierrors.IsUnauthorized(err) {
			t.Fatalf("err = %v, want 401", err)
		}
		var log string
		framework.Eventually(t, 15*time.Second, "kube-apiserver logs the refusal's reason", func() error {
			log = clustersOutput(t, "apiserver-log", "downstream")
			if !strings.Contains(log, c.want) {
				return errors.New("not logged yet")
			}
			return nil
		})
		for i := 0; i+20 <= len(c.token); i += 10 {
			if strings.Contains(log, c.token[i:i+20]) {
				t.Fatalf("kube-apiserver's log holds a slice of the token at %d", i)
			}
		}
	}
}

// TestExplainNamesTheFix runs `webhook explain` against the downstream's objects on the mistakes users
// make with tokens: the wrong audience, an expired token, an issuer nobody trusts; and on a good one.
func TestExplainNamesTheFix(t *testing.T) {
	trust(t, "hub", nil)
	waitReady(t, "hub")
	// An OIDC issuer of the test's own, so a token can be expired (kube-apiserver mints none that are).
	oidc, err := testissuer.New(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	defer oidc.Close()
	trust(t, "corp", func(o *v1alpha1.OpenIDConnect) {
		o.Spec.IssuerURL, o.Spec.CABundle, o.Spec.UsernamePrefix = oidc.URL, oidc.CAPEM(), "corp:"
	})
	waitReady(t, "corp")
	now := time.Now()
	expired, err := oidc.Mint(testissuer.Claims{"sub": "alice", "aud": downstreamAudience,
		"iat": now.Add(-2 * time.Hour).Unix(), "nbf": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := os.Getenv("DOWNSTREAM_KUBECONFIG")
	for _, c := range []struct {
		name, token string
		code        int
		want        []string
	}{
		{"good", upstream.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience), 0,
			[]string{"Authenticated by hub as hub:system:serviceaccount:tenant-a:reconciler", "corp", "not considered"}},
		{"wrong audience", upstream.serviceAccountToken(t, "tenant-a", "reconciler", "https://some-other-cluster.example:6443"), 1,
			[]string{"refused: audience", "or mint the token with --audience " + downstreamAudience}},
		{"expired", expired, 1, []string{"corp: refused: expired", "get a fresh one"}},
		{"unknown issuer", third.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience), 1,
			[]string{"Not authenticated: unknown_issuer", "no OpenIDConnect object has spec.issuerURL " + `"` + third.issuer(t) + `"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := webhookRun(t, c.token, "explain", "--kubeconfig", kubeconfig)
			t.Logf("webhook explain:\n%s", out)
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, c.code, out, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("explain does not say %q:\n%s", w, out)
				}
			}
			if strings.Contains(out+errOut, c.token[len(c.token)-30:]) {
				t.Fatal("explain printed the token's signature")
			}
			// The webhook agrees: its verdict through kube-apiserver is explain's.
			_, err := whoami(t, c.token)
			if (err == nil) != (c.code == 0) {
				t.Fatalf("kube-apiserver: err %v; explain exit %d", err, c.code)
			}
		})
	}
}

// clustersOutput runs CLUSTERS_CMD with args and returns what it printed.
func clustersOutput(t *testing.T, args ...string) string {
	t.Helper()
	fields := strings.Fields(clustersCmd)
	out, err := exec.Command(fields[0], append(fields[1:], args...)...).CombinedOutput() //nolint:gosec // the test's own cluster control command
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", clustersCmd, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDoctorFindsWiringMistakes runs `webhook doctor` with the webhook kubeconfig the downstream
// kube-apiserver uses, and with the mistakes users make in it, and with an object that cannot be Ready.
// Each mistake is named with its fix; the real wiring passes. (The client-certificate mistakes need a
// webhook with --client-ca-file: the integration suite runs those against its mTLS webhook.)
func TestDoctorFindsWiringMistakes(t *testing.T) {
	good := os.Getenv("WEBHOOK_KUBECONFIG")
	if good == "" {
		t.Fatal("WEBHOOK_KUBECONFIG is not set: run `make test-e2e` (hack/e2e.sh)")
	}
	trust(t, "hub", nil)
	waitReady(t, "hub")
	base := []string{"doctor", "--webhook-kubeconfig", good, "--kubeconfig", os.Getenv("DOWNSTREAM_KUBECONFIG")}
	if u := os.Getenv("WEBHOOK_READYZ_URL"); u != "" {
		base = append(base, "--readyz-url", u)
	}
	out, errOut, code := webhookRun(t, "", base...)
	t.Logf("webhook doctor on the real wiring:\n%s", out)
	if code != 0 || strings.Contains(out, "fail ") {
		t.Fatalf("the real wiring: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, w := range []string{"ok    kubeconfig", "ok    tls", "ok    tokenreview", "ok    openidconnect/hub"} {
		if !strings.Contains(out, w) {
			t.Errorf("doctor does not report %q:\n%s", w, out)
		}
	}

	// A token through the live webhook: authenticated, and refused with the reason.
	tokenFile := t.TempDir() + "/token"
	if err := os.WriteFile(tokenFile, []byte(upstream.serviceAccountToken(t, "tenant-a", "reconciler", "https://some-other-cluster.example:6443")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, code = webhookRun(t, "", append(base, "--token-file", tokenFile)...)
	if code != 1 || !strings.Contains(out, "clustertrust: audience:") || !strings.Contains(out, "webhook explain") {
		t.Errorf("a refused token: exit %d\n%s", code, out)
	}

	cfg, err := clientcmd.LoadFromFile(good)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := pki.NewCA("not-clustertrusts-ca")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		mutate func(*clientcmdapi.Cluster)
		want   []string
	}{
		{"wrong CA in the kubeconfig", func(c *clientcmdapi.Cluster) { c.CertificateAuthorityData = otherCA.CertPEM() },
			[]string{"fail  tls", "does not chain to the kubeconfig's CA", "webhook apiserver-config --ca-secret"}},
		{"serving certificate without the host", func(c *clientcmdapi.Cluster) { c.TLSServerName = "clustertrust.elsewhere.svc" },
			[]string{"fail  tls", "clustertrust.elsewhere.svc", "--tls-server-name"}},
		{"webhook not where the kubeconfig says", func(c *clientcmdapi.Cluster) {
			c.Server = strings.Replace(c.Server, ":"+portOf(t, c.Server), ":1", 1)
		}, []string{"fail  reach", "is clustertrust running"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := cfg.DeepCopy()
			c.mutate(bad.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster])
			path := t.TempDir() + "/webhook.kubeconfig"
			if err := clientcmd.WriteToFile(*bad, path); err != nil {
				t.Fatal(err)
			}
			out, errOut, code := webhookRun(t, "", "doctor", "--webhook-kubeconfig", path)
			t.Logf("webhook doctor:\n%s", out)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("doctor does not say %q:\n%s", w, out)
				}
			}
		})
	}

	t.Run("object not Ready", func(t *testing.T) {
		trust(t, "unreachable", func(o *v1alpha1.OpenIDConnect) {
			o.Spec.IssuerURL, o.Spec.CABundle = "https://127.0.0.1:1/nowhere", nil
		})
		framework.WaitCondition(t, downstream.ctrl, "unreachable", v1alpha1.ConditionReady, metav1.ConditionFalse, "", "")
		out, _, code := webhookRun(t, "", base...)
		if code != 1 || !strings.Contains(out, "fail  openidconnect/unreachable") || !strings.Contains(out, "kubectl describe oidc unreachable") {
			t.Errorf("exit %d\n%s", code, out)
		}
	})
}

func portOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}
