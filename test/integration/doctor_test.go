//go:build integration

package integration

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/clustertrust/clustertrust/cmd/webhook/app"
)

// TestDoctorClientCertificates runs `webhook doctor` against this suite's webhook, which requires a
// client certificate from clientCA named kube-apiserver (--client-ca-file, --client-allowed-names), with
// the webhook kubeconfig kube-apiserver uses and with the client-certificate mistakes users make.
func TestDoctorClientCertificates(t *testing.T) {
	doctor := func(t *testing.T, kubeconfig string) (string, int) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := app.Main(context.Background(), []string{"doctor", "--webhook-kubeconfig", kubeconfig,
			"--kubeconfig", adminKubeconfig, "--readyz-url", probeURL + "/readyz"}, &out, &errOut)
		return out.String() + errOut.String(), code
	}
	out, code := doctor(t, webhookKubeconfigFile)
	if code != 0 || !strings.Contains(out, "ok    client-certificate") {
		t.Fatalf("the wiring kube-apiserver uses: exit %d\n%s", code, out)
	}
	t.Logf("doctor on the wiring kube-apiserver uses:\n%s", out)
	cfg, err := clientcmd.LoadFromFile(webhookKubeconfigFile)
	if err != nil {
		t.Fatal(err)
	}
	user := cfg.Contexts[cfg.CurrentContext].AuthInfo
	for _, c := range []struct {
		name string
		cert []byte
		key  []byte
		want []string
	}{
		{"client certificate of a name not allowed", strangerCert.CertPEM, strangerCert.KeyPEM,
			[]string{"fail  client-certificate", "CN=not-kube-apiserver", "--client-allowed-names"}},
		{"no client certificate", nil, nil,
			[]string{"fail  client-certificate", "clustertrust requires a client certificate (--client-ca-file) but the kubeconfig has none"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := cfg.DeepCopy()
			bad.AuthInfos[user].ClientCertificateData, bad.AuthInfos[user].ClientKeyData = c.cert, c.key
			path := filepath.Join(t.TempDir(), "webhook.kubeconfig")
			if err := clientcmd.WriteToFile(*bad, path); err != nil {
				t.Fatal(err)
			}
			out, code := doctor(t, path)
			t.Logf("%s", out)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("doctor does not say %q:\n%s", w, out)
				}
			}
		})
	}
}
