//go:build integration

package install

import (
	"context"
	"fmt"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/testissuer"
	"github.com/clustertrust/clustertrust/test/framework"
)

// TestHostedSplit installs the chart in its two parts, as for a hosted control plane: install=served
// (RBAC for the webhook's identity and the Lease Role) in one namespace, and install=webhook (the
// Deployment, Service and certificate) in another that stands for the hosting cluster. The webhook runs
// without a token of the cluster it is in (automountServiceAccountToken: false) and reads the served
// cluster only through the kubeconfig Secret built from the served part's ServiceAccount; with that
// identity it routes an issuer, writes its status, takes the Lease and answers kube-apiserver.
func TestHostedSplit(t *testing.T) {
	ctx := context.Background()
	const servedNS, hostingNS = "served-system", "hosting-cp"
	restrictedNamespace(t, servedNS)
	restrictedNamespace(t, hostingNS)
	out, err := helm(ctx, "install", "served", chartDir, "-n", servedNS, "--set", "install=served")
	if err != nil {
		t.Fatalf("helm install served part: %v\n%s", err, out)
	}
	// The identity's kubeconfig, as the hosting platform would build it (a token of the ServiceAccount
	// the served part created), stored in the hosting namespace.
	expiry := int64(3600)
	tr, err := kube.CoreV1().ServiceAccounts(servedNS).CreateToken(ctx, "served-clustertrust",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the served part's ServiceAccount: %v", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["served"] = &clientcmdapi.Cluster{Server: restConfig.Host, CertificateAuthorityData: restConfig.CAData}
	cfg.AuthInfos["clustertrust"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["served"] = &clientcmdapi.Context{Cluster: "served", AuthInfo: "clustertrust"}
	cfg.CurrentContext = "served"
	kc, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	putSecret(t, hostingNS, "served-kubeconfig", corev1.SecretTypeOpaque, map[string][]byte{"kubeconfig": kc})

	out, err = helm(ctx, "install", "hosted", chartDir, "-n", hostingNS, "--skip-crds", "--set", "install=webhook",
		"--set", "hosted.kubeconfigSecret=served-kubeconfig", "--set", "hosted.servedNamespace="+servedNS,
		"--set", "tls.source=cert-manager", "--set", "tls.certManager.ipAddresses[0]=127.0.0.1")
	if err != nil {
		t.Fatalf("helm install webhook part: %v\n%s", err, out)
	}
	for _, kind := range []string{"clusterroles", "clusterrolebindings"} {
		if out, _ := kubectl(ctx, "", "get", kind, "hosted-clustertrust", "--ignore-not-found", "-o", "name"); out != "" {
			t.Errorf("the webhook part created %s: the hosting cluster needs no rights for it", out)
		}
	}
	actAsCertManagerFor(t, hostingNS, "hosted-clustertrust-serving")
	dep := deployment(t, hostingNS, "hosted-clustertrust")
	if a := dep.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Fatal("the webhook part mounts a token of the hosting cluster")
	}
	webhook := startPod(t, dep, webhookPort, nil)
	webhook.waitReady()

	iss, err := testissuer.New("ES256")
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	obj := &v1alpha1.OpenIDConnect{
		ObjectMeta: metav1.ObjectMeta{Name: "hosted-hub"},
		Spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: iss.URL, Audiences: []string{audience}, CABundle: iss.CAPEM(), UsernamePrefix: "hosted:"},
	}
	if err := adminClient.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = adminClient.Delete(context.Background(), obj) })
	framework.WaitCondition(t, adminClient, "hosted-hub", v1alpha1.ConditionReady, metav1.ConditionTrue, "", "")
	tok, err := iss.Mint(testissuer.ServiceAccountClaims("tenant-b", "deployer", audience))
	if err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 15*time.Second, "a review through kube-apiserver answered by the hosted webhook", func() error {
		user, err := framework.Whoami(ctx, restConfig, tok)
		if err != nil {
			return err
		}
		if user != "hosted:system:serviceaccount:tenant-b:deployer" {
			return fmt.Errorf("user %q", user)
		}
		return nil
	})
	var lease coordinationv1.Lease
	framework.Eventually(t, 15*time.Second, "the Lease in the served namespace", func() error {
		l, err := kube.CoordinationV1().Leases(servedNS).Get(ctx, "clustertrust-status-writer", metav1.GetOptions{})
		if err == nil {
			lease = *l
		}
		return err
	})
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Errorf("the Lease has no holder: %+v", lease.Spec)
	}
}
