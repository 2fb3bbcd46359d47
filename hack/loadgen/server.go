package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/clustertrust/clustertrust/internal/authn"
)

// serverConfig is what the parent hands the child webhook.
type serverConfig struct {
	Trivial bool `json:"trivial"`
	// Minimal serves the minimal verifier (minimal.go) for Issuers instead of the webhook.
	Minimal  bool     `json:"minimal"`
	CertFile string   `json:"certFile"`
	KeyFile  string   `json:"keyFile"`
	CAPEM    []byte   `json:"caPEM"` // trusted for the issuers' discovery and JWKS
	Issuers  []string `json:"issuers"`
	Audience string   `json:"audience"`
	// MaxInFlight is the handler's bound on concurrent reviews and the capacity the router shares fairly
	// among issuers (authn.FairShare), as `webhook serve` sets both from --max-concurrent-reviews. Zero
	// leaves both unbounded.
	MaxInFlight int `json:"maxInFlight"`
	// Stats wraps the handler to count the requests inside it and serves the peak and the GC count
	// at statsPath.
	Stats bool `json:"stats"`
	// CPUProfile and MemProfile, when set, are where the child writes a CPU profile of its whole run and
	// an allocation profile as it stops: profiles taken under the load generator's own load.
	CPUProfile string `json:"cpuProfile,omitempty"`
	MemProfile string `json:"memProfile,omitempty"`
}

// statsPath is where a child with Stats answers GET with childStats; ?reset=1 restarts the peak.
const statsPath = "/loadgen/stats"

// childStats is what a child with Stats reports.
type childStats struct {
	// PeakInHandler is the most requests inside the handler at once (from their headers read to their
	// answer written) since the last reset: at most the connections, and what MaxInFlight bounds.
	PeakInHandler int64  `json:"peakInHandler"`
	NumGC         uint32 `json:"numGC"`
	GCPauseTotal  uint64 `json:"gcPauseTotalNs"`
}

// statsHandler counts the requests inside next.
type statsHandler struct {
	next      http.Handler
	cur, peak atomic.Int64
}

func (s *statsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == statsPath {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		st := childStats{PeakInHandler: s.peak.Load(), NumGC: ms.NumGC, GCPauseTotal: ms.PauseTotalNs}
		if r.URL.Query().Get("reset") != "" {
			s.peak.Store(s.cur.Load())
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
		return
	}
	n := s.cur.Add(1)
	defer s.cur.Add(-1)
	for p := s.peak.Load(); n > p; p = s.peak.Load() {
		if s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	s.next.ServeHTTP(w, r)
}

// trivialReview is the ceiling: the least a TokenReview webhook can do over the same TLS and HTTP.
var trivialReview = []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":true,"user":{"username":"hub:system:serviceaccount:tenant-a:reconciler"}}}` + "\n")

// serve runs the child: the webhook's request path (or the trivial handler) on a loopback port. It
// prints "LISTEN <addr>" once ready and exits when its standard input closes.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	configFile := fs.String("config", "", "serverConfig JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := os.ReadFile(*configFile)
	if err != nil {
		return err
	}
	var cfg serverConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return err
	}
	var handler http.Handler
	if cfg.Trivial {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost { // as authn.Handler: the warm-up GETs expect a refusal
				http.Error(w, "only POST is allowed", http.StatusMethodNotAllowed)
				return
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(trivialReview)
		})
	} else if cfg.Minimal {
		if handler, err = newMinimalVerifier(cfg.Issuers, cfg.Audience, cfg.CAPEM); err != nil {
			return err
		}
	} else {
		router, err := buildRouter(cfg)
		if err != nil {
			return err
		}
		cache := authn.NewCachingAuthenticator(router, authn.CacheOptions{TTL: 10 * time.Second})
		handler = &authn.Handler{Authenticator: cache, Issuers: router, Log: logr.Discard(), MaxInFlight: cfg.MaxInFlight}
	}
	if cfg.Stats {
		handler = &statsHandler{next: handler}
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 5 * time.Second,
		Protocols:         serverProtocols(),
	}
	if cfg.CPUProfile != "" || cfg.MemProfile != "" {
		stop, err := startProfiles(cfg.CPUProfile, cfg.MemProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	go func() {
		_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin)) // the parent closes stdin to stop us
		_ = srv.Close()
	}()
	fmt.Printf("LISTEN %s\n", ln.Addr())
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serverProtocols are what every child offers by ALPN: h2 first, as `webhook serve` does, and HTTP/1.1.
// The load generator's transport decides which one a run uses.
func serverProtocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	return p
}

// startProfiles starts a CPU profile into cpuFile (when set); stop ends it and writes the allocation
// profile into memFile (when set).
func startProfiles(cpuFile, memFile string) (stop func(), err error) {
	var cpu *os.File
	if cpuFile != "" {
		if cpu, err = os.Create(cpuFile); err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			_ = cpu.Close()
			return nil, err
		}
	}
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			_ = cpu.Close()
		}
		if memFile == "" {
			return
		}
		f, err := os.Create(memFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "loadgen serve: %v\n", err)
			return
		}
		defer func() { _ = f.Close() }()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			fmt.Fprintf(os.Stderr, "loadgen serve: %v\n", err)
		}
	}, nil
}

// buildRouter builds one remote-key entry per issuer, as the registry would, and waits for their first
// key loads.
func buildRouter(cfg serverConfig) (*authn.Router, error) {
	router := authn.NewRouter()
	if cfg.MaxInFlight > 0 {
		router.SetMaxInFlight(cfg.MaxInFlight) // as cmd/webhook/app/serve.go
	}
	compiler := authn.NewCompiler()
	var entries []*authn.Entry
	for i, iss := range cfg.Issuers {
		name := fmt.Sprintf("issuer-%d", i)
		e, err := authn.NewEntry(authn.Config{
			Name: name, Issuer: iss, Audiences: []string{cfg.Audience}, CABundle: cfg.CAPEM,
			UsernameClaim: "sub", UsernamePrefix: "hub:", GroupsPrefix: "hub:", ServiceAccountGroups: true,
		}, authn.EntryOptions{Compiler: compiler, Log: logr.Discard()})
		if err != nil {
			return nil, err
		}
		e.Start()
		router.Store(name, e)
		entries = append(entries, e)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for _, e := range entries {
		for !e.KeyStatus().Attempted {
			if time.Now().After(deadline) {
				return nil, errors.New("issuers did not load their keys within 2 minutes")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := e.KeyStatus().LastError; err != nil {
			return nil, fmt.Errorf("issuer %s: %w", e.Config().Issuer, err)
		}
	}
	return router, nil
}
