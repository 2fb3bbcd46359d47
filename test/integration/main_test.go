//go:build integration

// Package integration runs the webhook binary's serve command against a real kube-apiserver and etcd
// (controller-runtime envtest with the binaries hack/build-control-plane.sh builds). The kube-apiserver
// is started with --authentication-token-webhook-config-file pointing at the webhook, so every bearer
// token in these tests takes the same path as in production.
package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/cmd/webhook/app"
	"github.com/clustertrust/clustertrust/internal/pki"
	"github.com/clustertrust/clustertrust/internal/testissuer"
	"github.com/clustertrust/clustertrust/test/framework"
)

// Shared by the tests of this package; set up once in TestMain.
var (
	env         *envtest.Environment
	adminClient client.Client
	kube        *kubernetes.Clientset
	webhookURL  string
	webhookCA   []byte
	probeURL    string
	metricsURL  string
	// reviewerCert is the client certificate the webhook accepts; strangerCert is signed by the same CA
	// for a name it does not allow.
	reviewerCert tls.Certificate
	strangerCert pki.Pair
	webhookLog   string
	// servingCertFile and servingKeyFile are the webhook's serving certificate, signed by webhookCA.
	servingCertFile, servingKeyFile string
	// adminKubeconfig is a system:masters kubeconfig for the test kube-apiserver.
	adminKubeconfig string
	issuer          *testissuer.Issuer
	audience        string
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration setup failed: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return 1, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run `make test`, which builds kube-apiserver and etcd with hack/build-control-plane.sh")
	}
	dir, err := os.MkdirTemp("", "clustertrust-integration-")
	if err != nil {
		return 1, err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	webhookPort, err := framework.FreePort()
	if err != nil {
		return 1, err
	}
	probePort, err := framework.FreePort()
	if err != nil {
		return 1, err
	}
	webhookURL = "https://127.0.0.1:" + strconv.Itoa(webhookPort) + "/authenticate"
	probeURL = "http://127.0.0.1:" + strconv.Itoa(probePort)
	metricsPort, err := framework.FreePort()
	if err != nil {
		return 1, err
	}
	metricsURL = "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics"

	ca, err := pki.NewCA("clustertrust-integration-ca")
	if err != nil {
		return 1, err
	}
	serving, err := ca.Serving("clustertrust", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	if err != nil {
		return 1, err
	}
	if servingCertFile, servingKeyFile, err = serving.Write(dir, "serving"); err != nil {
		return 1, err
	}
	webhookCA = ca.CertPEM()
	// kube-apiserver authenticates to the webhook with a client certificate (mTLS); the tests' direct
	// reviews present one of the same name.
	clientCA, err := pki.NewCA("clustertrust-integration-client-ca")
	if err != nil {
		return 1, err
	}
	clientCAFile := filepath.Join(dir, "client-ca.crt")
	if err := os.WriteFile(clientCAFile, clientCA.CertPEM(), 0o600); err != nil {
		return 1, err
	}
	apiserverCert, err := clientCA.Client("kube-apiserver")
	if err != nil {
		return 1, err
	}
	if reviewerCert, err = tls.X509KeyPair(apiserverCert.CertPEM, apiserverCert.KeyPEM); err != nil {
		return 1, err
	}
	if strangerCert, err = clientCA.Client("not-kube-apiserver"); err != nil {
		return 1, err
	}
	webhookConfig := filepath.Join(dir, "webhook.kubeconfig")
	webhookKubeconfig, err := app.WebhookKubeconfig(webhookURL, webhookCA, apiserverCert.CertPEM, apiserverCert.KeyPEM)
	if err != nil {
		return 1, err
	}
	if err := os.WriteFile(webhookConfig, webhookKubeconfig, 0o600); err != nil {
		return 1, err
	}

	env = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	apiserver := env.ControlPlane.GetAPIServer()
	apiserver.Configure().
		Set("authentication-token-webhook-config-file", webhookConfig).
		Set("authentication-token-webhook-version", "v1").
		Set("authentication-token-webhook-cache-ttl", "0s")
	restConfig, err := env.Start()
	if err != nil {
		return 1, fmt.Errorf("could not start kube-apiserver and etcd: %w", err)
	}
	defer func() { _ = env.Stop() }()

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	if adminClient, err = client.New(restConfig, client.Options{Scheme: scheme}); err != nil {
		return 1, err
	}
	if kube, err = kubernetes.NewForConfig(restConfig); err != nil {
		return 1, err
	}

	// The webhook reads OpenIDConnect objects with a kubeconfig of its own, as it would in production.
	user, err := env.AddUser(envtest.User{Name: "clustertrust", Groups: []string{"system:masters"}}, restConfig)
	if err != nil {
		return 1, err
	}
	kubeconfigBytes, err := user.KubeConfig()
	if err != nil {
		return 1, err
	}
	kubeconfig := filepath.Join(dir, "clustertrust.kubeconfig")
	adminKubeconfig = kubeconfig
	if err := os.WriteFile(kubeconfig, kubeconfigBytes, 0o600); err != nil {
		return 1, err
	}

	// The webhook's logs go to a file, printed only when a test fails.
	webhookLog = filepath.Join(dir, "webhook.log")
	logFile, err := os.Create(webhookLog)
	if err != nil {
		return 1, err
	}
	defer func() { _ = logFile.Close() }()
	ctx, cancel := context.WithCancel(context.Background())
	webhookDone := make(chan int, 1)
	go func() {
		webhookDone <- app.Main(ctx, []string{"serve",
			"--kubeconfig", kubeconfig,
			"--bind-address", "127.0.0.1",
			"--secure-port", strconv.Itoa(webhookPort),
			"--tls-cert-file", servingCertFile,
			"--tls-private-key-file", servingKeyFile,
			"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(metricsPort),
			"--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(probePort),
			"--min-refetch-interval", "100ms",
			"--v", "4",
			"--client-ca-file", clientCAFile,
			"--client-allowed-names", "kube-apiserver",
		}, logFile, logFile)
	}()
	defer func() {
		cancel()
		select {
		case <-webhookDone:
		case <-time.After(20 * time.Second):
			fmt.Fprintln(os.Stderr, "webhook did not shut down within 20s")
		}
	}()
	if err := waitHTTP(probeURL+"/readyz", 60*time.Second); err != nil {
		return 1, fmt.Errorf("webhook never became ready: %w", err)
	}

	if issuer, err = testissuer.New(jose.RS256); err != nil {
		return 1, err
	}
	defer issuer.Close()
	audience = restConfig.Host // as Flux's generic provider sends it: the target address string
	code := m.Run()
	if code != 0 {
		logs, _ := os.ReadFile(logFile.Name())
		fmt.Fprintf(os.Stderr, "--- webhook log:\n%s\n", logs)
	}
	return code, nil
}

func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		resp, err := http.Get(url) //nolint:noctx // a bounded readiness poll in test setup
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("GET %s: %s", url, resp.Status)
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}
