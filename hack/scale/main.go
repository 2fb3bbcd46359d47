// Command scale loads many OpenIDConnect objects (static keys, one issuer each) into a real
// kube-apiserver, runs the webhook binary against it, and reports the time until every object is
// Ready, the webhook's resident memory, and review latency across the issuers.
//
//	KUBEBUILDER_ASSETS=bin/k8s/1.37.2 go run ./hack/scale -objects 1000,10000
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/pki"
	"github.com/clustertrust/clustertrust/internal/testissuer"
)

const audience = "https://downstream.scale:6443"

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "scale: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	objects := flag.String("objects", "1000,10000", "Object counts to measure, comma separated.")
	webhookBin := flag.String("webhook", "bin/webhook", "The webhook binary.")
	webhookArgs := flag.String("webhook-args", "", "Extra flags for `webhook serve`, space separated (e.g. \"--kube-api-qps 1000\").")
	concurrency := flag.Int("create-concurrency", 32, "Objects created at once.")
	memLimit := flag.String("webhook-memory-limit", "", "GOMEMLIMIT for the webhook process only, as config/manager sets it (e.g. 160MiB).")
	flag.Parse()
	if *concurrency < 1 || *concurrency > 256 {
		return fmt.Errorf("-create-concurrency %d must be within 1..256", *concurrency)
	}
	for _, s := range strings.Split(*objects, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 20000 {
			return fmt.Errorf("object count %q must be within 1..20000", s)
		}
		if err := measure(n, *webhookBin, strings.Fields(*webhookArgs), *concurrency, *memLimit); err != nil {
			return err
		}
	}
	return nil
}

func measure(n int, webhookBin string, webhookArgs []string, concurrency int, memLimit string) error {
	dir, err := os.MkdirTemp("", "clustertrust-scale-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	env := &envtest.Environment{CRDDirectoryPaths: []string{"config/crd/bases"}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("could not start kube-apiserver (is KUBEBUILDER_ASSETS set?): %w", err)
	}
	defer func() { _ = env.Stop() }()
	scheme := runtime.NewScheme()
	_ = v1alpha1.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	user, err := env.AddUser(envtest.User{Name: "clustertrust", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		return err
	}
	kubeconfig, _ := user.KubeConfig()
	kcFile := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcFile, kubeconfig, 0o600); err != nil {
		return err
	}

	// One signing key shared by all issuers keeps setup cheap; every object still has its own issuer,
	// key set and router entry.
	key, err := testissuer.NewKey(jose.ES256)
	if err != nil {
		return err
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Private.Public(), KeyID: key.KID, Use: "sig"}}})
	issuerURL := func(i int) string { return fmt.Sprintf("https://issuer-%d.scale.example", i) }

	ca, _ := pki.NewCA("scale")
	pair, _ := ca.Serving("webhook", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	certFile, keyFile, err := pair.Write(dir, "serving")
	if err != nil {
		return err
	}
	port, probe := freePort(), freePort()
	args := append([]string{"serve", "--kubeconfig", kcFile, "--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(port), "--tls-cert-file", certFile, "--tls-private-key-file", keyFile,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(probe), "--cache-ttl", "0"}, webhookArgs...)
	cmd := exec.Command(webhookBin, args...) //nolint:gosec // our own binary
	if memLimit != "" {
		cmd.Env = append(os.Environ(), "GOMEMLIMIT="+memLimit)
	}
	logFile, _ := os.Create(filepath.Join(dir, "webhook.log"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	start := time.Now()
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			obj := &v1alpha1.OpenIDConnect{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("issuer-%d", i)},
				Spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: issuerURL(i), Audiences: []string{audience}, JWKS: &v1alpha1.JWKSSpec{Keys: jwks}},
			}
			if err := c.Create(context.Background(), obj); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	created := time.Since(start)
	var ready int
	for deadline := time.Now().Add(15 * time.Minute); ; {
		var list v1alpha1.OpenIDConnectList
		if err := c.List(context.Background(), &list); err != nil {
			return err
		}
		ready = 0
		for _, o := range list.Items {
			if meta.IsStatusConditionTrue(o.Status.Conditions, v1alpha1.ConditionReady) {
				ready++
			}
		}
		if ready == n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d objects Ready after 15 minutes", ready, n)
		}
		time.Sleep(500 * time.Millisecond)
	}
	allReady := time.Since(start)
	readyAfterCreated := allReady - created
	rss := rssOf(cmd.Process.Pid)

	// Review latency across issuers: tokens of random issuers, 8 at a time.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 8}}
	url := "https://127.0.0.1:" + strconv.Itoa(port) + "/authenticate"
	const reviews = 4000
	lat := make([]time.Duration, reviews)
	var bad int64
	var mu sync.Mutex
	wg = sync.WaitGroup{}
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				i := rand.IntN(n) //nolint:gosec // picking a test issuer, not a secret
				tok, _ := testissuer.Sign(key, testissuer.Claims{"iss": issuerURL(i), "sub": "alice", "aud": audience, "exp": time.Now().Add(time.Hour).Unix()}, nil)
				t0 := time.Now()
				ok := review(hc, url, tok)
				lat[j] = time.Since(t0)
				if !ok {
					mu.Lock()
					bad++
					mu.Unlock()
				}
			}
		}()
	}
	for j := range reviews {
		next <- j
	}
	close(next)
	wg.Wait()
	slices.Sort(lat)
	fmt.Printf("objects=%d created in %s, all Ready after %s (%s after the last create); webhook RSS %d MiB; %d reviews across issuers (c=8): p50 %s p99 %s max %s, %d refused\n",
		n, created.Round(time.Millisecond), allReady.Round(time.Millisecond), readyAfterCreated.Round(time.Millisecond), rss>>20, reviews,
		lat[reviews/2].Round(time.Microsecond), lat[reviews*99/100].Round(time.Microsecond), lat[reviews-1].Round(time.Microsecond), bad)
	if bad > 0 {
		return fmt.Errorf("%d valid tokens were refused", bad)
	}
	return nil
}

func review(hc *http.Client, url, token string) bool {
	body, _ := json.Marshal(authenticationv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec:     authenticationv1.TokenReviewSpec{Token: token},
	})
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer func() { _ = resp.Body.Close() }()
	var tr authenticationv1.TokenReview
	return json.NewDecoder(resp.Body).Decode(&tr) == nil && tr.Status.Authenticated
}

func rssOf(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func freePort() int {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}
