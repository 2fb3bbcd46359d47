package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/clustertrust/clustertrust/internal/pki"
)

func TestAPIServerConfig(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("clustertrust-ca")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	writeFile(t, caFile, string(ca.CertPEM()))
	client, err := ca.Client("kube-apiserver")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := client.Write(dir, "client")
	if err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"apiserver-config", "--server", "https://127.0.0.1:9443", "--ca-file", caFile,
		"--client-cert-file", certFile, "--client-key-file", keyFile, "--cache-ttl", "20s"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	cfg, err := clientcmd.Load(out.Bytes()) // stdout is the file itself: flags are comments in it
	if err != nil {
		t.Fatalf("stdout is not a kubeconfig: %v\n%s", err, out.String())
	}
	cluster := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster]
	user := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
	if cluster.Server != "https://127.0.0.1:9443/authenticate" || !bytes.Equal(cluster.CertificateAuthorityData, ca.CertPEM()) {
		t.Fatalf("cluster = %s %q", cluster.Server, cluster.CertificateAuthorityData)
	}
	if !bytes.Equal(user.ClientCertificateData, client.CertPEM) || !bytes.Equal(user.ClientKeyData, client.KeyPEM) {
		t.Fatal("the client certificate is not in the kubeconfig")
	}
	for _, flag := range []string{"--authentication-token-webhook-config-file=/etc/kubernetes/clustertrust/webhook-kubeconfig.yaml", "--authentication-token-webhook-version=v1", "--authentication-token-webhook-cache-ttl=20s"} {
		if !strings.Contains(out.String(), "#   "+flag) {
			t.Errorf("output lacks %s", flag)
		}
	}

	// --output writes the file and prints the flags; --kubeadm adds the ClusterConfiguration patch.
	out.Reset()
	file := filepath.Join(dir, "webhook.kubeconfig")
	if code := Main(context.Background(), []string{"apiserver-config", "--server", "https://10.0.0.10:9443/authenticate", "--ca-file", caFile,
		"--output", file, "--kubeadm"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if _, err := clientcmd.LoadFromFile(file); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600: the file may hold a client key", fi.Mode().Perm())
	}
	for _, want := range []string{"--authentication-token-webhook-config-file=" + file, "extraArgs:", "- name: authentication-token-webhook-version", "mountPath: " + dir + "/"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	for name, args := range map[string][]string{
		"http server":      {"--server", "http://127.0.0.1:9443", "--ca-file", caFile},
		"no ca":            {"--server", "https://127.0.0.1:9443"},
		"not pem":          {"--server", "https://127.0.0.1:9443", "--ca-file", filepath.Join(dir, "webhook.kubeconfig")},
		"cert without key": {"--server", "https://127.0.0.1:9443", "--ca-file", caFile, "--client-cert-file", certFile},
	} {
		var o, e bytes.Buffer
		if code := Main(context.Background(), append([]string{"apiserver-config"}, args...), &o, &e); code == 0 || o.Len() != 0 {
			t.Errorf("%s: exit %d, stdout %q; want a failure and no output", name, code, o.String())
		}
	}
}

func TestAPIServerConfigNeedsOneAddressAndOneCA(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ca-file", "ca.crt"}, "exactly one of --server"},
		{[]string{"--server", "https://127.0.0.1:9443", "--service", "ns/svc", "--ca-file", "ca.crt"}, "exactly one of --server"},
		{[]string{"--server", "https://127.0.0.1:9443"}, "exactly one of --ca-file and --ca-secret"},
		{[]string{"--server", "https://127.0.0.1:9443", "--ca-file", "ca.crt", "--ca-secret", "ns/s"}, "exactly one of --ca-file and --ca-secret"},
	} {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), append([]string{"apiserver-config"}, c.args...), &out, &errOut); code == 0 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want a refusal naming %q", c.args, code, errOut.String(), c.want)
		}
	}
}

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "clustertrust "+Version+" ") {
		t.Fatalf("exit %d: %q %q", code, out.String(), errOut.String())
	}
}
