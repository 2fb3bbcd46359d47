package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	"time"

	"github.com/go-jose/go-jose/v4"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustertrust/clustertrust/hack/internal/proc"
	"github.com/clustertrust/clustertrust/internal/pki"
	"github.com/clustertrust/clustertrust/internal/testissuer"
)

const audience = "https://downstream.loadgen:6443"

// child is a server process started by the parent.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

// result is one scenario's measurements.
type result struct {
	name        string
	requests    int
	correct     int
	authed      int
	wrong       int
	elapsed     time.Duration
	p50, p90    time.Duration
	p99, max    time.Duration
	cpuPerReq   time.Duration
	concurrency int
	// validP99 is the p99 of the requests that should authenticate (the flood scenario mixes them
	// with ones that should not); fetches counts JWKS fetches of the flooded issuer during the run.
	validP99 time.Duration
	fetches  int64
}

func (r result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func bench(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "clustertrust-loadgen-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	fmt.Printf("machine: %d CPUs, %s; load generator and server share them\n", runtime.NumCPU(), runtime.Version())
	rsaOps, ecOps := verifyCeiling()
	fmt.Printf("raw verify on one core: RSA-2048 %.0f/s (%.1f µs), P-256 %.0f/s (%.1f µs)\n\n", rsaOps, 1e6/rsaOps, ecOps, 1e6/ecOps)

	ca, err := pki.NewCA("loadgen")
	if err != nil {
		return err
	}
	serving, err := ca.Serving("loadgen", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		return err
	}
	certFile, keyFile, err := serving.Write(dir, "serving")
	if err != nil {
		return err
	}
	modes := strings.Split(o.modes, ",")
	var results []result
	if slices.ContainsFunc(modes, func(m string) bool { return m != "hangflood" }) {
		// The classic scenarios' issuers and children are gone before the hangflood mode starts.
		if results, err = benchClassic(ctx, o, modes, dir, ca, certFile, keyFile); err != nil {
			return err
		}
		report(results, protocolName(o.http2))
		for _, r := range results {
			if r.wrong > 0 {
				return fmt.Errorf("%s: %d wrong answers", r.name, r.wrong)
			}
		}
	}
	var hang []hangResult
	if slices.Contains(modes, "hangflood") {
		hang, err = benchHangFlood(ctx, o, dir, ca.CertPEM(), certFile, keyFile)
		reportHangFlood(o, hang) // what was measured, even when a phase failed
		if err != nil {
			return err
		}
	}
	return checkHangFlood(hang, o.hangCeiling)
}

// benchClassic runs the scenarios other than hangflood against one webhook child serving o.issuers
// issuers and the trivial handler.
func benchClassic(ctx context.Context, o options, modes []string, dir string, ca *pki.CA, certFile, keyFile string) ([]result, error) {
	var err error
	n := o.issuers
	fmt.Printf("starting %d %s issuers on loopback and minting tokens...\n", n, o.alg)
	issuers := make([]*testissuer.Issuer, n)
	for i := range issuers {
		if issuers[i], err = testissuer.New(jose.SignatureAlgorithm(o.alg)); err != nil {
			return nil, err
		}
		defer issuers[i].Close()
	}
	pool := mintPool(issuers[:1], 256)
	perIssuer := mintPool(issuers, 1)
	forger, err := testissuer.NewKey(jose.SignatureAlgorithm(o.alg))
	if err != nil {
		return nil, err
	}
	forger.KID = issuers[0].SigningKey().KID // a known kid with a bad signature: no refetch, a real verify
	claims := testissuer.ServiceAccountClaims("tenant-a", "reconciler", audience)
	invalid, err := testissuer.MintFor(forger, issuers[0].URL, claims)
	if err != nil {
		return nil, err
	}
	// Unknown kids: each names a key the issuer never published, which is what a flood aimed at the
	// JWKS refetch looks like. The rate limit must hold the fetches to one per --min-refetch-interval.
	unknownKID := make([]string, 256)
	for i := range unknownKID {
		k, err := testissuer.NewKey(jose.SignatureAlgorithm(o.alg))
		if err != nil {
			return nil, err
		}
		if unknownKID[i], err = testissuer.MintFor(k, issuers[0].URL, claims); err != nil {
			return nil, err
		}
	}

	urls := make([]string, n)
	for i, iss := range issuers {
		urls[i] = iss.URL
	}
	base := serverConfig{CertFile: certFile, KeyFile: keyFile, CAPEM: issuers[0].CAPEM(), Issuers: urls, Audience: audience}
	trivialCfg := base
	trivialCfg.Trivial, trivialCfg.Issuers = true, nil

	webhookCfg := base
	webhookCfg.CPUProfile, webhookCfg.MemProfile = o.cpuProfile, o.memProfile
	webhook, err := startChild(ctx, dir, "webhook", webhookCfg)
	if err != nil {
		return nil, err
	}
	defer webhook.stop()
	trivial, err := startChild(ctx, dir, "trivial", trivialCfg)
	if err != nil {
		return nil, err
	}
	defer trivial.stop()
	minimalCfg := base
	minimalCfg.Minimal = true
	minimal, err := startChild(ctx, dir, "minimal", minimalCfg)
	if err != nil {
		return nil, err
	}
	defer minimal.stop()

	var unique atomic.Int64
	uniqueAuds := func() []string { return []string{audience, "u" + strconv.FormatInt(unique.Add(1), 36)} }
	scenarios := []struct {
		mode        string
		name        string
		target      *child
		concurrency int
		next        func(i int) (token string, auds []string, wantAuthn bool)
	}{
		{"trivial", "trivial TLS handler", trivial, o.concurrency, func(i int) (string, []string, bool) { return pool[i%len(pool)], nil, true }},
		{"minimal", fmt.Sprintf("minimal verifier %s", o.alg), minimal, o.concurrency, func(i int) (string, []string, bool) { return pool[i%len(pool)], nil, true }},
		{"unique", fmt.Sprintf("unique %s (no cache hits)", o.alg), webhook, o.concurrency, func(i int) (string, []string, bool) {
			return pool[i%len(pool)], uniqueAuds(), true // distinct audiences: the cache key never repeats
		}},
		{"hot", fmt.Sprintf("hot %s (16 tokens, cached)", o.alg), webhook, o.concurrency, func(i int) (string, []string, bool) { return pool[i%16], nil, true }},
		{"issuers", fmt.Sprintf("issuers: %d, no cache hits", n), webhook, o.concurrency, func(i int) (string, []string, bool) {
			return perIssuer[i%len(perIssuer)], uniqueAuds(), true
		}},
		{"invalid", "invalid (bad signature)", webhook, o.concurrency, func(int) (string, []string, bool) { return invalid, uniqueAuds(), false }},
		{"flood", "flood: half unknown kid, half valid", webhook, o.concurrency, func(i int) (string, []string, bool) {
			if i%2 == 0 {
				return unknownKID[i/2%len(unknownKID)], uniqueAuds(), false
			}
			return pool[i%len(pool)], uniqueAuds(), true
		}},
		{"latency", "trivial TLS handler, c=1", trivial, 1, func(i int) (string, []string, bool) { return pool[i%len(pool)], nil, true }},
		{"latency", fmt.Sprintf("minimal verifier %s, c=1", o.alg), minimal, 1, func(i int) (string, []string, bool) { return pool[i%len(pool)], nil, true }},
		{"latency", fmt.Sprintf("unique %s, c=1", o.alg), webhook, 1, func(i int) (string, []string, bool) { return pool[i%len(pool)], uniqueAuds(), true }},
	}
	var results []result
	for _, s := range scenarios {
		if !slices.Contains(modes, s.mode) {
			continue
		}
		fetchesBefore := issuers[0].JWKSFetches.Load()
		r, err := drive(ctx, s.name, s.target, s.concurrency, o.duration, ca.CertPEM(), o.http2, s.next)
		if err != nil {
			return nil, err
		}
		r.fetches = issuers[0].JWKSFetches.Load() - fetchesBefore
		results = append(results, r)
	}
	return results, nil
}

// mintPool mints size ServiceAccount tokens per issuer, in parallel.
func mintPool(issuers []*testissuer.Issuer, size int) []string {
	out := make([]string, len(issuers)*size)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for i := range out {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c := testissuer.ServiceAccountClaims("tenant-a", "reconciler", audience)
			c["jti"] = strconv.Itoa(i)
			tok, err := issuers[i%len(issuers)].Mint(c)
			if err != nil {
				panic(err) // minting with a freshly generated key cannot fail
			}
			out[i] = tok
		}()
	}
	wg.Wait()
	return out
}

func startChild(ctx context.Context, dir, name string, cfg serverConfig) (*child, error) {
	b, _ := json.Marshal(cfg)
	file := filepath.Join(dir, name+".json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "serve", "--config", file) //nolint:gosec // re-executes this binary
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "LISTEN ") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s server did not start: %q %w", name, line, err)
	}
	return &child{cmd: cmd, stdin: stdin, addr: strings.TrimSpace(strings.TrimPrefix(line, "LISTEN "))}, nil
}

func (c *child) stop() {
	_ = c.stdin.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// cpuTime is the user+system CPU the process has used.
func (c *child) cpuTime() time.Duration { return proc.CPU(c.cmd.Process.Pid) }

func drive(ctx context.Context, name string, target *child, concurrency int, d time.Duration, caPEM []byte, h2 bool,
	next func(int) (string, []string, bool)) (result, error) {
	transport := loadTransport(caPEM, concurrency, h2)
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	wantProto := 1
	if h2 {
		wantProto = 2
	}
	url := "https://" + target.addr + "/authenticate"

	var counter atomic.Int64
	var wrong, authed atomic.Int64
	latencies := make([][]time.Duration, concurrency)
	valid := make([][]time.Duration, concurrency)
	errc := make(chan error, concurrency)
	cpuBefore := target.cpuTime()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := int(counter.Add(1))
				token, auds, want := next(i)
				body, _ := json.Marshal(authenticationv1.TokenReview{
					TypeMeta: metaTokenReview,
					Spec:     authenticationv1.TokenReviewSpec{Token: token, Audiences: auds},
				})
				t0 := time.Now()
				got, err := post(ctx, client, url, body, wantProto)
				took := time.Since(t0)
				latencies[w] = append(latencies[w], took)
				if want {
					valid[w] = append(valid[w], took)
				}
				if err != nil {
					errc <- err
					return
				}
				if got.Authenticated != want || (want && got.User.Username != "hub:system:serviceaccount:tenant-a:reconciler") {
					wrong.Add(1)
				}
				if got.Authenticated {
					authed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := target.cpuTime() - cpuBefore
	close(errc)
	if err := <-errc; err != nil {
		return result{}, fmt.Errorf("%s: %w", name, err)
	}
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	r := result{
		name: name, requests: len(all), wrong: int(wrong.Load()), authed: int(authed.Load()), elapsed: elapsed,
		p50: pct(0.50), p90: pct(0.90), p99: pct(0.99), max: all[len(all)-1], concurrency: concurrency,
	}
	r.correct = r.requests - r.wrong
	var validAll []time.Duration
	for _, l := range valid {
		validAll = append(validAll, l...)
	}
	if len(validAll) > 0 {
		slices.Sort(validAll)
		r.validP99 = validAll[min(len(validAll)-1, int(0.99*float64(len(validAll))))]
	}
	if r.requests > 0 {
		r.cpuPerReq = cpu / time.Duration(r.requests)
	}
	return r, nil
}

var metaTokenReview = metav1.TypeMeta{Kind: "TokenReview", APIVersion: "authentication.k8s.io/v1"}

// loadTransport is the load generator's client transport. Over HTTP/1.1 each concurrent review has a
// keep-alive connection of its own. Over HTTP/2 (h2 only, negotiated by ALPN) the reviews are streams
// of one connection, as kube-apiserver's webhook client sends them: its transport opens a second
// connection only once the server's limit of concurrent streams (250 for Go) is reached.
func loadTransport(caPEM []byte, concurrency int, h2 bool) *http.Transport {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	t := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: concurrency,
		MaxConnsPerHost:     concurrency,
	}
	if h2 {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP2(true)
	}
	return t
}

func protocolName(h2 bool) string {
	if h2 {
		return "HTTP/2 (h2 by ALPN, one multiplexed connection per server)"
	}
	return "HTTP/1.1 (one keep-alive connection per concurrent review)"
}

// post sends one review and checks that it was answered over HTTP/wantProto.
func post(ctx context.Context, client *http.Client, url string, body []byte, wantProto int) (authenticationv1.TokenReviewStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return authenticationv1.TokenReviewStatus{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return authenticationv1.TokenReviewStatus{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return authenticationv1.TokenReviewStatus{}, fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	if resp.ProtoMajor != wantProto {
		return authenticationv1.TokenReviewStatus{}, fmt.Errorf("POST %s: answered over %s, want HTTP/%d", url, resp.Proto, wantProto)
	}
	var review authenticationv1.TokenReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
		return authenticationv1.TokenReviewStatus{}, err
	}
	return review.Status, nil
}

func report(results []result, protocol string) {
	// The two ceilings, at each concurrency: the trivial handler (the least any TLS webhook does) and the
	// minimal verifier (the least a correct token verifier does).
	var trivial, trivial1, minimal, minimal1 *result
	for i := range results {
		r := &results[i]
		switch {
		case strings.HasPrefix(r.name, "trivial") && r.concurrency > 1:
			trivial = r
		case strings.HasPrefix(r.name, "trivial"):
			trivial1 = r
		case strings.HasPrefix(r.name, "minimal") && r.concurrency > 1:
			minimal = r
		case strings.HasPrefix(r.name, "minimal"):
			minimal1 = r
		}
	}
	ratio := func(a, b float64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	ratios := func(r, ref *result) (string, string, string) {
		if ref == nil {
			return "-", "-", "-"
		}
		return ratio(r.rps(), ref.rps()), ratio(float64(r.cpuPerReq), float64(ref.cpuPerReq)), ratio(float64(r.p99), float64(ref.p99))
	}
	fmt.Printf("\nprotocol: %s\n", protocol)
	fmt.Printf("%-34s %4s %9s %8s %8s %8s %8s %10s %9s %7s %7s %7s %7s %7s %7s\n",
		"scenario", "c", "reviews/s", "p50", "p90", "p99", "max", "cpu/review", "authn", "x rps", "x cpu", "x p99", "m rps", "m cpu", "m p99")
	for i := range results {
		r := &results[i]
		ref, mref := trivial, minimal
		if r.concurrency == 1 {
			ref, mref = trivial1, minimal1
		}
		xr, xc, xp := ratios(r, ref)
		mr, mc, mp := ratios(r, mref)
		fmt.Printf("%-34s %4d %9.0f %8s %8s %8s %8s %10s %9s %7s %7s %7s %7s %7s %7s\n", r.name, r.concurrency, r.rps(),
			round(r.p50), round(r.p90), round(r.p99), round(r.max), round(r.cpuPerReq),
			fmt.Sprintf("%d/%d", r.authed, r.requests), xr, xc, xp, mr, mc, mp)
	}
	var unique *result
	for i := range results {
		if strings.HasPrefix(results[i].name, "unique") && results[i].concurrency > 1 {
			unique = &results[i]
		}
	}
	for _, r := range results {
		if !strings.HasPrefix(r.name, "flood") {
			continue
		}
		fmt.Printf("\nflood: %d JWKS fetches of the flooded issuer in %s (rate limit: one per 5s per issuer)", r.fetches, r.elapsed.Round(time.Second))
		fmt.Printf("; valid p99 under the flood %s", round(r.validP99))
		if unique != nil {
			fmt.Printf(", all-valid p99 %s (x %.2f)", round(unique.validP99), float64(r.validP99)/float64(unique.validP99))
		}
		fmt.Println()
	}
	fmt.Println("\nx rps, x cpu, x p99: ratio to the trivial TLS handler at the same concurrency, in this run;")
	fmt.Println("m rps, m cpu, m p99: ratio to the minimal verifier (stdlib-only: decode, one verify, iss/aud/exp/nbf) likewise.")
	fmt.Println("every answer was checked: a wrong one fails the run.")
}

func round(d time.Duration) string {
	switch {
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
}

// verifyCeiling measures raw RSA-2048 and P-256 signature checks per second on one core.
func verifyCeiling() (rsaOps, ecOps float64) {
	digest := sha256.Sum256([]byte("clustertrust"))
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsig, _ := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA256, digest[:])
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	esig, _ := ecdsa.SignASN1(rand.Reader, ek, digest[:])
	measure := func(f func() bool) float64 {
		start, n := time.Now(), 0
		for time.Since(start) < time.Second {
			if !f() {
				panic(errors.New("verify failed"))
			}
			n++
		}
		return float64(n) / time.Since(start).Seconds()
	}
	rsaOps = measure(func() bool { return rsa.VerifyPKCS1v15(&rk.PublicKey, crypto.SHA256, digest[:], rsig) == nil })
	ecOps = measure(func() bool { return ecdsa.VerifyASN1(&ek.PublicKey, digest[:], esig) })
	return rsaOps, ecOps
}
