//go:build e2e

// Package e2e proves cross-cluster trust the way users run it: an upstream control plane issues
// ServiceAccount tokens, a downstream control plane authenticates them through clustertrust, and RBAC on
// the downstream decides. It needs no knowledge of how the clusters run; it reads:
//
//	UPSTREAM_KUBECONFIG, DOWNSTREAM_KUBECONFIG, THIRD_KUBECONFIG   admin kubeconfigs
//	WEBHOOK_URL, WEBHOOK_CA_FILE                                  clustertrust's /authenticate and its CA
//	CLUSTERS_CMD                                                  a command taking `stop|start|rotate-key upstream`
//
// hack/e2e.sh sets them for the local control planes of hack/clusters.sh; hack/kind/e2e.sh for kind.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/test/framework"
)

// cluster is one control plane as the tests see it.
type cluster struct {
	name   string
	config *rest.Config
	kube   *kubernetes.Clientset
	ctrl   client.Client
	caPEM  []byte
	iss    string // memoised by issuer
}

var (
	upstream, downstream, third *cluster
	webhookURL                  string
	webhookCA                   []byte
	clustersCmd                 string
	// downstreamAudience is the downstream API server's address exactly as a client writes it, the
	// audience Flux's generic provider puts in the token.
	downstreamAudience string
)

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	// The metrics check looks at what the tests that ran left in clustertrust's /metrics, so it runs
	// after all of them whatever -run, -skip or -shuffle selected.
	subsetRan = framework.SubsetSelected()
	if !framework.RunAfterSuite(testing.InternalTest{Name: "TestMetricsAfterSuite", F: metricsAfterSuite}) {
		fmt.Fprintln(os.Stderr, "FAIL: the after-suite check TestMetricsAfterSuite failed (its message is above)")
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// subsetRan tells the after-suite checks that -run or -skip narrowed the tests m.Run ran.
var subsetRan bool

// documentedMetrics are the metrics the README documents, each of which must have a non-zero sample
// after the suite. (clustertrust_unauthorized_callers_total needs --client-ca-file; the integration
// suite checks it.) ownReviews marks those the check's own object and reviews produce whatever ran
// before it; the others need particular tests (an unknown kid needs a key rotation).
var documentedMetrics = []struct {
	name       string
	ownReviews bool
}{
	{"clustertrust_tokenreviews_total", true},
	{"clustertrust_tokenreview_duration_seconds_count", true},
	{"clustertrust_jwks_fetches_total", true},
	{"clustertrust_jwks_last_success_timestamp_seconds", true},
	{"clustertrust_jwks_keyset_info", true},
	{"clustertrust_unknown_kid_refetches_total", false},
	{"clustertrust_cache_requests_total", true},
	{"clustertrust_cache_entries", true},
	{"clustertrust_cache_bytes", true},
	{"clustertrust_issuers", true},
}

// metricsAfterSuite is TestMetricsAfterSuite, run by TestMain after every selected test: it trusts
// the upstream, reviews a token twice (the second is a cache hit) and scrapes clustertrust's /metrics.
// After the whole suite every documented metric must have a non-zero sample; when -run or -skip
// selected a subset, only those the check's own reviews produce, since the tests that produce the
// others (a key rotation for the unknown-kid refetches) may not have run.
func metricsAfterSuite(t *testing.T) {
	url := os.Getenv("WEBHOOK_METRICS_URL")
	if url == "" {
		t.Fatal("WEBHOOK_METRICS_URL is not set: run `make test-e2e` (hack/e2e.sh)")
	}
	trust(t, "metrics", nil)
	waitReady(t, "metrics")
	token := upstream.serviceAccountToken(t, "tenant-a", "reconciler", downstreamAudience)
	for range 2 { // the second is a cache hit
		if st := reviewDirect(t, token); !st.Authenticated {
			t.Fatalf("review: %+v", st)
		}
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	nonZero := map[string]bool{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		if i := strings.LastIndex(line, " "); i > 0 {
			rest = line[i+1:]
		}
		if v, err := strconv.ParseFloat(rest, 64); err == nil && v != 0 {
			nonZero[name] = true
		}
	}
	for _, m := range documentedMetrics {
		if subsetRan && !m.ownReviews {
			t.Logf("metric %s not checked: -run or -skip selected a subset of the tests", m.name)
			continue
		}
		if !nonZero[m.name] {
			t.Errorf("metric %s has no non-zero sample", m.name)
		}
	}
}

func setup() error {
	var err error
	for _, c := range []struct {
		dst *(*cluster)
		env string
	}{{&upstream, "UPSTREAM_KUBECONFIG"}, {&downstream, "DOWNSTREAM_KUBECONFIG"}, {&third, "THIRD_KUBECONFIG"}} {
		if *c.dst, err = loadCluster(c.env); err != nil {
			return err
		}
	}
	webhookURL = os.Getenv("WEBHOOK_URL")
	clustersCmd = os.Getenv("CLUSTERS_CMD")
	caFile := os.Getenv("WEBHOOK_CA_FILE")
	if webhookURL == "" || caFile == "" || clustersCmd == "" {
		return fmt.Errorf("WEBHOOK_URL, WEBHOOK_CA_FILE and CLUSTERS_CMD must be set: run `make test-e2e` (hack/e2e.sh)")
	}
	if webhookCA, err = os.ReadFile(caFile); err != nil {
		return err
	}
	downstreamAudience = downstream.config.Host
	return nil
}

func loadCluster(env string) (*cluster, error) {
	path := os.Getenv(env)
	if path == "" {
		return nil, fmt.Errorf("%s is not set: run `make test-e2e` (hack/e2e.sh)", env)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("could not load %s=%s: %w", env, path, err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	ca := cfg.CAData
	if len(ca) == 0 && cfg.CAFile != "" {
		if ca, err = os.ReadFile(cfg.CAFile); err != nil {
			return nil, err
		}
	}
	return &cluster{name: strings.TrimSuffix(env, "_KUBECONFIG"), config: cfg, kube: kube, ctrl: c, caPEM: ca}, nil
}

// issuer is the cluster's ServiceAccount issuer, read from its discovery document once (so it is known
// while the cluster is stopped).
func (c *cluster) issuer(t *testing.T) string {
	t.Helper()
	if c.iss != "" {
		return c.iss
	}
	body, err := c.kube.RESTClient().Get().AbsPath("/.well-known/openid-configuration").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("%s discovery: %v", c.name, err)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	c.iss = doc.Issuer
	return doc.Issuer
}

// jwks returns the cluster's published ServiceAccount keys.
func (c *cluster) jwks(t *testing.T) []byte {
	t.Helper()
	body, err := c.kube.RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("%s jwks: %v", c.name, err)
	}
	return body
}

// serviceAccountToken creates namespace/name (if needed) and mints a token for audience through the
// TokenRequest API, as a projected token volume would.
func (c *cluster) serviceAccountToken(t *testing.T, namespace, name, audience string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := c.kube.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	tr, err := c.kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("%s TokenRequest for %s/%s: %v", c.name, namespace, name, err)
	}
	return tr.Status.Token
}

// trust declares the upstream as an OpenIDConnect object on the downstream, deleted when t ends.
func trust(t *testing.T, name string, mutate func(*v1alpha1.OpenIDConnect)) *v1alpha1.OpenIDConnect {
	t.Helper()
	obj := &v1alpha1.OpenIDConnect{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.OpenIDConnectSpec{
			IssuerURL: upstream.issuer(t),
			Audiences: []string{downstreamAudience},
			CABundle:  upstream.caPEM,
		},
	}
	if mutate != nil {
		mutate(obj)
	}
	if err := downstream.ctrl.Create(context.Background(), obj); err != nil {
		t.Fatalf("create OpenIDConnect %s: %v", name, err)
	}
	t.Cleanup(func() { untrust(t, name) })
	return obj
}

func untrust(t *testing.T, name string) {
	t.Helper()
	err := downstream.ctrl.Delete(context.Background(), &v1alpha1.OpenIDConnect{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete OpenIDConnect %s: %v", name, err)
	}
}

// waitReady waits for Ready=True.
func waitReady(t *testing.T, name string) {
	t.Helper()
	framework.WaitCondition(t, downstream.ctrl, name, v1alpha1.ConditionReady, metav1.ConditionTrue, "", "")
}

// clusters runs CLUSTERS_CMD with args (stop|start|rotate-key upstream).
func clusters(t *testing.T, args ...string) {
	t.Helper()
	t.Logf("%s %s: %s", clustersCmd, strings.Join(args, " "), strings.TrimSpace(clustersOutput(t, args...)))
}

// bindRole grants subject verbs on resources in namespace on the downstream, removed when t ends.
func bindRole(t *testing.T, namespace, name string, subject rbacv1.Subject, resources, verbs []string) {
	t.Helper()
	ctx := context.Background()
	if _, err := downstream.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: resources, Verbs: verbs}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{subject},
	}
	for _, o := range []client.Object{role, binding} {
		if err := downstream.ctrl.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = downstream.ctrl.Delete(context.Background(), o) })
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// asToken returns a downstream client that authenticates with token only.
func asToken(t *testing.T, token string) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(framework.TokenConfig(downstream.config, token))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// whoami asks the downstream kube-apiserver who token is.
func whoami(t *testing.T, token string) (string, error) {
	t.Helper()
	return framework.Whoami(context.Background(), downstream.config, token)
}

// reviewDirect posts a TokenReview straight to clustertrust, bypassing kube-apiserver and its cache.
func reviewDirect(t *testing.T, token string) authenticationv1.TokenReviewStatus {
	t.Helper()
	return framework.ReviewDirect(t, webhookURL, webhookCA, nil, token)
}

func condition(name, typ string) (*metav1.Condition, *v1alpha1.OpenIDConnect, error) {
	return framework.Condition(context.Background(), downstream.ctrl, name, typ)
}
