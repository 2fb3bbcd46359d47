package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
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
	opts    *ServeOptions
	log     logr.Logger
	mgr     manager.Manager
	certs   *certwatcher.CertWatcher
	handler http.Handler
}

// Complete does the I/O that Validate may not: it reads the serving certificate, loads the kubeconfig,
// checks that the API server answers, and wires the router, the reconciler and the manager.
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

	restConfig, err := loadRESTConfig(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	restConfig.QPS, restConfig.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	if err := pingAPIServer(ctx, restConfig); err != nil {
		return nil, err
	}

	// controller-runtime's and klog's loggers are process-global; set them only once the fail-fast
	// checks passed. klog carries the logs of the k8s.io/apiserver and client-go code we use.
	ctrl.SetLogger(log)
	klog.SetLogger(log)
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                  scheme,
		Logger:                  log,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress:  o.HealthProbeBindAddress,
		GracefulShutdownTimeout: &o.ShutdownTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("could not create the controller manager: %w", err)
	}

	m, err := authn.NewMetrics(crmetrics.Registry)
	if err != nil {
		return nil, fmt.Errorf("could not register metrics: %w", err)
	}
	// One router, handed to both sides: the reconciler writes entries, the handler reads them.
	router := authn.NewRouter()
	rec := &registry.Reconciler{
		Client:             mgr.GetClient(),
		Router:             router,
		Recorder:           mgr.GetEventRecorder("clustertrust"),
		Log:                log.WithName("registry"),
		EntryOptions:       authn.EntryOptions{Compiler: authn.NewCompiler(), Clock: clock.RealClock{}, Metrics: m},
		RefreshInterval:    o.KeyRefreshInterval,
		MinRefetchInterval: o.MinRefetchInterval,
	}
	if err := rec.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("could not set up the controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("issuers", rec.ReadyChecker(mgr.GetCache())); err != nil {
		return nil, err
	}
	if err := mgr.Add(certs); err != nil {
		return nil, err
	}

	crmetrics.Registry.MustRegister(rec.Collector())
	var reviewer authn.TokenAuthenticator = router
	if o.CacheTTL > 0 {
		cache := authn.NewCachingAuthenticator(router, authn.CacheOptions{
			TTL: o.CacheTTL, NegativeTTL: o.NegativeCacheTTL, MaxEntries: o.CacheMaxEntries, Metrics: m,
		})
		crmetrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "clustertrust_cache_entries", Help: "Results held by the result cache.",
		}, func() float64 { return float64(cache.Stats().Size) }))
		reviewer = cache
	}
	var review http.Handler = &authn.Handler{
		Authenticator: reviewer, Log: log.WithName("tokenreview"), Metrics: m,
		MaxTokenBytes: o.MaxTokenBytes, MaxInFlight: o.MaxConcurrentReviews,
	}
	if o.ClientCAFile != "" {
		ca, err := dynamiccertificates.NewDynamicCAContentFromFile("client-ca", o.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("could not load --client-ca-file: %w", err)
		}
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { ca.Run(ctx, 1); return nil })); err != nil {
			return nil, err
		}
		auth := &serving.ClientCertAuth{CA: ca, AllowedNames: o.ClientAllowedNames, Next: review, Log: log.WithName("clientauth")}
		crmetrics.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "clustertrust_unauthorized_callers_total", Help: "Requests to /authenticate refused for lacking an acceptable client certificate.",
		}, func() float64 { return float64(auth.Rejected()) }))
		review = auth
	}
	mux := http.NewServeMux()
	mux.Handle("/authenticate", review)
	return &server{opts: o, log: log, mgr: mgr, certs: certs, handler: mux}, nil
}

// Run serves until ctx is done, then drains in-flight reviews for up to --shutdown-timeout.
func (s *server) Run(ctx context.Context) error {
	addr := net.JoinHostPort(s.opts.BindAddress, strconv.Itoa(s.opts.SecurePort))
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("could not listen on %s: %w", addr, err)
	}
	srv := newHTTPServer(s.handler, s.certs.GetCertificate, s.clientAuth())
	if err := s.mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
		s.log.Info("Serving TokenReviews", "address", ln.Addr().String())
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
	})); err != nil {
		_ = ln.Close()
		return err
	}
	return s.mgr.Start(ctx)
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
