package main

// The hangflood mode: forged unknown-kid tokens of a trusted issuer whose discovery and JWKS hang
// (issue #12). Before the fix, 300 concurrent such tokens held every review slot waiting on the hung
// refetch, so every valid review, of that issuer and of every other, was answered 429. The mode serves
// two issuers, A and B, to a child configured as `webhook serve` defaults, makes A hang once the child
// has its keys, and measures valid reviews of A and B alone, then beside the flood.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clustertrust/clustertrust/hack/internal/proc"
	"github.com/clustertrust/clustertrust/internal/authn"
	"github.com/clustertrust/clustertrust/internal/testissuer"
)

const (
	// servedMaxInFlight is `webhook serve`'s default --max-concurrent-reviews (cmd/webhook/app
	// NewServeOptions); the child shares it fairly among issuers (authn.FairShare), as serve.go does. The
	// other defaults that matter here the child already has: the default MinRefetchInterval, and a
	// result cache of TTL 10s with the default bounds and no negative caching.
	servedMaxInFlight = 256
	// hangMaxRequests bounds each phase's valid and forged requests in count, besides its duration.
	hangMaxRequests = 5_000_000
	// forgedTokens is how many distinct forged tokens are minted, each with its own kid; every request
	// also carries a distinct audience, so no two requests are the same review.
	forgedTokens = 2048
	// validTokensPerIssuer are minted per issuer; distinct audiences keep the cache from hiding the work.
	validTokensPerIssuer = 64
	wantUsername         = "hub:system:serviceaccount:tenant-a:reconciler"
)

// hangPhase is one measured run of the valid load, with or without the flood beside it.
type hangPhase struct {
	name       string
	floodConns int     // 0: no flood
	floodRate  float64 // forged reviews/s in all; 0: closed loop
}

// hangResult is one phase's measurements.
type hangResult struct {
	phase   hangPhase
	elapsed time.Duration

	validSent, validRefused int
	refusals                map[string]int // why valid reviews were refused
	p50, p99, p99A, p99B    time.Duration

	forgedSent, forgedAnswered int
	forgedRefused, forged429   int // 200 with authenticated false; 429
	forgedOther, forgedErrors  int // any other status; no answer (transport error)
	forgedAccepted             int // authenticated: must never happen

	forgedWhy map[string]int // forged answers other than a TokenReview refusal

	childCPU, selfCPU, machineBusy time.Duration
	softirq                        time.Duration // kernel interrupt work (loopback networking), in machineBusy
	others                         string        // the busiest other processes over the phase
	discoveriesA                   int64         // requests to A's discovery during the phase (they hang)
	child                          childStats    // peak requests in the handler, GCs (deltas over the phase)
}

// benchHangFlood runs the hangflood mode: the baseline, the closed-loop flood and, with -flood-rate,
// the rate-limited flood, against one child.
func benchHangFlood(ctx context.Context, o options, dir string, caPEM []byte, certFile, keyFile string) ([]hangResult, error) {
	alg := jose.SignatureAlgorithm(o.alg)
	fmt.Printf("\nhangflood: starting issuers A and B (%s), minting %d valid and %d forged tokens...\n", alg, 2*validTokensPerIssuer, forgedTokens)
	var issuers [2]*testissuer.Issuer
	for i := range issuers {
		iss, err := testissuer.New(alg)
		if err != nil {
			return nil, err
		}
		// Registered before the child's stop, so it runs after it: the child's hung fetches are gone
		// by then, and closing the connections ends the handlers still sleeping in the delay.
		defer func() {
			iss.SetDelay(0)
			iss.Server.CloseClientConnections()
			iss.Close()
		}()
		issuers[i] = iss
	}
	a, b := issuers[0], issuers[1]
	validA := mintPool([]*testissuer.Issuer{a}, validTokensPerIssuer)
	validB := mintPool([]*testissuer.Issuer{b}, validTokensPerIssuer)
	forged, err := mintForged(a, alg, forgedTokens)
	if err != nil {
		return nil, err
	}

	cfg := serverConfig{
		CertFile: certFile, KeyFile: keyFile, CAPEM: a.CAPEM(), Issuers: []string{a.URL, b.URL}, Audience: audience,
		MaxInFlight: servedMaxInFlight, Stats: true, Trivial: o.hangCeiling,
	}
	srv, err := startChild(ctx, dir, "hangflood", cfg) // answers only once both issuers' keys are loaded
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	a.SetDelay(time.Hour) // hang, not fail: every fetch of A now waits until its client gives up
	loaded := time.Now()

	phases := []hangPhase{
		{name: "no flood"},
		{name: fmt.Sprintf("flood, %d conns, closed loop", o.floodConns), floodConns: o.floodConns},
	}
	if o.floodRate > 0 {
		phases = append(phases, hangPhase{
			name: fmt.Sprintf("flood, %d conns, %.0f/s", o.floodConns, o.floodRate), floodConns: o.floodConns, floodRate: o.floodRate,
		})
	}
	var uniq atomic.Int64 // distinct audiences, across phases
	var results []hangResult
	for _, ph := range phases {
		// The key load at start-up counts as the last attempt: within MinRefetchInterval of it, unknown
		// kids are refused without a fetch. Flood only once a fetch can start, so it always meets the hang.
		if wait := time.Until(loaded.Add(authn.DefaultMinRefetchInterval + 500*time.Millisecond)); ph.floodConns > 0 && wait > 0 {
			time.Sleep(wait)
		}
		fmt.Printf("hangflood: %s, %s...\n", ph.name, o.duration)
		r, err := runHangPhase(ctx, srv, caPEM, o, ph, a, validA, validB, forged, &uniq)
		if err != nil {
			return results, fmt.Errorf("hangflood %s: %w", ph.name, err)
		}
		results = append(results, r)
	}
	return results, nil
}

// mintForged mints n tokens with iss = A, each naming its own kid that A never published, signed by a
// few attacker keys of alg.
func mintForged(a *testissuer.Issuer, alg jose.SignatureAlgorithm, n int) ([]string, error) {
	attackers := make([]testissuer.Key, 4)
	for i := range attackers {
		k, err := testissuer.NewKey(alg)
		if err != nil {
			return nil, err
		}
		attackers[i] = k
	}
	known := a.SigningKey().KID
	out := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for i := range out {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			kid := make([]byte, 12)
			_, _ = rand.Read(kid)
			key := attackers[i%len(attackers)]
			key.KID = fmt.Sprintf("forged-%x", kid)
			if key.KID == known {
				errs[i] = errors.New("a forged kid equals A's kid")
				return
			}
			c := testissuer.ServiceAccountClaims("tenant-a", "reconciler", audience)
			c["jti"] = "forged-" + strconv.Itoa(i)
			out[i], errs[i] = testissuer.MintFor(key, a.URL, c)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// reviewBody is a TokenReview of token for audience and aud. Tokens are base64url and dots and the
// audiences are ours, so nothing needs escaping; building it by hand keeps the flood client cheap.
func reviewBody(token, aud string) []byte {
	b := make([]byte, 0, len(token)+192)
	b = append(b, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`...)
	b = append(b, token...)
	b = append(b, `","audiences":["`+audience+`","`...)
	b = append(b, aud...)
	return append(b, `"]}}`...)
}

// reviewAnswer is what the load generator reads of an answer.
type reviewAnswer struct {
	Status struct {
		Authenticated bool `json:"authenticated"`
		User          struct {
			Username string `json:"username"`
		} `json:"user"`
		Error string `json:"error"`
	} `json:"status"`
}

// send posts body and returns the status code and, for a 200, the decoded answer; for any other code
// the answer's Error holds the body's first line.
func send(ctx context.Context, client *http.Client, url string, body []byte) (int, reviewAnswer, error) {
	var ans reviewAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, ans, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, ans, err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10)) // read to the end: the connection is reused
	if err != nil {
		return resp.StatusCode, ans, err
	}
	if resp.StatusCode != http.StatusOK {
		line, _, _ := strings.Cut(string(data), "\n")
		ans.Status.Error = line
		return resp.StatusCode, ans, nil
	}
	return resp.StatusCode, ans, json.Unmarshal(data, &ans)
}

func newReviewClient(caPEM []byte, conns int) (*http.Client, *http.Transport) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
	}
	return &http.Client{Transport: transport, Timeout: 10 * time.Second}, transport
}

// warmUp opens n keep-alive connections with one GET each, which the handler refuses (405) before any
// review: the handshakes are not part of what the phase measures, as kube-apiserver keeps its
// connections to a webhook open.
func warmUp(ctx context.Context, client *http.Client, url string, n int) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				errs[i] = err
				return
			}
			resp, err := client.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				errs[i] = fmt.Errorf("warm-up GET: %s", resp.Status)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func runHangPhase(ctx context.Context, srv *child, caPEM []byte, o options, ph hangPhase, a *testissuer.Issuer,
	validA, validB, forged []string, uniq *atomic.Int64) (hangResult, error) {
	url := "https://" + srv.addr + "/authenticate"
	r := hangResult{phase: ph, refusals: map[string]int{}, forgedWhy: map[string]int{}}

	validClient, validTransport := newReviewClient(caPEM, o.validConcurrency)
	defer validTransport.CloseIdleConnections()
	if err := warmUp(ctx, validClient, url, o.validConcurrency); err != nil {
		return r, err
	}
	var floodClient *http.Client
	if ph.floodConns > 0 {
		var floodTransport *http.Transport
		floodClient, floodTransport = newReviewClient(caPEM, ph.floodConns)
		defer floodTransport.CloseIdleConnections()
		if err := warmUp(ctx, floodClient, url, ph.floodConns); err != nil {
			return r, err
		}
	}

	var mu sync.Mutex // guards r's counters and refusals while the workers run
	latencies := make([][]time.Duration, o.validConcurrency)
	fromA := make([][]bool, o.validConcurrency)
	var validN, floodN atomic.Int64
	statsBefore, err := getChildStats(ctx, validClient, srv, true)
	if err != nil {
		return r, err
	}
	discoveriesBefore := a.DiscoveryFetches.Load()
	procsBefore := procCPUs()
	childBefore, selfBefore := srv.cpuTime(), proc.CPU(os.Getpid())
	busyBefore, softBefore, _ := machineCPU()
	start := time.Now()
	deadline := start.Add(o.duration)
	var wg sync.WaitGroup

	for w := range o.validConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := validN.Add(1)
				if i > hangMaxRequests {
					return
				}
				isA := i%2 == 0
				token := validB[int(i/2)%len(validB)]
				if isA {
					token = validA[int(i/2)%len(validA)]
				}
				body := reviewBody(token, "v"+strconv.FormatInt(uniq.Add(1), 36))
				t0 := time.Now()
				code, ans, err := send(ctx, validClient, url, body)
				latencies[w] = append(latencies[w], time.Since(t0))
				fromA[w] = append(fromA[w], isA)
				var why string
				switch {
				case err != nil:
					why = "no answer: " + err.Error()
				case code != http.StatusOK:
					why = fmt.Sprintf("HTTP %d: %s", code, ans.Status.Error)
				case !ans.Status.Authenticated:
					why = "unauthenticated: " + ans.Status.Error
				case ans.Status.User.Username != wantUsername:
					why = "wrong user " + ans.Status.User.Username
				}
				mu.Lock()
				r.validSent++
				if why != "" {
					issuer := "B"
					if isA {
						issuer = "A"
					}
					r.validRefused++
					key := issuer + ": " + why
					if _, seen := r.refusals[key]; !seen && len(r.refusals) >= 20 {
						key = "(other reasons)"
					}
					r.refusals[key]++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond) // a dead child must not make this loop spin
				}
			}
		}()
	}

	interval := time.Duration(0)
	if ph.floodRate > 0 {
		interval = time.Duration(float64(time.Second) / ph.floodRate)
	}
	for range ph.floodConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := floodN.Add(1)
				if i > hangMaxRequests {
					return
				}
				if interval > 0 { // one shared schedule: the aggregate rate, whatever the connections
					at := start.Add(time.Duration(i-1) * interval)
					if !at.Before(deadline) {
						return
					}
					time.Sleep(time.Until(at))
				}
				body := reviewBody(forged[int(i)%len(forged)], "f"+strconv.FormatInt(uniq.Add(1), 36))
				code, ans, err := send(ctx, floodClient, url, body)
				mu.Lock()
				r.forgedSent++
				var why string
				switch {
				case err != nil && code == 0:
					r.forgedErrors++
					why = "no answer: " + err.Error()
				case code == http.StatusTooManyRequests:
					r.forged429++
					why = "HTTP 429: " + ans.Status.Error
				case code == http.StatusOK && err == nil && ans.Status.Authenticated:
					r.forgedAccepted++
					why = "authenticated"
				case code == http.StatusOK && err == nil:
					r.forgedRefused++
				default:
					r.forgedOther++
					why = fmt.Sprintf("HTTP %d: %s %v", code, ans.Status.Error, err)
				}
				if why != "" {
					if _, seen := r.forgedWhy[why]; !seen && len(r.forgedWhy) >= 20 {
						why = "(other reasons)"
					}
					r.forgedWhy[why]++
				}
				mu.Unlock()
				if err != nil && code == 0 {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	r.childCPU = srv.cpuTime() - childBefore
	r.selfCPU = proc.CPU(os.Getpid()) - selfBefore
	busyAfter, softAfter, _ := machineCPU()
	r.machineBusy, r.softirq = busyAfter-busyBefore, softAfter-softBefore
	r.others = topOthers(procsBefore, procCPUs(), r.elapsed, srv.cmd.Process.Pid)
	r.discoveriesA = a.DiscoveryFetches.Load() - discoveriesBefore
	statsAfter, err := getChildStats(ctx, validClient, srv, false)
	if err != nil {
		return r, err
	}
	r.child = childStats{
		PeakInHandler: statsAfter.PeakInHandler, NumGC: statsAfter.NumGC - statsBefore.NumGC,
		GCPauseTotal: statsAfter.GCPauseTotal - statsBefore.GCPauseTotal,
	}
	r.forgedAnswered = r.forgedSent - r.forgedErrors

	var all, onA, onB []time.Duration
	for w := range latencies {
		all = append(all, latencies[w]...)
		for j, d := range latencies[w] {
			if fromA[w][j] {
				onA = append(onA, d)
			} else {
				onB = append(onB, d)
			}
		}
	}
	r.p50, r.p99 = percentile(all, 0.50), percentile(all, 0.99)
	r.p99A, r.p99B = percentile(onA, 0.99), percentile(onB, 0.99)
	return r, nil
}

// percentile sorts ds and returns its p-quantile (0 for none).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(p*float64(len(ds))))]
}

// getChildStats reads the child's statsPath, restarting its peak when reset.
func getChildStats(ctx context.Context, client *http.Client, srv *child, reset bool) (childStats, error) {
	var st childStats
	url := "https://" + srv.addr + statsPath
	if reset {
		url += "?reset=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET %s: %s", statsPath, resp.Status)
	}
	return st, json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&st)
}

type procSample struct {
	comm string
	cpu  time.Duration
}

// procCPUs samples the CPU used so far by every process, by pid.
func procCPUs() map[int]procSample {
	out := map[int]procSample{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open || end+2 > len(b) {
			continue
		}
		out[pid] = procSample{comm: string(b[open+1 : end]), cpu: proc.CPU(pid)}
	}
	return out
}

// topOthers names the three busiest processes, by name, other than this one and the child, between
// two samples. A process that ended in between is missed, so they may add up to less than "rest".
func topOthers(before, after map[int]procSample, elapsed time.Duration, childPID int) string {
	byName := map[string]time.Duration{}
	for pid, s := range after {
		if pid == os.Getpid() || pid == childPID {
			continue
		}
		byName[s.comm] += s.cpu - before[pid].cpu // a new process counts from zero
	}
	names := make([]string, 0, len(byName))
	for n, d := range byName {
		if d > 0 {
			names = append(names, n)
		}
	}
	slices.SortFunc(names, func(x, y string) int { return int(byName[y] - byName[x]) })
	var parts []string
	for _, n := range names[:min(3, len(names))] {
		parts = append(parts, fmt.Sprintf("%s %.2f", n, byName[n].Seconds()/elapsed.Seconds()))
	}
	return strings.Join(parts, ", ")
}

// machineCPU is the busy CPU time of the whole machine, all processes and the kernel, from /proc/stat,
// and the part of it spent in interrupts (on loopback, mostly the network stack).
func machineCPU() (busy, irq time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 8 || fields[0] != "cpu" {
		return 0, 0, errors.New("unexpected /proc/stat")
	}
	var jiffies, irqJiffies int64
	for i, f := range fields[1:] {
		if i >= 8 { // guest and guest_nice are already counted in user and nice
			break
		}
		v, _ := strconv.ParseInt(f, 10, 64)
		if i != 3 && i != 4 { // idle, iowait
			jiffies += v
		}
		if i == 5 || i == 6 { // irq, softirq
			irqJiffies += v
		}
	}
	const jiffy = time.Second / 100 // USER_HZ is 100 on Linux
	return time.Duration(jiffies) * jiffy, time.Duration(irqJiffies) * jiffy, nil
}

func reportHangFlood(o options, results []hangResult) {
	if len(results) == 0 {
		return
	}
	ncpu := float64(runtime.NumCPU())
	fmt.Printf("\nForged-token flood against a hanging issuer: issuers A (discovery and JWKS hang) and B; child as `webhook serve`\n")
	fmt.Printf("defaults (%d reviews in flight, %d per issuer while one is busy, min refetch interval %s, cache TTL 10s); valid reviews of A and B\n",
		servedMaxInFlight, authn.FairShare(servedMaxInFlight, 1), authn.DefaultMinRefetchInterval)
	fmt.Printf("alternate at c=%d, each with a distinct audience (no cache hits); forged tokens name kids A never published.\n\n", o.validConcurrency)
	fmt.Printf("%-30s %7s %7s %8s %8s %8s %8s %9s %7s %8s %6s %6s %6s %6s\n",
		"phase", "valid", "refused", "p50", "p99", "p99 A", "p99 B", "forged", "429", "refused", "other", "child", "client", "rest")
	for _, r := range results {
		forged := [4]string{"-", "-", "-", "-"}
		if r.phase.floodConns > 0 {
			forged = [4]string{
				strconv.Itoa(r.forgedAnswered), strconv.Itoa(r.forged429), strconv.Itoa(r.forgedRefused),
				strconv.Itoa(r.forgedOther + r.forgedErrors + r.forgedAccepted),
			}
		}
		cores := func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()/r.elapsed.Seconds()) }
		rest := max(0, r.machineBusy-r.childCPU-r.selfCPU)
		fmt.Printf("%-30s %7d %7d %8s %8s %8s %8s %9s %7s %8s %6s %6s %6s %6s\n", r.phase.name, r.validSent, r.validRefused,
			round(r.p50), round(r.p99), round(r.p99A), round(r.p99B), forged[0], forged[1], forged[2], forged[3],
			cores(r.childCPU), cores(r.selfCPU), cores(rest))
	}
	base := results[0]
	fmt.Println()
	for _, r := range results[1:] {
		ratio := float64(r.p99) / float64(base.p99)
		verdict := "met"
		if ratio > 2 {
			verdict = "MISSED"
		}
		fmt.Printf("%s: valid p99 %s / no flood %s = %.2fx (target <= 2x: %s); %.0f forged answers/s; A's discovery requested %d times\n",
			r.phase.name, round(r.p99), round(base.p99), ratio, verdict, float64(r.forgedAnswered)/r.elapsed.Seconds(), r.discoveriesA)
	}
	for _, r := range results {
		fmt.Printf("%s: CPU cores: child %.2f, client %.2f, rest %.2f (interrupts %.2f; busiest others: %s); "+
			"child: peak %d requests in the handler, %d GCs (%s paused)\n", r.phase.name,
			r.childCPU.Seconds()/r.elapsed.Seconds(), r.selfCPU.Seconds()/r.elapsed.Seconds(),
			max(0, r.machineBusy-r.childCPU-r.selfCPU).Seconds()/r.elapsed.Seconds(), r.softirq.Seconds()/r.elapsed.Seconds(),
			r.others, r.child.PeakInHandler, r.child.NumGC, round(time.Duration(r.child.GCPauseTotal)))
		for why, n := range r.forgedWhy {
			fmt.Printf("  forged: %d %s\n", n, why)
		}
		for why, n := range r.refusals {
			fmt.Printf("  VALID REFUSED: %d %s\n", n, why)
		}
	}
	fmt.Printf("\nforged: answers to forged reviews; 429: refused as overloaded; refused: a TokenReview refusal; other: anything else.\n")
	fmt.Printf("child, client, rest: CPU cores (of %.0f) used by the webhook child, by the load generator (clients and issuers), by\n", ncpu)
	fmt.Println("everything else on the machine, over the phase. Every valid answer was checked: a refusal fails the run.")
}

// checkHangFlood fails the run when a valid review was refused or a forged one accepted (except by the
// ceiling, the trivial handler, which accepts every token).
func checkHangFlood(results []hangResult, ceiling bool) error {
	var errs []error
	for _, r := range results {
		if r.validRefused > 0 {
			errs = append(errs, fmt.Errorf("hangflood %s: %d of %d valid reviews refused", r.phase.name, r.validRefused, r.validSent))
		}
		if r.forgedAccepted > 0 && !ceiling {
			errs = append(errs, fmt.Errorf("hangflood %s: %d forged reviews authenticated", r.phase.name, r.forgedAccepted))
		}
	}
	return errors.Join(errs...)
}
