//go:build integration

// Package install checks the ways clustertrust is installed against a real kube-apiserver and etcd: the
// Helm chart (lint, schema, every value combination applied with a server-side dry run), its parity with
// config/ (kustomize), and an install, a certificate renewal and an upgrade of a release whose webhook
// runs as a process started from the Deployment the chart stored, with the files, environment and
// ServiceAccount token a kubelet would give it. The kube-apiserver calls that process for every bearer
// token, so a review through it proves the whole wiring.
//
// `make test-install` runs it against the kube-apiserver clustertrust is built with and against the
// oldest one it supports.
package install

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/cmd/webhook/app"
	"github.com/clustertrust/clustertrust/internal/pki"
	"github.com/clustertrust/clustertrust/internal/testissuer"
	"github.com/clustertrust/clustertrust/test/framework"
)

var (
	env             *envtest.Environment
	restConfig      *rest.Config
	kube            *kubernetes.Clientset
	adminClient     client.Client
	adminKubeconfig string
	helmBin         string
	kubectlBin      string
	webhookBin      string
	// webhookPort is where kube-apiserver's webhook kubeconfig points; the install tests run the chart's
	// webhook there.
	webhookPort int
	// servingCA plays cert-manager's CA: it signs the serving certificates the tests put into the chart's
	// Secret, and kube-apiserver's webhook kubeconfig trusts it.
	servingCA *pki.CA
	issuer    *testissuer.Issuer
	audience  string
	// serverVersion is kube-apiserver's version, for the logs.
	serverVersion string
)

const (
	chartDir    = "../../charts/clustertrust"
	releaseNS   = "clustertrust-system"
	releaseName = "clustertrust"
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "install suite setup failed: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	helmBin = os.Getenv("HELM")
	crds := os.Getenv("THIRD_PARTY_CRDS")
	if assets == "" || helmBin == "" || crds == "" {
		return 1, fmt.Errorf("KUBEBUILDER_ASSETS, HELM and THIRD_PARTY_CRDS must be set: run `make test-install`")
	}
	kubectlBin = filepath.Join(assets, "kubectl")
	dir, err := os.MkdirTemp("", "clustertrust-install-")
	if err != nil {
		return 1, err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	// The webhook binary, as the image would hold it.
	webhookBin = filepath.Join(dir, "webhook")
	if out, err := exec.Command("go", "build", "-o", webhookBin, "../../cmd/webhook").CombinedOutput(); err != nil { //nolint:gosec // G204: fixed arguments
		return 1, fmt.Errorf("go build: %w\n%s", err, out)
	}

	if webhookPort, err = framework.FreePort(); err != nil {
		return 1, err
	}
	if servingCA, err = pki.NewCA("clustertrust-install-ca"); err != nil {
		return 1, err
	}
	webhookConfig := filepath.Join(dir, "webhook.kubeconfig")
	kc, err := app.WebhookKubeconfig("https://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(webhookPort))+"/authenticate", servingCA.CertPEM(), nil, nil)
	if err != nil {
		return 1, err
	}
	if err := os.WriteFile(webhookConfig, kc, 0o600); err != nil {
		return 1, err
	}

	// No clustertrust CRD here: the chart installs it. cert-manager's and the Prometheus Operator's
	// CRDs are there so the chart's optional objects can be validated.
	env = &envtest.Environment{
		CRDDirectoryPaths:     []string{crds},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	env.ControlPlane.GetAPIServer().Configure().
		Set("authentication-token-webhook-config-file", webhookConfig).
		Set("authentication-token-webhook-version", "v1").
		Set("authentication-token-webhook-cache-ttl", "0s")
	if restConfig, err = env.Start(); err != nil {
		return 1, fmt.Errorf("could not start kube-apiserver and etcd: %w", err)
	}
	defer func() { _ = env.Stop() }()
	if kube, err = kubernetes.NewForConfig(restConfig); err != nil {
		return 1, err
	}
	v, err := kube.Discovery().ServerVersion()
	if err != nil {
		return 1, err
	}
	serverVersion = v.GitVersion
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	_ = apiextensionsv1.AddToScheme(scheme)
	if adminClient, err = client.New(restConfig, client.Options{Scheme: scheme}); err != nil {
		return 1, err
	}
	admin, err := env.AddUser(envtest.User{Name: "install-admin", Groups: []string{"system:masters"}}, restConfig)
	if err != nil {
		return 1, err
	}
	b, err := admin.KubeConfig()
	if err != nil {
		return 1, err
	}
	adminKubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(adminKubeconfig, b, 0o600); err != nil {
		return 1, err
	}
	if issuer, err = testissuer.New(jose.RS256); err != nil {
		return 1, err
	}
	defer issuer.Close()
	audience = restConfig.Host
	fmt.Printf("install suite: kube-apiserver %s, %s\n", serverVersion, strings.TrimSpace(mustOutput(helmBin, "version", "--short")))
	return m.Run(), nil
}

func mustOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput() //nolint:gosec // G204: our own tools
	if err != nil {
		return fmt.Sprintf("%s %v: %v", name, args, err)
	}
	return string(out)
}

// helm runs the pinned Helm against the test kube-apiserver and returns its combined output.
func helm(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, helmBin, append([]string{"--kubeconfig", adminKubeconfig}, args...)...) //nolint:gosec // G204: our own Helm
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(os.TempDir(), "clustertrust-helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(os.TempDir(), "clustertrust-helm-config"), "HELM_DATA_HOME="+filepath.Join(os.TempDir(), "clustertrust-helm-data"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kubectl runs kubectl of the same version as the kube-apiserver, with stdin when given.
func kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, kubectlBin, append([]string{"--kubeconfig", adminKubeconfig}, args...)...) //nolint:gosec // G204: our own kubectl
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
