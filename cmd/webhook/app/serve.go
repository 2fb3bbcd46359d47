package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/authn"
	"github.com/clustertrust/clustertrust/internal/registry"
	"github.com/clustertrust/clustertrust/internal/serving"
)

func newServeCommand() *cobra.Command {
	o := NewServeOptions()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve TokenReviews for the issuers declared as OpenIDConnect objects",
		Example: `  webhook serve --kubeconfig ~/.kube/config \
    --tls-cert-file serving.crt --tls-private-key-file serving.key --secure-port 9443`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if errs := o.Validate(); len(errs) > 0 {
				return errors.Join(errs...)
			}
			s, err := o.Complete(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return s.Run(cmd.Context())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// server is a completed configuration, ready to run.
type server struct {
	opts *ServeOptions
	log  logr.Logger
	// mgr runs the controller with --source=kubernetes; nil with --source=file.
	mgr manager.Manager
	// runnables are started by mgr, or without one by runAll; they run on every replica.
	runnables []manager.Runnable
	certs     *certwatcher.CertWatcher
	handler   http.Handler
}

// Complete does the I/O that Validate may not: it reads the serving certificate, loads the kubeconfig,
// checks that the API server answers, and wires the router, the registry and the servers.
func (o *ServeOptions) Complete(ctx context.Context, logOutput io.Writer) (*server, error) {
	log := newLogger(logOutput, o.LogLevel, o.LogDevelopment)

	if err := checkReadable("--tls-cert-file", o.TLSCertFile); err != nil {
		return nil, err
	}
	if err := checkReadable("--tls-private-key-file", o.TLSKeyFile); err != nil {
		return nil, err
	}
	certs, err := certwatcher.New(o.TLSCertFile, o.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("could not load the serving certificate: %w", err)
	}
	var restConfig *rest.Config
	switch o.Source {
	case SourceKubernetes:
		if restConfig, err = loadRESTConfig(o.Kubeconfig); err != nil {
			return nil, err
		}
		restConfig.QPS, restConfig.Burst = o.KubeAPIQPS, o.KubeAPIBurst
		if err := pingAPIServer(ctx, restConfig); err != nil {
			return nil, err
		}
	case SourceFile:
		if fi, err := os.Stat(o.ConfigDir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("--config-dir %q is not a readable directory", o.ConfigDir)
		}
	}

	// controller-runtime's and klog's loggers are process-global; set them only once the fail-fast
	// checks passed. klog carries the logs of the k8s.io/apiserver and client-go code we use.
	ctrl.SetLogger(log)
	klog.SetLogger(log)
	m, err := authn.NewMetrics(crmetrics.Registry)
	if err != nil {
		return nil, fmt.Errorf("could not register metrics: %w", err)
	}
	// One router, handed to both sides: the registry writes entries, the handler reads them.
	router := authn.NewRouter()
	if o.MaxConcurrentReviews > 0 {
		router.SetMaxInFlight(o.MaxConcurrentReviews)
	}
	rec := &registry.Reconciler{
		Router:             router,
		Log:                log.WithName("registry"),
		EntryOptions:       authn.EntryOptions{Compiler: authn.NewCompiler(), Clock: clock.RealClock{}, Metrics: m},
		RefreshInterval:    o.KeyRefreshInterval,
		MinRefetchInterval: o.MinRefetchInterval,
		LeaderOnlyWrites:   o.LeaderElect,
	}
	s := &server{opts: o, log: log, certs: certs, runnables: []manager.Runnable{certs}}
	var ready healthz.Checker
	switch o.Source {
	case SourceKubernetes:
		scheme := runtime.NewScheme()
		utilruntime.Must(clientgoscheme.AddToScheme(scheme))
		utilruntime.Must(v1alpha1.AddToScheme(scheme))
		mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
			Scheme: scheme,
			// The informer keeps every OpenIDConnect in memory; it keeps only what the webhook reads.
			Cache: cache.Options{
				DefaultTransform: cache.TransformStripManagedFields(),
				ByObject:         map[client.Object]cache.ByObject{&v1alpha1.OpenIDConnect{}: {Transform: registry.TrimForCache}},
			},
			Logger:                  log,
			Metrics:                 metricsserver.Options{BindAddress: o.MetricsBindAddress, ExtraHandlers: o.profilingHandlers()},
			HealthProbeBindAddress:  "0", // probes are served below, the same way for both sources
			GracefulShutdownTimeout: &o.ShutdownTimeout,
			LeaderElection:          o.LeaderElect,
			LeaderElectionID:        o.LeaderElectionID,
			LeaderElectionNamespace: o.LeaderElectionNamespace,
			// A replica that shuts down hands the Lease over at once instead of after its expiry.
			LeaderElectionReleaseOnCancel: true,
		})
		if err != nil {
			return nil, fmt.Errorf("could not create the controller manager: %w", err)
		}
		rec.Objects = registry.APIObjects(mgr.GetClient())
		rec.Recorder = mgr.GetEventRecorder("clustertrust")
		if err := rec.SetupWithManager(mgr); err != nil {
			return nil, fmt.Errorf("could not set up the controller: %w", err)
		}
		ready = rec.ReadyChecker(mgr.GetCache())
		s.mgr = mgr
	case SourceFile:
		src := &registry.FileSource{Dir: o.ConfigDir, Reconciler: rec, Log: log.WithName("config-dir")}
		rec.Objects = src
		crmetrics.Registry.MustRegister(src.Collectors()...)
		ready = src.ReadyChecker()
		s.runnables = append(s.runnables, src)
		if o.MetricsBindAddress != "0" {
			// The same /metrics server the manager runs for the API source; without a filter it needs
			// no API server.
			ms, err := metricsserver.NewServer(metricsserver.Options{BindAddress: o.MetricsBindAddress, ExtraHandlers: o.profilingHandlers()}, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("could not create the metrics server: %w", err)
			}
			s.runnables = append(s.runnables, ms)
		}
	}

	crmetrics.Registry.MustRegister(rec.Collector())
	var reviewer authn.TokenAuthenticator = router
	if o.CacheTTL > 0 {
		resultCache := authn.NewCachingAuthenticator(router, authn.CacheOptions{
			TTL: o.CacheTTL, NegativeTTL: o.NegativeCacheTTL, MaxEntries: o.CacheMaxEntries, MaxBytes: o.CacheMaxBytes, Metrics: m,
		})
		crmetrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "clustertrust_cache_entries", Help: "Results held by the result cache.",
		}, func() float64 { return float64(resultCache.Stats().Size) }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "clustertrust_cache_bytes", Help: "Estimated memory of the results held by the result cache.",
		}, func() float64 { return float64(resultCache.Stats().Bytes) }))
		reviewer = resultCache
	}
	var review http.Handler = &authn.Handler{
		Authenticator: reviewer, Issuers: router, Log: log.WithName("tokenreview"), Metrics: m,
		MaxTokenBytes: o.MaxTokenBytes, MaxInFlight: o.MaxConcurrentReviews,
	}
	if o.ClientCAFile != "" {
		ca, err := dynamiccertificates.NewDynamicCAContentFromFile("client-ca", o.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("could not load --client-ca-file: %w", err)
		}
		s.runnables = append(s.runnables, everyReplica(func(ctx context.Context) error { ca.Run(ctx, 1); return nil }))
		auth := &serving.ClientCertAuth{CA: ca, AllowedNames: o.ClientAllowedNames, Next: review, Log: log.WithName("clientauth")}
		crmetrics.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "clustertrust_unauthorized_callers_total", Help: "Requests to /authenticate refused for lacking an acceptable client certificate.",
		}, func() float64 { return float64(auth.Rejected()) }))
		review = auth
	}
	if o.HealthProbeBindAddress != "0" {
		s.runnables = append(s.runnables, probeServer(o.HealthProbeBindAddress, ready, reviewsAnswer(router, 5*time.Second), log))
	}
	mux := http.NewServeMux()
	mux.Handle("/authenticate", review)
	s.handler = mux
	return s, nil
}

// Run serves until ctx is done, then drains in-flight reviews for up to --shutdown-timeout.
func (s *server) Run(ctx context.Context) error {
	addr := net.JoinHostPort(s.opts.BindAddress, strconv.Itoa(s.opts.SecurePort))
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("could not listen on %s: %w", addr, err)
	}
	srv := newHTTPServer(s.handler, s.certs.GetCertificate, s.clientAuth())
	s.runnables = append(s.runnables, everyReplica(func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
		s.log.Info("Serving TokenReviews", "address", ln.Addr().String(), "source", s.opts.Source)
		select {
		case err := <-errc:
			return fmt.Errorf("could not serve on %s: %w", addr, err)
		case <-ctx.Done():
		}
		shutdownCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			return fmt.Errorf("could not drain in-flight reviews: %w", err)
		}
		return nil
	}))
	if s.mgr == nil {
		return runAll(ctx, s.runnables)
	}
	for _, r := range s.runnables {
		if err := s.mgr.Add(r); err != nil {
			_ = ln.Close()
			return err
		}
	}
	return s.mgr.Start(ctx)
}

// profilingHandlers are Go's pprof endpoints, with --enable-profiling.
func (o *ServeOptions) profilingHandlers() map[string]http.Handler {
	if !o.EnableProfiling {
		return nil
	}
	return map[string]http.Handler{
		"/debug/pprof/":        http.HandlerFunc(pprof.Index),
		"/debug/pprof/cmdline": http.HandlerFunc(pprof.Cmdline),
		"/debug/pprof/profile": http.HandlerFunc(pprof.Profile),
		"/debug/pprof/symbol":  http.HandlerFunc(pprof.Symbol),
		"/debug/pprof/trace":   http.HandlerFunc(pprof.Trace),
	}
}

// everyReplica is a runnable that runs whether or not this replica is the leader: serving is never
// gated on the election.
type everyReplica func(ctx context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (everyReplica) NeedLeaderElection() bool          { return false }

// runAll runs the runnables until ctx is done or one of them fails, and returns the first failure.
func runAll(ctx context.Context, runnables []manager.Runnable) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(runnables))
	for _, r := range runnables {
		go func() { errs <- r.Start(ctx) }()
	}
	var first error
	for range runnables {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// probeServer serves /livez and /healthz (the process answers reviews) and /readyz (this replica's
// router is complete) on plain HTTP.
func probeServer(addr string, ready, live healthz.Checker, log logr.Logger) manager.Runnable {
	mux := http.NewServeMux()
	liveness := &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping, "reviews": live}}
	readiness := &healthz.Handler{Checks: map[string]healthz.Checker{"issuers": ready}}
	for path, h := range map[string]http.Handler{"/livez": liveness, "/healthz": liveness, "/readyz": readiness} {
		mux.Handle(path, http.StripPrefix(path, h))
		mux.Handle(path+"/", http.StripPrefix(path, h))
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 8 << 10}
	return everyReplica(func(ctx context.Context) error {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("could not listen for probes on %s: %w", addr, err)
		}
		log.V(1).Info("Serving probes", "address", ln.Addr().String())
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			return fmt.Errorf("could not serve probes on %s: %w", addr, err)
		case <-ctx.Done():
			shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return srv.Shutdown(shutdownCtx)
		}
	})
}

// reviewsAnswer is the liveness check: a review of a token no issuer can claim must finish within
// timeout. It fails only when the request path is wedged (a deadlock, a starved process), never because
// an issuer is down, so a restart is asked for only when a restart can help.
func reviewsAnswer(a authn.TokenAuthenticator, timeout time.Duration) healthz.Checker {
	return func(*http.Request) error {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _, _ = a.AuthenticateToken(context.Background(), "livez-probe")
		}()
		select {
		case <-done:
			return nil
		case <-time.After(timeout):
			return fmt.Errorf("a review did not finish within %s", timeout)
		}
	}
}

// newHTTPServer is the /authenticate server: TLS 1.2 or newer with the serving certificate taken from
// getCertificate on every handshake (so a renewed certificate is used without a restart), and bounded
// timeouts and headers.
func newHTTPServer(h http.Handler, getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error), clientAuth tls.ClientAuthType) *http.Server {
	return &http.Server{
		Handler: h,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: getCertificate,
			// A client certificate is requested, and verified per request by serving.ClientCertAuth
			// against the current client CA, so that a refused caller gets a countable 401.
			ClientAuth: clientAuth,
		},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    32 << 10,
	}
}

func (s *server) clientAuth() tls.ClientAuthType {
	if s.opts.ClientCAFile != "" {
		return tls.RequestClientCert
	}
	return tls.NoClientCert
}

func loadRESTConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cfg, err := rest.InClusterConfig()
	if kubeconfig != "" || err != nil {
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("could not load kubeconfig: %w", err)
	}
	cfg.UserAgent = "clustertrust"
	return cfg, nil
}

// pingAPIServer fails fast, with one line, when the API server cannot be reached.
func pingAPIServer(ctx context.Context, cfg *rest.Config) error {
	c := rest.CopyConfig(cfg)
	c.Timeout = 10 * time.Second
	dc, err := discovery.NewDiscoveryClientForConfig(c)
	if err != nil {
		return fmt.Errorf("could not create an API client: %w", err)
	}
	if err := dc.RESTClient().Get().AbsPath("/version").Do(ctx).Error(); err != nil {
		return fmt.Errorf("could not reach the API server at %s: %w", cfg.Host, err)
	}
	return nil
}

// newLogger logs JSON (or, for development, console lines) to w through zap.
func newLogger(w io.Writer, level int, development bool) logr.Logger {
	encoder := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	if development {
		encoder = zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	}
	lvl := zapcore.Level(-level) //nolint:gosec // G115: Validate bounds --v to 0..10
	return zapr.NewLogger(zap.New(zapcore.NewCore(encoder, zapcore.AddSync(w), lvl)))
}
