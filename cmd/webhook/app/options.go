package app

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/clustertrust/clustertrust/internal/authn"
)

// ServeOptions are the flags of `webhook serve`, grouped by concern.
type ServeOptions struct {
	// Where OpenIDConnect objects come from
	Source    string
	ConfigDir string

	// Kubernetes API
	Kubeconfig   string
	KubeAPIQPS   float32
	KubeAPIBurst int

	// High availability
	LeaderElect             bool
	LeaderElectionNamespace string
	LeaderElectionID        string

	// Serving
	BindAddress     string
	SecurePort      int
	TLSCertFile     string
	TLSKeyFile      string
	ShutdownTimeout time.Duration

	// Callers and limits
	ClientCAFile         string
	ClientAllowedNames   []string
	MaxTokenBytes        int
	MaxConcurrentReviews int

	// Probes and metrics
	HealthProbeBindAddress string
	MetricsBindAddress     string

	// Keys
	KeyRefreshInterval time.Duration
	MinRefetchInterval time.Duration

	// Result cache
	CacheTTL         time.Duration
	NegativeCacheTTL time.Duration
	CacheMaxEntries  int
	CacheMaxBytes    int

	// Logging and profiling
	EnableProfiling bool
	LogLevel        int
	LogDevelopment  bool
}

// NewServeOptions returns the defaults.
func NewServeOptions() *ServeOptions {
	return &ServeOptions{
		Source:                 SourceKubernetes,
		LeaderElectionID:       "clustertrust-status-writer",
		KubeAPIQPS:             200,
		KubeAPIBurst:           400,
		BindAddress:            "0.0.0.0",
		SecurePort:             9443,
		ShutdownTimeout:        15 * time.Second,
		MaxTokenBytes:          authn.MaxTokenBytes,
		MaxConcurrentReviews:   256,
		HealthProbeBindAddress: ":8081",
		MetricsBindAddress:     ":8080",
		KeyRefreshInterval:     authn.DefaultRefreshInterval,
		MinRefetchInterval:     authn.DefaultMinRefetchInterval,
		CacheTTL:               10 * time.Second,
		CacheMaxEntries:        authn.DefaultCacheMaxEntries,
		CacheMaxBytes:          authn.DefaultCacheMaxBytes,
	}
}

// minMaxTokenBytes is the least --max-token-bytes may be. The default and the upper bound are authn's
// constants, so the flag cannot drift from what the handler and PeekIssuer enforce.
const minMaxTokenBytes = 1024

// The values of --source.
const (
	SourceKubernetes = "kubernetes"
	SourceFile       = "file"
)

// AddFlags registers the flags on fs.
func (o *ServeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Source, "source", o.Source, "Where OpenIDConnect objects come from: \"kubernetes\" (the API server of --kubeconfig) or \"file\" (the manifests in --config-dir, no API server needed).")
	fs.StringVar(&o.ConfigDir, "config-dir", o.ConfigDir, "With --source=file: directory of OpenIDConnect manifests (*.yaml, *.yml, *.json), reloaded on change; an invalid file keeps its last good objects.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig of the cluster holding the OpenIDConnect objects (default: in-cluster config, then $KUBECONFIG).")

	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "Client-side rate limit of requests to the API server (status writes); client-go's default of 5/s would take minutes to report on thousands of objects.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Burst allowed above --kube-api-qps.")

	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Elect one replica (with a Lease) to write status and events; every replica serves reviews either way. Set it when running more than one replica.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace, "Namespace of the leader election Lease (default: the pod's namespace).")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", o.LeaderElectionID, "Name of the leader election Lease.")

	fs.StringVar(&o.BindAddress, "bind-address", o.BindAddress, "Address to serve /authenticate on.")
	fs.IntVar(&o.SecurePort, "secure-port", o.SecurePort, "HTTPS port for /authenticate.")
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", o.TLSCertFile, "Serving certificate (PEM); re-read when the file changes.")
	fs.StringVar(&o.TLSKeyFile, "tls-private-key-file", o.TLSKeyFile, "Serving private key (PEM); re-read when the file changes.")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "How long in-flight reviews may take to finish on shutdown.")

	fs.StringVar(&o.ClientCAFile, "client-ca-file", o.ClientCAFile, "When set, /authenticate requires a client certificate signed by this CA (PEM, re-read when the file changes); others get 401.")
	fs.StringSliceVar(&o.ClientAllowedNames, "client-allowed-names", o.ClientAllowedNames, "With --client-ca-file: accepted client certificate common names or DNS names (empty: any).")
	fs.IntVar(&o.MaxTokenBytes, "max-token-bytes", o.MaxTokenBytes, fmt.Sprintf("Longest bearer token accepted (at most %d).", authn.MaxTokenBytesLimit))
	fs.IntVar(&o.MaxConcurrentReviews, "max-concurrent-reviews", o.MaxConcurrentReviews, "Reviews processed at once; beyond it the webhook answers 429 with Retry-After, which kube-apiserver retries.")

	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress, "Address for /livez, /healthz (the same check) and /readyz (plain HTTP); \"0\" disables.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "Address for Prometheus /metrics (plain HTTP); \"0\" disables.")

	fs.DurationVar(&o.KeyRefreshInterval, "key-refresh-interval", o.KeyRefreshInterval, "How often each issuer's keys are refetched in the background.")
	fs.DurationVar(&o.MinRefetchInterval, "min-refetch-interval", o.MinRefetchInterval, "Minimum time between refetches triggered by an unknown key id, per issuer.")

	fs.DurationVar(&o.CacheTTL, "cache-ttl", o.CacheTTL, "How long a successful review is reused (never past the token's exp); 0 disables the result cache.")
	fs.DurationVar(&o.NegativeCacheTTL, "negative-cache-ttl", o.NegativeCacheTTL, "How long a refusal is reused; 0 (the default) never caches refusals.")
	fs.IntVar(&o.CacheMaxEntries, "cache-max-entries", o.CacheMaxEntries, "Most results the cache holds (about 1 KiB each).")
	fs.IntVar(&o.CacheMaxBytes, "cache-max-bytes", o.CacheMaxBytes, "Most memory the cached results may take (estimated); extraClaims can make one result as large as a token.")

	fs.BoolVar(&o.EnableProfiling, "enable-profiling", o.EnableProfiling, "Serve Go's /debug/pprof/ on --metrics-bind-address.")
	fs.IntVarP(&o.LogLevel, "v", "v", o.LogLevel, "Log verbosity: 1 lifecycle, 4 every review.")
	fs.BoolVar(&o.LogDevelopment, "log-development", o.LogDevelopment, "Human-readable console logs instead of JSON.")
}

// Validate checks the flags without doing any I/O.
func (o *ServeOptions) Validate() []error {
	var errs []error
	switch o.Source {
	case SourceKubernetes:
		if o.ConfigDir != "" {
			errs = append(errs, errors.New("--config-dir needs --source=file"))
		}
	case SourceFile:
		if o.ConfigDir == "" {
			errs = append(errs, errors.New("--source=file needs --config-dir"))
		}
		if o.Kubeconfig != "" || o.LeaderElect {
			errs = append(errs, errors.New("--kubeconfig and --leader-elect need --source=kubernetes: the file source uses no API server"))
		}
	default:
		errs = append(errs, fmt.Errorf("--source %q is neither %q nor %q", o.Source, SourceKubernetes, SourceFile))
	}
	if o.LeaderElect && o.LeaderElectionID == "" {
		errs = append(errs, errors.New("--leader-election-id must not be empty with --leader-elect"))
	}
	if o.TLSCertFile == "" || o.TLSKeyFile == "" {
		errs = append(errs, errors.New("--tls-cert-file and --tls-private-key-file are required: clustertrust serves HTTPS only"))
	}
	if o.SecurePort <= 0 || o.SecurePort > 65535 {
		errs = append(errs, fmt.Errorf("--secure-port %d is not a valid port", o.SecurePort))
	}
	if net.ParseIP(o.BindAddress) == nil {
		errs = append(errs, fmt.Errorf("--bind-address %q is not an IP address", o.BindAddress))
	}
	if o.KubeAPIQPS <= 0 || o.KubeAPIBurst < 1 {
		errs = append(errs, errors.New("--kube-api-qps must be positive and --kube-api-burst at least 1"))
	}
	if o.KeyRefreshInterval < time.Second {
		errs = append(errs, fmt.Errorf("--key-refresh-interval %s is shorter than 1s", o.KeyRefreshInterval))
	}
	if o.MinRefetchInterval < 0 {
		errs = append(errs, errors.New("--min-refetch-interval must not be negative"))
	}
	if o.MaxTokenBytes < minMaxTokenBytes || o.MaxTokenBytes > authn.MaxTokenBytesLimit {
		errs = append(errs, fmt.Errorf("--max-token-bytes %d is outside %d..%d", o.MaxTokenBytes, minMaxTokenBytes, authn.MaxTokenBytesLimit))
	}
	if o.MaxConcurrentReviews < 1 {
		errs = append(errs, fmt.Errorf("--max-concurrent-reviews %d must be at least 1", o.MaxConcurrentReviews))
	}
	if len(o.ClientAllowedNames) > 0 && o.ClientCAFile == "" {
		errs = append(errs, errors.New("--client-allowed-names needs --client-ca-file"))
	}
	if o.CacheTTL < 0 || o.NegativeCacheTTL < 0 {
		errs = append(errs, errors.New("--cache-ttl and --negative-cache-ttl must not be negative"))
	}
	if o.CacheMaxEntries < 1 {
		errs = append(errs, fmt.Errorf("--cache-max-entries %d must be at least 1", o.CacheMaxEntries))
	}
	if o.CacheMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("--cache-max-bytes %d must be at least 1 MiB", o.CacheMaxBytes))
	}
	if o.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("--shutdown-timeout must not be negative"))
	}
	if o.LogLevel < 0 || o.LogLevel > 10 {
		errs = append(errs, fmt.Errorf("--v %d is outside 0..10", o.LogLevel))
	}
	return errs
}

// checkReadable returns a one-line error when path cannot be read.
func checkReadable(flag, path string) error {
	f, err := os.Open(path) //nolint:gosec // G304: reading the file the operator named is the point
	if err != nil {
		return fmt.Errorf("could not read %s: %w", flag, err)
	}
	return f.Close()
}
