//go:build integration

// Package integration runs the webhook binary's serve command against a real kube-apiserver and etcd
// (controller-runtime envtest with the binaries hack/build-control-plane.sh builds). The kube-apiserver
// is started with --authentication-token-webhook-config-file pointing at the webhook, so every bearer
// token in these tests takes the same path as in production.
package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// webhookKubeconfigFile is the file kube-apiserver calls the webhook with (mTLS, client certificate
	// of CN kube-apiserver); clientCA signs the client certificates the webhook accepts.
	webhookKubeconfigFile string
	clientCA              *pki.CA
	issuer                *testissuer.Issuer
	audience              string
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
	clientCA, err = pki.NewCA("clustertrust-integration-client-ca")
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
	webhookKubeconfigFile = webhookConfig
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
	// The leak check looks at what every test that ran left behind, so it runs after all of them
	// whatever -run, -skip or -shuffle selected; it does a few reviews of its own, so it proves
	// something even when -run selected tests that send no token.
	subsetRan = framework.SubsetSelected()
	if !framework.RunAfterSuite(testing.InternalTest{Name: "TestNoTokenLeaks", F: noTokenLeaks}) {
		fmt.Fprintln(os.Stderr, "FAIL: the after-suite check TestNoTokenLeaks failed (its message is above)")
		if code == 0 {
			code = 1
		}
	}
	if code != 0 {
		logs, _ := os.ReadFile(logFile.Name())
		fmt.Fprintf(os.Stderr, "--- webhook log:\n%s\n", logs)
	}
	return code, nil
}

// subsetRan tells the after-suite checks that -run or -skip narrowed the tests m.Run ran.
var subsetRan bool

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

// leakWindow is the length of a token slice that must never appear anywhere: long enough that it cannot
// occur by chance, short enough to catch a truncated or partial token.
const leakWindow = 20

// noTokenLeaks is TestNoTokenLeaks, run by TestMain after every selected test: once the tests have
// sent their valid and invalid tokens through the webhook, running at debug verbosity (--v 4), it looks
// for any 20-character slice of any of those tokens in the webhook's logs, its metrics, the objects'
// status and the events.
func noTokenLeaks(t *testing.T) {
	ctx := context.Background()
	// A few more reviews of its own, valid and invalid, so the check stands on its own.
	iss, err := testissuer.New("ES256")
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	obj := newOIDC("leak-check", iss)
	createOIDC(t, obj)
	good, _ := iss.Mint(testissuer.Claims{"sub": "alice", "aud": audience})
	expired, _ := iss.Mint(testissuer.Claims{"sub": "alice", "aud": audience, "exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix(), "nbf": time.Now().Add(-2 * time.Hour).Unix()})
	own := []string{good, expired, good[:len(good)-5] + "AAAAA", "not-a-jwt-but-secret-looking-0123456789"}
	for _, tok := range own {
		reviewDirect(t, tok)
		_, _ = whoami(ctx, tok)
	}

	var haystack []string
	logs, err := os.ReadFile(webhookLog)
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) == 0 {
		t.Fatal("the webhook log is empty: the check would prove nothing")
	}
	haystack = append(haystack, string(logs))
	resp, err := http.Get(metricsURL) //nolint:noctx // loopback test server
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	haystack = append(haystack, string(metrics))
	var list v1alpha1.OpenIDConnectList
	if err := adminClient.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	statuses, _ := json.Marshal(list)
	haystack = append(haystack, string(statuses))
	events, err := kube.EventsV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventsJSON, _ := json.Marshal(events.Items)
	haystack = append(haystack, string(eventsJSON))

	grams := ngrams(haystack, leakWindow)
	sentMu.Lock()
	tokens := append([]string(nil), sent...)
	sentMu.Unlock()
	// The whole suite sends far more than 10 tokens: fewer means the tests stopped remembering theirs.
	// -run or -skip may have selected tests that send none; then only this check's own (each sent twice)
	// are certain.
	minTokens := 10
	if subsetRan {
		minTokens = 2 * len(own)
	}
	if len(tokens) < minTokens {
		t.Fatalf("only %d tokens were sent: the check would prove little", len(tokens))
	}
	for _, tok := range tokens {
		for i := 0; i+leakWindow <= len(tok); i++ {
			if _, ok := grams[tok[i:i+leakWindow]]; ok {
				t.Fatalf("a %d-character slice of a token (at offset %d) appears in logs, metrics, status or events", leakWindow, i)
			}
		}
	}
	t.Logf("checked %d tokens against %d bytes of logs, %d of metrics, %d of status and %d of events",
		len(tokens), len(logs), len(metrics), len(statuses), len(eventsJSON))
}

// ngrams returns every n-character substring of the texts.
func ngrams(texts []string, n int) map[string]struct{} {
	out := map[string]struct{}{}
	for _, s := range texts {
		for i := 0; i+n <= len(s); i++ {
			out[s[i:i+n]] = struct{}{}
		}
	}
	return out
}
