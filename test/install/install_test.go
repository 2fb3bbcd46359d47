//go:build integration

package install

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/testissuer"
	"github.com/clustertrust/clustertrust/test/framework"
)

// installValues are the values of the release the install test installs: cert-manager certificates
// naming 127.0.0.1, where kube-apiserver dials the webhook here.
var installValues = []string{"--set", "tls.source=cert-manager", "--set", "tls.certManager.ipAddresses[0]=127.0.0.1"}

// TestInstallRenewUpgrade installs the chart, runs its webhook from the stored Deployment with the
// ServiceAccount the chart created, and then checks, through kube-apiserver each time:
//  1. an OpenIDConnect object becomes Ready (status written with the chart's RBAC) and its tokens
//     authenticate;
//  2. renewing the serving certificate (the Secret's content, as cert-manager does) reaches new
//     connections without a restart;
//  3. `webhook apiserver-config --service --ca-secret` reads the wiring from the release's objects, and
//     kube-apiserver could verify the webhook with the kubeconfig it writes;
//  4. `helm upgrade` from the previous chart version, with changed values, leaves the CRD and the stored
//     objects untouched, and the new webhook process serves them.
func TestInstallRenewUpgrade(t *testing.T) {
	ctx := context.Background()
	t.Logf("kube-apiserver %s", serverVersion)
	prev := previousChart(t)
	crd := &apiextensionsv1.CustomResourceDefinition{}
	crdExisted := adminClient.Get(ctx, client.ObjectKey{Name: "openidconnects.authentication.clustertrust.io"}, crd) == nil
	restrictedNamespace(t, releaseNS)
	out, err := helm(ctx, append([]string{"install", releaseName, prev, "-n", releaseNS}, installValues...)...)
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	if err := adminClient.Get(ctx, client.ObjectKey{Name: "openidconnects.authentication.clustertrust.io"}, crd); err != nil {
		t.Fatalf("helm install did not install the CRD from crds/: %v", err)
	}
	if crdExisted {
		t.Log("the CRD was there before this install (another test installed it first): crds/ was not proven here")
	}
	framework.Eventually(t, 30*time.Second, "the CRD is established", func() error {
		var list v1alpha1.OpenIDConnectList
		return adminClient.List(ctx, &list)
	})

	firstSerial := actAsCertManager(t)
	svc, err := kube.CoreV1().Services(releaseNS).Get(ctx, releaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkServiceSelects(t, svc, deployment(t, releaseNS, releaseName))
	webhook := startPod(t, deployment(t, releaseNS, releaseName), webhookPort, nil)
	webhook.waitReady()
	if got := servedSerial(t); got != firstSerial {
		t.Fatalf("the webhook serves certificate %s, want %s from the chart's Secret", got, firstSerial)
	}

	obj := &v1alpha1.OpenIDConnect{
		ObjectMeta: metav1.ObjectMeta{Name: "hub"},
		Spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: issuer.URL, Audiences: []string{audience}, CABundle: issuer.CAPEM(), UsernamePrefix: "hub:"},
	}
	if err := adminClient.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	framework.WaitCondition(t, adminClient, "hub", v1alpha1.ConditionReady, metav1.ConditionTrue, "", "")
	authenticates := func(what string) {
		t.Helper()
		tok, err := issuer.Mint(testissuer.ServiceAccountClaims("tenant-a", "reconciler", audience))
		if err != nil {
			t.Fatal(err)
		}
		framework.Eventually(t, 15*time.Second, what, func() error {
			user, err := framework.Whoami(ctx, restConfig, tok)
			if err != nil {
				return err
			}
			if user != "hub:system:serviceaccount:tenant-a:reconciler" {
				return fmt.Errorf("user %q", user)
			}
			return nil
		})
	}
	authenticates("a token of the trusted issuer authenticates through kube-apiserver")

	t.Run("renewal reaches new connections without a restart", func(t *testing.T) {
		pid := webhook.cmd.Process.Pid
		renewed := actAsCertManager(t)
		webhook.syncVolumes() // the kubelet's update of the mounted Secret
		took := framework.Eventually(t, 90*time.Second, "new connections get the renewed certificate", func() error {
			if got := servedSerial(t); got != renewed {
				return fmt.Errorf("still serving %s", got)
			}
			return nil
		})
		if webhook.cmd == nil || webhook.cmd.Process.Pid != pid {
			t.Fatal("the webhook process changed")
		}
		t.Logf("renewed certificate served after %s, same process", took.Round(time.Millisecond))
		authenticates("reviews keep working after the renewal")
	})

	t.Run("apiserver-config reads the Service and the CA Secret", func(t *testing.T) {
		svc, err := kube.CoreV1().Services(releaseNS).Get(ctx, releaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		apiserverConfig := func(args ...string) (*clientcmdapi.Cluster, string, error) {
			out, err := exec.CommandContext(ctx, webhookBin, append([]string{"apiserver-config", "--kubeconfig", adminKubeconfig}, args...)...).CombinedOutput() //nolint:gosec // G204: the binary this suite built
			if err != nil {
				return nil, string(out), err
			}
			cfg, err := clientcmd.Load(out)
			if err != nil {
				return nil, string(out), err
			}
			return cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster], string(out), nil
		}
		cluster, out, err := apiserverConfig("--service", releaseNS+"/"+releaseName, "--ca-secret", releaseNS+"/clustertrust-serving-cert")
		if err != nil {
			t.Fatalf("apiserver-config: %v\n%s", err, out)
		}
		want := "https://" + net.JoinHostPort(svc.Spec.ClusterIP, "443") + "/authenticate"
		if cluster.Server != want || !bytes.Equal(cluster.CertificateAuthorityData, servingCA.CertPEM()) {
			t.Errorf("server %s (want %s), CA from the Secret: %v", cluster.Server, want, bytes.Equal(cluster.CertificateAuthorityData, servingCA.CertPEM()))
		}
		// The certificate names 127.0.0.1 and the Service's DNS names, not its cluster IP: kube-apiserver
		// must verify it against the DNS name. Verify the served certificate exactly as kube-apiserver
		// would with this kubeconfig (the cluster IP itself is not routable here, so dial the process).
		if cluster.TLSServerName != releaseName+"."+releaseNS+".svc" {
			t.Fatalf("tls-server-name %q: kube-apiserver would verify the certificate against the cluster IP it does not name", cluster.TLSServerName)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(cluster.CertificateAuthorityData)
		conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(webhookPort)), &tls.Config{RootCAs: pool, ServerName: cluster.TLSServerName, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("kube-apiserver could not verify the webhook with this kubeconfig: %v", err)
		}
		_ = conn.Close()

		// A certificate that names neither the cluster IP nor the Service is refused with the fix.
		wrong, err := servingCA.Serving("elsewhere", nil, []string{"elsewhere.example"})
		if err != nil {
			t.Fatal(err)
		}
		putSecret(t, releaseNS, "wrong-names", corev1.SecretTypeTLS, map[string][]byte{"tls.crt": wrong.CertPEM, "tls.key": wrong.KeyPEM, "ca.crt": servingCA.CertPEM()})
		if _, out, err := apiserverConfig("--service", releaseNS+"/"+releaseName, "--ca-secret", releaseNS+"/wrong-names"); err == nil || !strings.Contains(out, "names neither") {
			t.Errorf("a certificate for other names: err %v, output %s", err, out)
		}
		// A Secret that is not there is named in the refusal.
		if _, out, err := apiserverConfig("--service", releaseNS+"/"+releaseName, "--ca-secret", releaseNS+"/no-such-secret"); err == nil || !strings.Contains(out, "no-such-secret") {
			t.Errorf("a missing CA Secret: err %v, output %s", err, out)
		}
	})

	t.Run("upgrade with changed values keeps the stored objects and serving", func(t *testing.T) {
		var before v1alpha1.OpenIDConnect
		if err := adminClient.Get(ctx, client.ObjectKey{Name: "hub"}, &before); err != nil {
			t.Fatal(err)
		}
		crdBefore := crd.ResourceVersion
		changed := append(append([]string(nil), installValues...), "--set", "serve.cache-ttl=30s", "--set", "serve.v=2",
			"--set", "replicaCount=3", "--set", "podDisruptionBudget.minAvailable=2")
		out, err := helm(ctx, append([]string{"upgrade", releaseName, chartDir, "-n", releaseNS}, changed...)...)
		if err != nil {
			t.Fatalf("helm upgrade: %v\n%s", err, out)
		}
		history, _ := helm(ctx, "history", releaseName, "-n", releaseNS)
		if !strings.Contains(history, "clustertrust-0.0.0-previous") || !strings.Contains(history, "clustertrust-"+chartVersion(t)) {
			t.Errorf("helm history does not show the upgrade between the two chart versions:\n%s", history)
		}
		dep := deployment(t, releaseNS, releaseName)
		if *dep.Spec.Replicas != 3 || !contains(dep.Spec.Template.Spec.Containers[0].Args, "--cache-ttl=30s") {
			t.Fatalf("the upgrade did not change the Deployment: replicas %d, args %v", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].Args)
		}
		// The rollout: the old process stops, one from the new pod template starts. kube-apiserver retries
		// a webhook it cannot reach; with two replicas and maxUnavailable 0 a cluster has no gap at all.
		webhook.stop()
		upgraded := startPod(t, dep, webhookPort, nil)
		upgraded.waitReady()
		authenticates("reviews work on the upgraded webhook")

		var after v1alpha1.OpenIDConnect
		if err := adminClient.Get(ctx, client.ObjectKey{Name: "hub"}, &after); err != nil {
			t.Fatal(err)
		}
		if after.UID != before.UID || after.Generation != before.Generation || !equalJSON(t, after.Spec, before.Spec) {
			t.Errorf("the upgrade changed the stored object: %+v -> %+v", before.Spec, after.Spec)
		}
		var crdAfter apiextensionsv1.CustomResourceDefinition
		if err := adminClient.Get(ctx, client.ObjectKey{Name: crd.Name}, &crdAfter); err != nil {
			t.Fatal(err)
		}
		if crdAfter.ResourceVersion != crdBefore {
			t.Errorf("helm upgrade touched the CRD (resourceVersion %s -> %s): CRD changes must be explicit", crdBefore, crdAfter.ResourceVersion)
		}
	})
}

// previousChart is the release the upgrade starts from. 0.1.0 is the chart's first version, so until a
// second one exists the previous release is this chart under an earlier version number; the upgrade
// still changes values, the Deployment and the process. When 0.2.0 is cut, extract 0.1.0 here
// (`git archive v0.1.0 charts/clustertrust`).
func previousChart(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "clustertrust")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	meta := filepath.Join(dir, "Chart.yaml")
	b, err := os.ReadFile(meta) //nolint:gosec // G304: our copy
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("\nversion: "+chartVersion(t)), []byte("\nversion: 0.0.0-previous"), 1)
	if err := os.WriteFile(meta, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func chartVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "version: "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("Chart.yaml has no version")
	return ""
}

// actAsCertManager issues what the chart's serving Certificate asks for (its DNS names and IP addresses)
// from the test CA into the Certificate's Secret, with ca.crt, as cert-manager's CA issuer does, and
// returns the new certificate's serial number.
func actAsCertManager(t *testing.T) string {
	t.Helper()
	return actAsCertManagerFor(t, releaseNS, releaseName+"-serving")
}

func actAsCertManagerFor(t *testing.T, namespace, certificate string) string {
	t.Helper()
	ctx := context.Background()
	cert := &unstructured.Unstructured{}
	cert.SetGroupVersionKind(schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"})
	if err := adminClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: certificate}, cert); err != nil {
		t.Fatalf("the chart's serving Certificate: %v", err)
	}
	secretName, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	ipStrings, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "ipAddresses")
	var ips []net.IP
	for _, s := range ipStrings {
		ips = append(ips, net.ParseIP(s))
	}
	pair, err := servingCA.Serving(releaseName, ips, dnsNames)
	if err != nil {
		t.Fatal(err)
	}
	putSecret(t, namespace, secretName, corev1.SecretTypeTLS, map[string][]byte{
		"tls.crt": pair.CertPEM, "tls.key": pair.KeyPEM, "ca.crt": servingCA.CertPEM(),
	})
	block, _ := pem.Decode(pair.CertPEM)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// servedSerial opens a new TLS connection to the webhook, verifying it against the CA kube-apiserver
// trusts for 127.0.0.1, and returns the serial of the certificate it presents.
func servedSerial(t *testing.T) string {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(servingCA.CertPEM())
	d := &tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	conn, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(webhookPort)))
	if err != nil {
		return "dial: " + err.Error()
	}
	defer func() { _ = conn.Close() }()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	return bytes.Equal(ja, jb)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
