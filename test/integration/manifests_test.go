//go:build integration

package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestShippedManifestsApply renders config/default and config/sync-keys with kubectl's kustomize and applies it with a
// server-side dry run, so the API server validates every shipped object (Deployment, PDB, RBAC, CRD)
// against its real schema.
func TestShippedManifestsApply(t *testing.T) {
	ctx := context.Background()
	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "clustertrust-system"}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err) // namespaced objects of a dry run need their namespace to exist
	}
	out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", adminKubeconfig, //nolint:gosec // G204: our own kubectl
		"apply", "--dry-run=server", "-k", filepath.Join("..", "..", "config", "default")).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -k config/default: %v\n%s", err, out)
	}
	// config/sync-keys goes into an upstream; any API server validates it the same way.
	syncNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "clustertrust-sync"}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, syncNS, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	syncOut, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", adminKubeconfig, //nolint:gosec // G204: our own kubectl
		"apply", "--dry-run=server", "-k", filepath.Join("..", "..", "config", "sync-keys")).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -k config/sync-keys: %v\n%s", err, syncOut)
	}
	out = append(out, syncOut...)
	for _, want := range []string{
		"deployment.apps/sync-keys", "serviceaccount/sync-keys",
		"deployment.apps/clustertrust", "poddisruptionbudget.policy/clustertrust",
		"role.rbac.authorization.k8s.io/clustertrust-leader-election", "clusterrole.rbac.authorization.k8s.io/clustertrust",
		"customresourcedefinition.apiextensions.k8s.io/openidconnects.authentication.clustertrust.io",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the dry run did not apply %s:\n%s", want, out)
		}
	}
}
