// Command scale loads many OpenIDConnect objects (static keys, one issuer each) into a real
// kube-apiserver with the webhook binary running against it, and measures what issue #14 asks of the
// control loop:
//   - creation: the API server's own time to create the objects N at a time, with the webhook running
//     and (first, in a fresh control plane) with no webhook at all, and the writes the webhook made;
//   - readiness: for each object, from its create call's return to the first review that authenticates
//     a token of its issuer (one prober walks the objects in creation order, so each lag is an upper
//     bound), and from the first create until every issuer authenticates;
//   - restart: with every object stored, launch → /readyz 200 → every issuer authenticates, the status
//     and event writes the new process made, and its RSS, with and without -webhook-memory-limit;
//   - review latency across all issuers at c=8.
//
// Usage:
//
//	KUBEBUILDER_ASSETS=bin/k8s/1.37.2 go run ./hack/scale -objects 1000,10000 -webhook-memory-limit 204MiB
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/hack/internal/proc"
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

type options struct {
	webhookBin  string
	webhookArgs []string
	concurrency int
	memLimit    string
	baseline    bool
	profile     string
	metricsPort int // set for the profiled restart
	probe       bool
}

func run() error {
	objects := flag.String("objects", "1000,10000", "Object counts to measure, comma separated.")
	var o options
	flag.StringVar(&o.webhookBin, "webhook", "bin/webhook", "The webhook binary.")
	webhookArgs := flag.String("webhook-args", "", "Extra flags for `webhook serve`, space separated (e.g. \"--kube-api-qps 1000\").")
	flag.IntVar(&o.concurrency, "create-concurrency", 16, "Objects created at once.")
	flag.StringVar(&o.memLimit, "webhook-memory-limit", "", "GOMEMLIMIT for the webhook process only, as config/manager sets it (e.g. 160MiB); the restart is then measured without and with it.")
	flag.StringVar(&o.profile, "restart-profile", "", "Write CPU profiles of the webhook while the objects are created (FILE.create) and of the (first) restarted webhook from launch until every issuer authenticates (FILE), and its heap after that (FILE.heap); the webhook serves pprof on a loopback metrics port for them.")
	flag.BoolVar(&o.probe, "probe", true, "Review each object's token from its create on (one review at a time); without, creation is measured with the webhook only watching, and the authentication of every issuer is checked after the last create.")
	flag.BoolVar(&o.baseline, "baseline", true, "Also create the objects in a fresh control plane with no webhook, for the API server's own creation time.")
	flag.Parse()
	o.webhookArgs = strings.Fields(*webhookArgs)
	if o.concurrency < 1 || o.concurrency > 256 {
		return fmt.Errorf("-create-concurrency %d must be within 1..256", o.concurrency)
	}
	for _, s := range strings.Split(*objects, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 20000 {
			return fmt.Errorf("object count %q must be within 1..20000", s)
		}
		if err := measure(n, o); err != nil {
			return err
		}
	}
	return nil
}

// fixture is what every phase shares: the issuers' key and URLs, a token per issuer, and the serving
// certificate.
type fixture struct {
	n      int
	key    testissuer.Key
	jwks   []byte
	tokens []string
	dir    string
	ca     *pki.CA
	cert   string
	key2   string
}

func (f *fixture) issuerURL(i int) string { return fmt.Sprintf("https://issuer-%d.scale.example", i) }

func (f *fixture) object(i int) *v1alpha1.OpenIDConnect {
	return &v1alpha1.OpenIDConnect{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("issuer-%d", i)},
		Spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: f.issuerURL(i), Audiences: []string{audience}, JWKS: &v1alpha1.JWKSSpec{Keys: f.jwks}},
	}
}

func newFixture(n int) (*fixture, error) {
	dir, err := os.MkdirTemp("", "clustertrust-scale-")
	if err != nil {
		return nil, err
	}
	f := &fixture{n: n, dir: dir}
	// One signing key shared by all issuers keeps setup cheap; every object still has its own issuer,
	// key set and router entry.
	if f.key, err = testissuer.NewKey(jose.ES256); err != nil {
		return nil, err
	}
	f.jwks, _ = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: f.key.Private.Public(), KeyID: f.key.KID, Use: "sig"}}})
	f.tokens = make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			f.tokens[i], _ = testissuer.Sign(f.key, testissuer.Claims{"iss": f.issuerURL(i), "sub": "alice", "aud": audience, "exp": time.Now().Add(3 * time.Hour).Unix()}, nil)
		}()
	}
	wg.Wait()
	if f.ca, err = pki.NewCA("scale"); err != nil {
		return nil, err
	}
	pair, err := f.ca.Serving("webhook", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		return nil, err
	}
	f.cert, f.key2, err = pair.Write(dir, "serving")
	return f, err
}

func measure(n int, o options) error {
	f, err := newFixture(n)
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(f.dir) }()
	fmt.Printf("== %d objects, created %d at a time\n", n, o.concurrency)

	if o.baseline {
		cp, err := startControlPlane(f.dir)
		if err != nil {
			return err
		}
		created, err := createAll(cp.c, f, o.concurrency, nil)
		cp.stop()
		if err != nil {
			return err
		}
		fmt.Printf("no webhook:   %d created in %s\n", n, created.Round(time.Millisecond))
	}

	cp, err := startControlPlane(f.dir)
	if err != nil {
		return err
	}
	defer cp.stop()
	first := o
	if o.profile != "" {
		first.metricsPort = freePort()
	}
	w, err := startWebhook(cp, f, first, "")
	if err != nil {
		return err
	}
	defer func() { w.stop() }()
	if err := w.waitReady(time.Minute); err != nil {
		return err
	}
	writes, err := countWrites(cp)
	if err != nil {
		return err
	}
	prober := newProber(w, f)
	var createProfile *cpuProfile
	if first.metricsPort != 0 {
		createProfile = startProfile(first.metricsPort, o.profile+".create")
	}
	if !o.probe {
		prober = nil
	}
	t0 := time.Now()
	cpu0 := proc.CPU(w.cmd.Process.Pid)
	created, err := createAll(cp.c, f, o.concurrency, prober)
	if err != nil {
		return err
	}
	createCPU := proc.CPU(w.cmd.Process.Pid) - cpu0
	if createProfile != nil {
		if err := createProfile.stop(); err != nil {
			return err
		}
	}
	var allAuthn time.Duration
	var lags []time.Duration
	if prober != nil {
		if allAuthn, lags, err = prober.wait(15 * time.Minute); err != nil {
			return err
		}
	} else {
		if err := untilAllAuthenticate(w, f, 15*time.Minute); err != nil {
			return err
		}
		allAuthn = time.Since(t0)
	}
	lagText := "not probed during creation"
	if lags != nil {
		lagText = fmt.Sprintf("create → authenticates p50 %s p99 %s max %s (upper bounds)", pct(lags, 50), pct(lags, 99), pct(lags, 100))
	}
	fmt.Printf("webhook:      %d created in %s (webhook CPU meanwhile %s); all authenticate %s after the first create (%s after the last); %s\n",
		n, created.Round(time.Millisecond), createCPU.Round(10*time.Millisecond), allAuthn.Round(time.Millisecond), (allAuthn - created).Round(time.Millisecond), lagText)
	if err := waitAllReady(cp.c, n, 15*time.Minute); err != nil {
		return err
	}
	readyAll := time.Since(t0)
	time.Sleep(2 * time.Second) // let the last writes reach the watch
	fmt.Printf("              all Ready (status) %s after the first create; webhook wrote %s; %s\n",
		readyAll.Round(time.Millisecond), writes.stop(), rss(w.cmd.Process.Pid))
	if err := latency(w, f); err != nil {
		return err
	}

	limits := []string{""}
	if o.memLimit != "" {
		limits = append(limits, o.memLimit)
	}
	for _, limit := range limits {
		w.stop()
		writes, err := countWrites(cp)
		if err != nil {
			return err
		}
		launch := time.Now()
		profiled := o
		if o.profile != "" && limit == "" {
			profiled.metricsPort = freePort()
		}
		if w, err = startWebhook(cp, f, profiled, limit); err != nil {
			return err
		}
		var profile *cpuProfile
		if profiled.metricsPort != 0 {
			profile = startProfile(profiled.metricsPort, o.profile)
		}
		if err := w.waitReady(time.Minute); err != nil {
			return err
		}
		ready := time.Since(launch)
		refused := sweep(w, f)
		all := time.Since(launch)
		if profile != nil {
			if err := profile.stop(); err != nil {
				return err
			}
			if err := fetch(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap", profiled.metricsPort), o.profile+".heap"); err != nil {
				return err
			}
			fmt.Printf("              heap profile after the sweep: %s.heap\n", o.profile)
		}
		rssAfter := rss(w.cmd.Process.Pid)
		time.Sleep(5 * time.Second) // writes a restart would make come within this
		name := "restart:"
		if limit != "" {
			name = "restart, GOMEMLIMIT=" + limit + ":"
		}
		fmt.Printf("%-14s launch → Ready %s, → all %d authenticate %s (%d refused at first, after Ready); wrote %s; after the sweep %s, 5 s later %s\n",
			name, ready.Round(time.Millisecond), n, all.Round(time.Millisecond), refused, writes.stop(), rssAfter, rss(w.cmd.Process.Pid))
		if refused > 0 {
			return fmt.Errorf("%d valid tokens were refused after the restarted webhook was Ready", refused)
		}
	}
	return nil
}

// --- control plane and webhook ---------------------------------------------------------------------------

type controlPlane struct {
	env        *envtest.Environment
	cfg        *rest.Config
	c          client.WithWatch
	kubeconfig string
}

func startControlPlane(dir string) (*controlPlane, error) {
	env := &envtest.Environment{CRDDirectoryPaths: []string{"config/crd/bases"}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("could not start kube-apiserver (is KUBEBUILDER_ASSETS set?): %w", err)
	}
	cp := &controlPlane{env: env, cfg: cfg}
	scheme := kruntime.NewScheme()
	_ = v1alpha1.AddToScheme(scheme)
	_ = corev1.AddToScheme(scheme)
	_ = eventsv1.AddToScheme(scheme)
	cfg.QPS, cfg.Burst = 5000, 5000 // the load generator is not what is measured
	if cp.c, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme}); err != nil {
		cp.stop()
		return nil, err
	}
	user, err := env.AddUser(envtest.User{Name: "clustertrust", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		cp.stop()
		return nil, err
	}
	kubeconfig, _ := user.KubeConfig()
	cp.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(cp.kubeconfig, kubeconfig, 0o600); err != nil {
		cp.stop()
		return nil, err
	}
	return cp, nil
}

func (cp *controlPlane) stop() { _ = cp.env.Stop() }

type webhook struct {
	cmd   *exec.Cmd
	url   string
	probe string
	hc    *http.Client
	log   string
	done  chan struct{}
}

func startWebhook(cp *controlPlane, f *fixture, o options, memLimit string) (*webhook, error) {
	port, probe := freePort(), freePort()
	args := append([]string{"serve", "--kubeconfig", cp.kubeconfig, "--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(port), "--tls-cert-file", f.cert, "--tls-private-key-file", f.key2,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(probe), "--cache-ttl", "0"}, o.webhookArgs...)
	if o.metricsPort != 0 {
		args = append(args, "--enable-profiling", "--metrics-bind-address", "127.0.0.1:"+strconv.Itoa(o.metricsPort))
	}
	cmd := exec.Command(o.webhookBin, args...) //nolint:gosec // our own binary
	cmd.Env = os.Environ()
	if memLimit != "" {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+memLimit)
	}
	logName := filepath.Join(f.dir, "webhook.log")
	logFile, err := os.OpenFile(logName, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	w := &webhook{cmd: cmd, url: "https://127.0.0.1:" + strconv.Itoa(port) + "/authenticate",
		probe: "http://127.0.0.1:" + strconv.Itoa(probe) + "/readyz", log: logName, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(w.done) }()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(f.ca.CertPEM())
	w.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 16}}
	return w, nil
}

// stop ends the webhook with SIGTERM, as a rollout does, and waits for it.
func (w *webhook) stop() {
	select {
	case <-w.done:
		return
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
	w.hc.CloseIdleConnections()
}

// waitReady polls /readyz every 10 ms until it answers 200.
func (w *webhook) waitReady(limit time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case <-w.done:
			return fmt.Errorf("the webhook exited; its log is %s:\n%s", w.log, tail(w.log))
		default:
		}
		resp, err := hc.Get(w.probe)
		if err != nil {
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
	return fmt.Errorf("the webhook was not Ready within %s; its log:\n%s", limit, tail(w.log))
}

func (w *webhook) review(token string) bool {
	body, _ := json.Marshal(authenticationv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec:     authenticationv1.TokenReviewSpec{Token: token},
	})
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, w.url, bytes.NewReader(body))
	resp, err := w.hc.Do(req)
	if err != nil {
		return false
	}
	defer func() { _ = resp.Body.Close() }()
	var tr authenticationv1.TokenReview
	return json.NewDecoder(resp.Body).Decode(&tr) == nil && tr.Status.Authenticated
}

// --- phases -------------------------------------------------------------------------------------------

// createAll creates the fixture's objects, concurrency at a time, and tells the prober when each
// create returned. It returns the time the creates took.
func createAll(c client.Client, f *fixture, concurrency int, p *prober) (time.Duration, error) {
	start := time.Now()
	if p != nil {
		p.start(start)
	}
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	errs := make(chan error, f.n)
	for i := range f.n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := c.Create(context.Background(), f.object(i)); err != nil {
				errs <- err
				return
			}
			if p != nil {
				p.created(i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// prober walks the objects in creation order, reviewing a token of each issuer until it
// authenticates; one connection, so it adds one review's worth of load at a time.
type prober struct {
	w         *webhook
	f         *fixture
	t0        time.Time
	createdAt []atomic.Int64 // ns since t0; 0 = not yet
	authnAt   []time.Duration
	finished  chan struct{}
	err       error
}

func newProber(w *webhook, f *fixture) *prober {
	return &prober{w: w, f: f, createdAt: make([]atomic.Int64, f.n), authnAt: make([]time.Duration, f.n), finished: make(chan struct{})}
}

func (p *prober) created(i int) { p.createdAt[i].Store(int64(time.Since(p.t0)) | 1) }

func (p *prober) start(t0 time.Time) {
	p.t0 = t0
	go func() {
		defer close(p.finished)
		deadline := t0.Add(15 * time.Minute)
		for i := 0; i < p.f.n; {
			if time.Now().After(deadline) {
				p.err = fmt.Errorf("issuer %d of %d did not authenticate within 15 minutes", i, p.f.n)
				return
			}
			if p.createdAt[i].Load() == 0 {
				time.Sleep(time.Millisecond)
				continue
			}
			if p.w.review(p.f.tokens[i]) {
				p.authnAt[i] = time.Since(p.t0)
				i++
				continue
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
}

// wait returns when every issuer authenticated: the time from the first create, and each object's lag
// from its create's return.
func (p *prober) wait(limit time.Duration) (time.Duration, []time.Duration, error) {
	select {
	case <-p.finished:
	case <-time.After(limit):
		return 0, nil, errors.New("the prober did not finish")
	}
	if p.err != nil {
		return 0, nil, p.err
	}
	lags := make([]time.Duration, p.f.n)
	for i := range lags {
		lags[i] = p.authnAt[i] - time.Duration(p.createdAt[i].Load())
	}
	slices.Sort(lags)
	return slices.Max(p.authnAt), lags, nil
}

// waitAllReady returns once every object's status says Ready.
func waitAllReady(c client.Client, n int, limit time.Duration) error {
	for deadline := time.Now().Add(limit); ; {
		var list v1alpha1.OpenIDConnectList
		if err := c.List(context.Background(), &list); err != nil {
			return err
		}
		ready := 0
		for _, o := range list.Items {
			for _, cond := range o.Status.Conditions {
				if cond.Type == v1alpha1.ConditionReady && cond.Status == metav1.ConditionTrue {
					ready++
				}
			}
		}
		if ready == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d objects Ready after %s", ready, n, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// untilAllAuthenticate reviews a token of every issuer, 8 at a time, again and again for those refused,
// until all authenticate.
func untilAllAuthenticate(w *webhook, f *fixture, limit time.Duration) error {
	left := f.all()
	for deadline := time.Now().Add(limit); ; time.Sleep(100 * time.Millisecond) {
		if left = refusedOf(w, f, left); len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d issuers did not authenticate within %s", len(left), limit)
		}
	}
}

// sweep reviews a token of every issuer, 8 at a time, and returns how many were refused.
func sweep(w *webhook, f *fixture) int { return len(refusedOf(w, f, f.all())) }

// all numbers every issuer of the fixture.
func (f *fixture) all() []int {
	all := make([]int, f.n)
	for i := range all {
		all[i] = i
	}
	return all
}

// refusedOf reviews the tokens of the issuers numbered in which, 8 at a time, and returns those refused.
func refusedOf(w *webhook, f *fixture, which []int) []int {
	var mu sync.Mutex
	var refused []int
	eightAtATime(len(which), func(j int) {
		if !w.review(f.tokens[which[j]]) {
			mu.Lock()
			refused = append(refused, which[j])
			mu.Unlock()
		}
	})
	return refused
}

// eightAtATime calls fn(j) for every j in [0, n), from 8 goroutines, and returns when all are done.
func eightAtATime(n int, fn func(j int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				fn(j)
			}
		}()
	}
	for j := range n {
		next <- j
	}
	close(next)
	wg.Wait()
}

// latency reviews tokens of random issuers, 8 at a time, and prints the distribution.
func latency(w *webhook, f *fixture) error {
	const reviews = 4000
	lat := make([]time.Duration, reviews)
	var bad atomic.Int64
	eightAtATime(reviews, func(j int) {
		tok := f.tokens[rand.IntN(f.n)] //nolint:gosec // picking a test issuer, not a secret
		t0 := time.Now()
		if !w.review(tok) {
			bad.Add(1)
		}
		lat[j] = time.Since(t0)
	})
	slices.Sort(lat)
	fmt.Printf("              %d reviews across issuers (c=8): p50 %s p99 %s max %s, %d refused\n",
		reviews, pct(lat, 50), pct(lat, 99), pct(lat, 100), bad.Load())
	if bad.Load() > 0 {
		return fmt.Errorf("%d valid tokens were refused", bad.Load())
	}
	return nil
}

// --- API writes -----------------------------------------------------------------------------------------

// writes counts what the webhook writes from now on: status updates (MODIFIED events of
// OpenIDConnects; nothing else modifies them here) and Events.
type writes struct {
	cancel         context.CancelFunc
	status, events atomic.Int64
	done           sync.WaitGroup
}

func countWrites(cp *controlPlane) (*writes, error) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writes{cancel: cancel}
	watches := []struct {
		list    client.ObjectList
		counter *atomic.Int64
		types   []watch.EventType
	}{
		{&v1alpha1.OpenIDConnectList{}, &w.status, []watch.EventType{watch.Modified}},
		{&eventsv1.EventList{}, &w.events, []watch.EventType{watch.Added, watch.Modified}},
	}
	for _, x := range watches {
		// Listing first gives the resourceVersion to watch from: only what happens after this.
		if err := cp.c.List(ctx, x.list); err != nil {
			cancel()
			return nil, err
		}
		rv := x.list.(metav1.ListInterface).GetResourceVersion()
		w.done.Add(1)
		go func() {
			defer w.done.Done()
			// The API server may end a watch at any time (a slow reader, a timeout); the count goes on from
			// the last event seen.
			for ctx.Err() == nil {
				wi, err := cp.c.Watch(ctx, x.list, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				for ev := range wi.ResultChan() {
					if slices.Contains(x.types, ev.Type) {
						x.counter.Add(1)
					}
					if o, ok := ev.Object.(metav1.Object); ok && ev.Type != watch.Error {
						rv = o.GetResourceVersion()
					}
				}
				wi.Stop()
			}
		}()
	}
	return w, nil
}

// stop ends the count and describes it.
func (w *writes) stop() string {
	w.cancel()
	w.done.Wait()
	return fmt.Sprintf("%d status updates and %d events", w.status.Load(), w.events.Load())
}

// cpuProfile collects the webhook's CPU profile in one-second pieces (the process has just been
// launched: the first piece starts as soon as its pprof endpoint answers) and merges them on stop.
type cpuProfile struct {
	port   int
	file   string
	stopCh chan struct{}
	done   chan []string
}

func startProfile(port int, file string) *cpuProfile {
	p := &cpuProfile{port: port, file: file, stopCh: make(chan struct{}), done: make(chan []string, 1)}
	go func() {
		var pieces []string
		hc := &http.Client{Timeout: 5 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-p.stopCh:
				p.done <- pieces
				return
			default:
			}
			resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=1", port))
			if err != nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			piece := fmt.Sprintf("%s.%d", file, i)
			out, _ := os.Create(piece) //nolint:gosec // the operator's own file name
			_, _ = out.ReadFrom(resp.Body)
			_ = out.Close()
			_ = resp.Body.Close()
			pieces = append(pieces, piece)
		}
	}()
	return p
}

// fetch stores what url answers in file.
func fetch(url, file string) error {
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(url) //nolint:noctx // bounded by the timeout
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := os.Create(file) //nolint:gosec // the operator's own file name
	if err != nil {
		return err
	}
	_, err = out.ReadFrom(resp.Body)
	return errors.Join(err, out.Close())
}

func (p *cpuProfile) stop() error {
	close(p.stopCh)
	pieces := <-p.done
	if len(pieces) == 0 {
		return errors.New("no CPU profile was collected")
	}
	args := append([]string{"tool", "pprof", "-proto", "-output", p.file}, pieces...)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil { //nolint:gosec // go tool pprof on our own files
		return fmt.Errorf("could not merge the profiles: %w: %s", err, out)
	}
	for _, piece := range pieces {
		_ = os.Remove(piece)
	}
	fmt.Printf("              CPU profile: %s (%d one-second pieces)\n", p.file, len(pieces))
	return nil
}

// --- helpers ------------------------------------------------------------------------------------------

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, len(sorted)*p/100)
	return sorted[i].Round(time.Millisecond)
}

func tail(file string) string {
	b, _ := os.ReadFile(file) //nolint:gosec // our own temporary file
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// rss describes the process's resident memory: in all, anonymous (the Go heap, stacks and runtime)
// and file-backed (mostly the binary's own pages).
func rss(pid int) string {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "RSS unknown"
	}
	defer func() { _ = f.Close() }()
	kb := map[string]int64{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, rest, ok := strings.Cut(s.Text(), ":")
		if ok && strings.HasPrefix(name, "Rss") || name == "VmRSS" {
			kb[name], _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		}
	}
	return fmt.Sprintf("RSS %d MiB (anonymous %d, file %d)", kb["VmRSS"]>>10, kb["RssAnon"]>>10, kb["RssFile"]>>10)
}

func freePort() int {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}
