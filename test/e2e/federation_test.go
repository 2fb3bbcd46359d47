//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/test/framework"
)

// The federation tests run the webhook binary's commands exactly as docs/trust-another-cluster.md
// shows them.

// webhookCmd runs `webhook args...` and returns its stdout and stderr; it fails the test on a non-zero
// exit.
func webhookCmd(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	out, errOut, code := webhookRun(t, "", args...)
	if code != 0 {
		t.Fatalf("webhook %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out, errOut
}

func TestTrustApply(t *testing.T) {
	_, stderr := webhookCmd(t, "trust",
		"--upstream-kubeconfig", os.Getenv("UPSTREAM_KUBECONFIG"),
		"--kubeconfig", os.Getenv("DOWNSTREAM_KUBECONFIG"),
		"--name", "hub-trust", "--audience", downstreamAudience, "--apply")
	t.Cleanup(func() { untrust(t, "hub-trust") })
	// The local upstream's issuer is its API server, readable anonymously with the cluster's own CA. On
	// kind the issuer is the upstream node's name, which the host running `webhook trust` cannot resolve:
	// hack/kind sets E2E_TRUST_MODE=static, the mode trust then picks (keys read through the API server).
	switch mode := os.Getenv("E2E_TRUST_MODE"); mode {
	case "", "issuer":
		if !strings.Contains(stderr, "# clustertrust trust: mode issuer") || !strings.Contains(stderr, "set as caBundle") {
			t.Fatalf("trust did not explain choosing the issuer with a caBundle:\n%s", stderr)
		}
	default:
		if !strings.Contains(stderr, "# clustertrust trust: mode "+mode) {
			t.Fatalf("trust did not explain choosing mode %s:\n%s", mode, stderr)
		}
	}
	token := upstream.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience)
	user, err := whoami(t, token)
	if err != nil {
		t.Fatal(err)
	}
	if want := "hub-trust:system:serviceaccount:tenant-a:reconciler"; user != want {
		t.Fatalf("user = %q, want %q", user, want)
	}
}

// TestSyncKeysFollowsRotation is the private-upstream path: static keys on the downstream, kept current
// by sync-keys, which authenticates to the downstream with its own upstream token through clustertrust.
// After the upstream rotates its signing key, a token signed by the new key authenticates while the
// upstream (the issuer URL) is down.
func TestSyncKeysFollowsRotation(t *testing.T) {
	const name = "hub-synced"
	dir := t.TempDir()

	// Downstream side, one command: the object with the upstream's current keys, and RBAC that lets
	// the upstream's clustertrust-sync/sync-keys patch this object only.
	stdout, _ := webhookCmd(t, "trust",
		"--upstream-kubeconfig", os.Getenv("UPSTREAM_KUBECONFIG"),
		"--kubeconfig", os.Getenv("DOWNSTREAM_KUBECONFIG"),
		"--name", name, "--audience", downstreamAudience,
		"--static", "--sync-keys-identity", "clustertrust-sync/sync-keys", "--apply")
	t.Cleanup(func() { untrust(t, name) })
	if !strings.Contains(stdout, "clusterrolebinding/clustertrust-sync-keys-"+name+" applied") {
		t.Fatalf("trust did not apply the sync-keys RBAC:\n%s", stdout)
	}

	// Upstream side: sync-keys with a projected-style token for the downstream's audience (kubelet
	// would write this file; here the TokenRequest API does).
	tokenFile := filepath.Join(dir, "token")
	writeToken := func() {
		tok := upstream.serviceAccountToken(t, "clustertrust-sync", "sync-keys", downstreamAudience)
		if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeToken()

	// RBAC lets that identity patch this one object; the admission policy trust added lets it change
	// only spec.jwks. (Dry runs: admission runs, nothing is stored.)
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	asSync, err := dynamic.NewForConfig(framework.TokenConfig(downstream.config, string(tok)))
	if err != nil {
		t.Fatal(err)
	}
	oidcs := asSync.Resource(v1alpha1.GroupVersion.WithResource("openidconnects"))
	dryRun := metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}}
	framework.Eventually(t, 20*time.Second, "the policy refuses a prefix change by sync-keys", func() error {
		_, err := oidcs.Patch(context.Background(), name, types.MergePatchType, []byte(`{"spec":{"usernamePrefix":"-"}}`), dryRun)
		if err == nil || !strings.Contains(err.Error(), "sync-keys may change only spec.jwks") {
			return fmt.Errorf("patch of usernamePrefix: err = %w", err)
		}
		return nil
	})
	if _, err := oidcs.Patch(context.Background(), name, types.MergePatchType, []byte(`{"spec":{"jwks":{"keys":"`+base64.StdEncoding.EncodeToString(upstream.jwks(t))+`"}}}`), dryRun); err != nil {
		t.Fatalf("sync-keys may not change spec.jwks: %v", err)
	}
	if _, err := oidcs.Get(context.Background(), "hub-trust", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("sync-keys read another OpenIDConnect: err = %v, want Forbidden", err)
	}

	caFile := filepath.Join(dir, "downstream-ca.crt")
	if err := os.WriteFile(caFile, downstream.caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &framework.SyncBuffer{}
	cmd := exec.CommandContext(context.Background(), os.Getenv("WEBHOOK_BIN"), "sync-keys", //nolint:gosec // G204: the binary under test
		"--upstream-kubeconfig", os.Getenv("UPSTREAM_KUBECONFIG"),
		"--downstream-server", downstream.config.Host, "--downstream-ca-file", caFile,
		"--token-file", tokenFile, "--name", name, "--interval", "1s")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("sync-keys log:\n%s", logs.String())
		}
	})

	before := upstream.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience)
	if _, err := whoami(t, before); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	clusters(t, "rotate-key", "upstream")
	after := upstream.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience)
	newKID := kid(t, after)
	if newKID == kid(t, before) {
		t.Fatal("the upstream did not switch to a new signing key")
	}
	took := framework.Eventually(t, 60*time.Second, "sync-keys pushes the new key", func() error {
		var obj v1alpha1.OpenIDConnect
		if err := downstream.ctrl.Get(context.Background(), client.ObjectKey{Name: name}, &obj); err != nil {
			return err
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(obj.Spec.JWKS.Keys, &set); err != nil {
			return err
		}
		if len(set.Key(newKID)) == 0 {
			return errNotYet("the object's keys lack " + newKID)
		}
		return nil
	})
	t.Logf("sync-keys pushed the rotated key %s after the rotation", took.Round(100*time.Millisecond))
	if !strings.Contains(logs.String(), "Pushed the upstream's keys") {
		t.Fatalf("sync-keys did not log the push:\n%s", logs.String())
	}
	writeToken() // kubelet would refresh the token; the new one is signed by the new key

	// The issuer URL (the upstream API server) is now unreachable; the new key still authenticates.
	clusters(t, "stop", "upstream")
	t.Cleanup(func() { clusters(t, "start", "upstream") })
	framework.Eventually(t, 20*time.Second, "a token of the new key authenticates", func() error {
		user, err := whoami(t, after)
		if err != nil {
			return err
		}
		if want := name + ":system:serviceaccount:tenant-a:reconciler"; user != want {
			return errNotYet("user = " + user)
		}
		return nil
	})
}

func TestPublishDiscovery(t *testing.T) {
	dir := t.TempDir()
	stdout, _ := webhookCmd(t, "publish-discovery",
		"--upstream-kubeconfig", os.Getenv("UPSTREAM_KUBECONFIG"),
		"--public-url", "https://oidc.example.com/upstream", "--dir", dir)
	doc, err := os.ReadFile(filepath.Join(dir, ".well-known", "openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	if d.Issuer != "https://oidc.example.com/upstream" || d.JWKSURI != "https://oidc.example.com/upstream/openid/v1/jwks" {
		t.Fatalf("published document = %s", doc)
	}
	published, err := os.ReadFile(filepath.Join(dir, "openid", "v1", "jwks"))
	if err != nil {
		t.Fatal(err)
	}
	var got, want jose.JSONWebKeySet
	if err := json.Unmarshal(published, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(upstream.jwks(t), &want); err != nil {
		t.Fatal(err)
	}
	if len(got.Keys) != len(want.Keys) || len(got.Keys) == 0 || got.Keys[0].KeyID != want.Keys[0].KeyID {
		t.Fatalf("published keys %s differ from the upstream's", published)
	}
	if !strings.Contains(stdout, "--service-account-issuer=https://oidc.example.com/upstream") ||
		!strings.Contains(stdout, "--service-account-issuer="+upstream.issuer(t)) {
		t.Fatalf("publish-discovery did not report the flags:\n%s", stdout)
	}
}

type errNotYet string

func (e errNotYet) Error() string { return string(e) }
