package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/authn"
)

// The statuses of a doctor check. Only fail makes the command exit 1.
const (
	checkOK   = "ok"
	checkWarn = "warn"
	checkFail = "fail"
	checkSkip = "skip"
)

// checkResult is one line of the doctor's report.
type checkResult struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

const (
	// defaultMaxClockSkew is what the token checks tolerate: kube-apiserver's JWT authenticator
	// (go-oidc v2's verifier), and clustertrust with it, accepts an nbf up to one minute in the future
	// and allows no leeway at all on exp.
	defaultMaxClockSkew = time.Minute
	// expiryWarning is how soon a certificate's end is worth a warning.
	expiryWarning = 7 * 24 * time.Hour
	// staleKeysFailAge is the age of an object's last successful key refresh beyond which keys are
	// reported as failing (or 4× the refresh interval, when that is longer): clustertrust still trusts
	// every key the issuer published that long ago, so a key it withdrew (after a compromise, say) still
	// verifies tokens. A day is the longest a revocation should wait; no refresh interval worth running
	// comes near it.
	staleKeysFailAge = 24 * time.Hour
	// maxBodyShown is how much of an unexpected answer the report quotes.
	maxBodyShown = 200
)

// doctorOptions are the flags of `webhook doctor`.
type doctorOptions struct {
	WebhookKubeconfig  string
	Kubeconfig         string
	ReadyzURL          string
	KeyRefreshInterval time.Duration
	MaxClockSkew       time.Duration
	TokenFile          string
	Timeout            time.Duration
	Output             string
}

func newDoctorCommand() *cobra.Command {
	o := doctorOptions{KeyRefreshInterval: authn.DefaultRefreshInterval, MaxClockSkew: defaultMaxClockSkew, Timeout: 10 * time.Second, Output: "text"}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the wiring between kube-apiserver, clustertrust and the issuers, and say how to fix it",
		Long: `doctor checks, from where it runs, what kube-apiserver needs to call clustertrust and what
clustertrust needs to verify tokens, and reports each item as ok, warn, fail or skip with the fix:

  kubeconfig          the webhook kubeconfig (--authentication-token-webhook-config-file) parses
  reach               its server resolves and accepts connections
  tls                 the serving certificate chains to the kubeconfig's CA and names the host
  client-certificate  the kubeconfig's client certificate is valid and accepted by --client-ca-file and
                      --client-allowed-names (or none is required)
  tokenreview         a garbage token gets a well-formed refusal
  readyz              clustertrust's /readyz (with --readyz-url)
  openidconnect/NAME  every OpenIDConnect is Ready with fresh keys (with --kubeconfig)
  clock/ISSUER        this machine's clock against each issuer's Date header (with --kubeconfig)
  token               a real token from --token-file through the live webhook

Run it where kube-apiserver runs (a control-plane node) to see what kube-apiserver sees; the clock
check measures the clock of the machine it runs on, which matters on the nodes running clustertrust.
It exits 1 when a check fails; warn and skip do not fail. Neither the token nor the client key is ever
printed.`,
		Example: `  webhook doctor --webhook-kubeconfig /etc/kubernetes/clustertrust/webhook-kubeconfig.yaml \
    --kubeconfig ~/.kube/config --readyz-url http://10.0.0.5:8081/readyz

  # also try a real token, read from stdin
  kubectl create token reconciler -n tenant-a --audience https://downstream.example:6443 --context hub |
    webhook doctor --webhook-kubeconfig webhook-kubeconfig.yaml --token-file -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			d := &doctor{opts: o, stdin: cmd.InOrStdin()}
			if o.Kubeconfig != "" {
				d.objects = apiObjectLister(o.Kubeconfig)
			}
			results := d.run(cmd.Context())
			if err := writeResults(cmd.OutOrStdout(), o.Output, results); err != nil {
				return err
			}
			if n := countStatus(results, checkFail); n > 0 {
				return fmt.Errorf("%d of %d checks failed", n, len(results))
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.WebhookKubeconfig, "webhook-kubeconfig", "", "The webhook kubeconfig kube-apiserver reads (its --authentication-token-webhook-config-file). Required.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "Kubeconfig of the cluster holding the OpenIDConnect objects; without it the object and clock checks are skipped.")
	fs.StringVar(&o.ReadyzURL, "readyz-url", "", "clustertrust's plain-HTTP readiness URL on its probe port, e.g. http://10.0.0.5:8081/readyz.")
	fs.DurationVar(&o.KeyRefreshInterval, "key-refresh-interval", o.KeyRefreshInterval, fmt.Sprintf("clustertrust's --key-refresh-interval. Keys last refreshed more than twice this ago warn; more than %s (or 4× this, if longer) ago fail, since a key the issuer withdrew is still trusted.", approx(staleKeysFailAge)))
	fs.DurationVar(&o.MaxClockSkew, "max-clock-skew", o.MaxClockSkew, "Largest tolerated difference between this machine's clock and an issuer's. The default is what token verification tolerates: an nbf up to 1m in the future, and no leeway on exp.")
	fs.StringVar(&o.TokenFile, "token-file", "", "A file holding a real token (\"-\": stdin) to review through the live webhook. The token is never printed.")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "Time each check may take.")
	fs.StringVarP(&o.Output, "output", "o", o.Output, "Report format: text or json.")
	return cmd
}

func (o *doctorOptions) validate() error {
	var errs []error
	if o.WebhookKubeconfig == "" {
		errs = append(errs, errors.New("--webhook-kubeconfig is required: the file kube-apiserver reads with --authentication-token-webhook-config-file"))
	}
	if o.Output != "text" && o.Output != "json" {
		errs = append(errs, fmt.Errorf("--output %q is neither text nor json", o.Output))
	}
	if o.Timeout <= 0 {
		errs = append(errs, errors.New("--timeout must be positive"))
	}
	if o.MaxClockSkew <= 0 {
		errs = append(errs, errors.New("--max-clock-skew must be positive"))
	}
	if o.KeyRefreshInterval < time.Second {
		errs = append(errs, fmt.Errorf("--key-refresh-interval %s is shorter than 1s", o.KeyRefreshInterval))
	}
	return errors.Join(errs...)
}

// openIDConnectLister lists the OpenIDConnect objects; tests feed objects directly.
type openIDConnectLister func(ctx context.Context) ([]v1alpha1.OpenIDConnect, error)

// apiObjectLister lists the objects of the cluster of kubeconfig.
func apiObjectLister(kubeconfig string) openIDConnectLister {
	return func(ctx context.Context) ([]v1alpha1.OpenIDConnect, error) {
		cfg, err := loadRESTConfig(kubeconfig)
		if err != nil {
			return nil, err
		}
		scheme := runtime.NewScheme()
		if err := v1alpha1.AddToScheme(scheme); err != nil {
			return nil, err
		}
		c, err := client.New(cfg, client.Options{Scheme: scheme})
		if err != nil {
			return nil, fmt.Errorf("could not create a client for %s: %w", cfg.Host, err)
		}
		var list v1alpha1.OpenIDConnectList
		if err := c.List(ctx, &list); err != nil {
			return nil, fmt.Errorf("could not list OpenIDConnects on %s: %w", cfg.Host, err)
		}
		return list.Items, nil
	}
}

// doctor runs the checks. The fields set by a check are read by the checks after it.
type doctor struct {
	opts    doctorOptions
	stdin   io.Reader
	objects openIDConnectLister // nil: no --kubeconfig

	target *webhookTarget // nil when the webhook kubeconfig did not load
	// why the webhook cannot be called as kube-apiserver would; empty when it can
	blocked string
	// clientCert is the kubeconfig's client certificate pair, when it has a usable one.
	clientCert *tls.Certificate
}

// webhookTarget is what kube-apiserver takes from the webhook kubeconfig.
type webhookTarget struct {
	server     string
	url        *url.URL
	serverName string // tls-server-name, or the URL's host
	explicitSN bool   // serverName comes from tls-server-name
	roots      *x509.CertPool
	caCerts    []*x509.Certificate
	insecure   bool
	certPEM    []byte
	keyPEM     []byte
	// rest is the client configuration kube-apiserver makes of the file: the reviews go through it,
	// so a proxy (proxy-url, or HTTPS_PROXY in the environment) is used as kube-apiserver uses it.
	rest *rest.Config
}

func (d *doctor) run(ctx context.Context) []checkResult {
	var out []checkResult
	add := func(r ...checkResult) { out = append(out, r...) }
	add(d.checkKubeconfig())
	if p := d.checkProxy(); p != nil {
		add(*p)
	}
	add(d.checkReach(ctx))
	add(d.checkTLS(ctx))
	clientCert, review := d.checkReviews(ctx)
	add(clientCert, review)
	add(d.checkReadyz(ctx))
	objs, res := d.checkObjects(ctx, time.Now())
	add(res...)
	if d.objects != nil && len(res) == 1 && res[0].Name == "openidconnect" && res[0].Status == checkFail {
		add(checkResult{"clock", checkSkip, "skipped: the OpenIDConnect objects could not be listed", ""})
	} else {
		add(d.checkClocks(ctx, objs)...)
	}
	if d.opts.TokenFile != "" {
		add(d.checkToken(ctx))
	}
	return out
}

// checkProxy says when kube-apiserver's client would go through a proxy (the kubeconfig's proxy-url,
// else HTTPS_PROXY of the environment, here doctor's): the reach and tls checks dial directly, while the
// reviews go through the proxy as kube-apiserver's do. nil when no proxy applies.
func (d *doctor) checkProxy() *checkResult {
	if d.target == nil || d.target.rest == nil {
		return nil
	}
	proxy := d.target.rest.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	p, err := proxy(&http.Request{URL: d.target.url})
	if err != nil || p == nil {
		return nil
	}
	p.User = nil // never print proxy credentials
	return &checkResult{"proxy", checkWarn, fmt.Sprintf("kube-apiserver's client reaches %s through the proxy %s: the reach and tls checks below dial directly, the reviews go through the proxy", d.target.server, p.Redacted()),
		"kube-apiserver uses the proxy of its own environment (HTTPS_PROXY, NO_PROXY) or the kubeconfig's proxy-url: run doctor with the same, or add the webhook's host to NO_PROXY if the proxy should not be used"}
}

// --- kubeconfig -------------------------------------------------------------------------------------

func (d *doctor) checkKubeconfig() checkResult {
	const name = "kubeconfig"
	path := d.opts.WebhookKubeconfig
	regenerate := "write it with `webhook apiserver-config --server https://HOST:PORT/authenticate --ca-file CA.crt --output " + path + "`"
	d.blocked = "the webhook kubeconfig did not load"
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return checkResult{name, checkFail, fmt.Sprintf("could not load %s: %v", path, err), "kube-apiserver will not start with this --authentication-token-webhook-config-file; " + regenerate}
	}
	if err := clientcmd.ResolveLocalPaths(cfg); err != nil {
		return checkResult{name, checkFail, fmt.Sprintf("could not resolve the file paths in %s: %v", path, err), regenerate}
	}
	if cfg.CurrentContext == "" {
		return checkResult{name, checkFail, path + " has no current-context", "set current-context to the context whose cluster is clustertrust; " + regenerate}
	}
	kctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		return checkResult{name, checkFail, fmt.Sprintf("current-context %q of %s names no context in the file", cfg.CurrentContext, path), "add the context, or set current-context to one of " + quoteKeys(cfg.Contexts)}
	}
	cluster, ok := cfg.Clusters[kctx.Cluster]
	if !ok {
		return checkResult{name, checkFail, fmt.Sprintf("context %q names cluster %q, which %s does not define", cfg.CurrentContext, kctx.Cluster, path), "add the cluster, or point the context at one of " + quoteKeys(cfg.Clusters)}
	}
	u, err := url.Parse(cluster.Server)
	switch {
	case err != nil || u.Host == "":
		return checkResult{name, checkFail, fmt.Sprintf("cluster %q has server %q, which is not a URL with a host", kctx.Cluster, cluster.Server), "set server to clustertrust's /authenticate URL as kube-apiserver reaches it, e.g. https://127.0.0.1:9443/authenticate"}
	case u.Scheme != "https":
		return checkResult{name, checkFail, fmt.Sprintf("server %q is not https: clustertrust serves HTTPS only, and tokens must not travel in clear text", cluster.Server), "use https://" + u.Host + u.Path}
	}
	if kctx.AuthInfo != "" {
		if _, ok := cfg.AuthInfos[kctx.AuthInfo]; !ok {
			return checkResult{name, checkFail, fmt.Sprintf("context %q names user %q, which %s does not define", cfg.CurrentContext, kctx.AuthInfo, path), "add the user (with client-certificate-data and client-key-data), or remove user from the context"}
		}
	}
	// The same loading as kube-apiserver's (k8s.io/apiserver/pkg/util/webhook.LoadKubeconfig), then the
	// files it names read as it reads them.
	restCfg, err := clientcmd.NewNonInteractiveClientConfig(*cfg, cfg.CurrentContext, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err == nil {
		err = rest.LoadTLSFiles(restCfg)
	}
	if err != nil {
		return checkResult{name, checkFail, fmt.Sprintf("%s does not make a client: %v", path, err), regenerate}
	}
	tc := restCfg.TLSClientConfig
	if (len(tc.CertData) == 0) != (len(tc.KeyData) == 0) {
		return checkResult{name, checkFail, fmt.Sprintf("user %q has a client certificate without its key, or a key without its certificate", kctx.AuthInfo), "set both client-certificate-data and client-key-data, or neither"}
	}
	t := &webhookTarget{server: cluster.Server, url: u, serverName: tc.ServerName, explicitSN: tc.ServerName != "", insecure: tc.Insecure, certPEM: tc.CertData, keyPEM: tc.KeyData, rest: restCfg}
	if t.serverName == "" {
		t.serverName = u.Hostname()
	}
	if len(tc.CAData) > 0 {
		t.caCerts = parseCerts(tc.CAData)
		if len(t.caCerts) == 0 {
			return checkResult{name, checkFail, fmt.Sprintf("certificate-authority(-data) of cluster %q holds no PEM certificate", kctx.Cluster), "put the PEM CA of clustertrust's serving certificate into certificate-authority-data (base64 of the PEM), e.g. with `webhook apiserver-config --ca-secret NAMESPACE/NAME`"}
		}
		t.roots = x509.NewCertPool()
		for _, c := range t.caCerts {
			t.roots.AddCert(c)
		}
	}
	d.target, d.blocked = t, ""
	msg := fmt.Sprintf("%s parses; context %q sends TokenReviews to %s", path, cfg.CurrentContext, cluster.Server)
	if t.explicitSN {
		msg += " (tls-server-name " + t.serverName + ")"
	}
	if u.Path != "/authenticate" {
		return checkResult{name, checkWarn, msg + fmt.Sprintf(", but clustertrust answers on /authenticate, not %q", u.Path), "set server to https://" + u.Host + "/authenticate unless a proxy in between rewrites the path"}
	}
	return checkResult{name, checkOK, msg, ""}
}

// --- reach ------------------------------------------------------------------------------------------

func (d *doctor) checkReach(ctx context.Context) checkResult {
	const name = "reach"
	if d.target == nil {
		return checkResult{name, checkSkip, "skipped: " + d.blocked, ""}
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	host, addr := d.target.url.Hostname(), d.target.addr()
	resolved := ""
	if net.ParseIP(host) == nil {
		addrs, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			d.blocked = "the server's host does not resolve"
			return checkResult{name, checkFail, fmt.Sprintf("cannot resolve %s from here: %v", host, err),
				"kube-apiserver resolves with its node's resolver, not cluster DNS (it runs with the host's network): use an IP address or a name the node resolves; `webhook apiserver-config --service NAMESPACE/NAME` writes the Service's fixed cluster IP"}
		}
		resolved = " (" + host + " resolves to " + strings.Join(addrs, ", ") + ")"
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		d.blocked = "nothing accepts connections at " + addr
		return checkResult{name, checkFail, fmt.Sprintf("kube-apiserver cannot reach %s from here: %s", d.target.server, dialReason(err, d.opts.Timeout)),
			fmt.Sprintf("is clustertrust running, and is %s the address it listens on (--bind-address, --secure-port, default 9443) or its Service's? `kubectl get pods,endpointslices -n clustertrust-system` shows where it runs", addr)}
	}
	_ = conn.Close()
	return checkResult{name, checkOK, addr + " accepts connections" + resolved, ""}
}

func (t *webhookTarget) addr() string {
	port := t.url.Port()
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(t.url.Hostname(), port)
}

func dialReason(err error, timeout time.Duration) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no answer within %s (a firewall or NetworkPolicy dropping packets, or a wrong address?)", timeout)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the host"
	}
	return err.Error()
}

// --- tls --------------------------------------------------------------------------------------------

func (d *doctor) checkTLS(ctx context.Context) checkResult {
	const name = "tls"
	if d.target == nil || d.blocked != "" {
		return checkResult{name, checkSkip, "skipped: " + d.blocked, ""}
	}
	t := d.target
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	// First the chain as presented, without verification, to say precisely what is wrong with it.
	chain, err := presentedChain(ctx, t.addr(), t.serverName, t.keyPair())
	if err != nil {
		d.blocked = "no TLS handshake"
		fix := "is " + t.addr() + " clustertrust's --secure-port? Something else answers there"
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) {
			fix = t.addr() + " speaks plain HTTP, not TLS: point server at clustertrust's --secure-port (default 9443), not the probe (8081) or metrics (8080) port"
		}
		return checkResult{name, checkFail, fmt.Sprintf("no TLS handshake with %s: %v", t.addr(), err), fix}
	}
	r := diagnoseChain(t, chain, time.Now())
	if r.Status == checkFail && !t.insecure {
		d.blocked = "kube-apiserver does not trust the serving certificate"
		return r
	}
	// Then the handshake kube-apiserver makes, in case anything else stands in its way.
	conn, err := (&tls.Dialer{Config: t.tlsConfig(t.keyPair())}).DialContext(ctx, "tcp", t.addr())
	if remoteTLSAlert(err) && r.Status != checkFail {
		// The server refused us, not we it: about the client certificate, which the next check reports.
		return r
	}
	if err != nil {
		d.blocked = "the TLS handshake fails"
		return checkResult{name, checkFail, fmt.Sprintf("the TLS handshake kube-apiserver makes with %s fails: %v", t.addr(), err), "see the message; check the serving certificate and the kubeconfig's certificate-authority-data"}
	}
	_ = conn.Close()
	if t.insecure {
		msg := "insecure-skip-tls-verify is set: kube-apiserver sends tokens to whatever answers at " + t.addr()
		if r.Status == checkFail {
			msg += "; and the certificate would not verify: " + r.Message
		}
		return checkResult{name, checkWarn, msg, "remove insecure-skip-tls-verify and put the CA of the serving certificate into certificate-authority-data, e.g. with `webhook apiserver-config --ca-secret NAMESPACE/NAME`"}
	}
	return r
}

// tlsConfig is the client TLS configuration kube-apiserver builds from the kubeconfig (client-go's
// transport): the kubeconfig's CA or the system roots, tls-server-name, the client certificate.
func (t *webhookTarget) tlsConfig(cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            t.roots,
		ServerName:         t.serverName,
		InsecureSkipVerify: t.insecure, //nolint:gosec // G402: as the kubeconfig says; the tls check warns about it
	}
	if cert != nil {
		// client-go presents its certificate whatever CAs the server names, as GetClientCertificate does.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return cfg
}

// keyPair is the kubeconfig's client certificate, or nil when it has none or it does not load (the
// client-certificate check says why).
func (t *webhookTarget) keyPair() *tls.Certificate {
	if len(t.certPEM) == 0 {
		return nil
	}
	pair, err := tls.X509KeyPair(t.certPEM, t.keyPEM)
	if err != nil {
		return nil
	}
	return &pair
}

// remoteTLSAlert reports whether err is a TLS alert the server sent, as when it refuses the client
// certificate in the handshake.
func remoteTLSAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// presentedChain returns the certificates the server presents for serverName, unverified. The chain is
// taken as it arrives, so a handshake that fails later (over the client certificate) still yields it.
func presentedChain(ctx context.Context, addr, serverName string, cert *tls.Certificate) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		// Only to read the chain, which diagnoseChain then verifies by hand; nothing is sent.
		InsecureSkipVerify: true, //nolint:gosec // G402: see above
		VerifyConnection: func(cs tls.ConnectionState) error {
			chain = cs.PeerCertificates
			return nil
		},
	}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if conn != nil {
		_ = conn.Close()
	}
	switch {
	case len(chain) > 0:
		return chain, nil
	case err != nil:
		return nil, err
	}
	return nil, errors.New("the server presented no certificate")
}

// diagnoseChain verifies the presented chain as kube-apiserver would, and says what is wrong.
func diagnoseChain(t *webhookTarget, chain []*x509.Certificate, now time.Time) checkResult {
	const name = "tls"
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// The leaf's own dates first, for a precise message; the rest of what the server sends is judged
	// by Verify, which, like kube-apiserver's TLS, ignores certificates no valid chain needs (an old
	// cross-signed CA sent along, say).
	for _, c := range chain[:1] {
		if now.Before(c.NotBefore) {
			return checkResult{name, checkFail, fmt.Sprintf("the certificate %s presented by %s is not valid before %s (%s from now)", certName(c), t.addr(), c.NotBefore.UTC().Format(time.RFC3339), approx(c.NotBefore.Sub(now))),
				"the clock of this machine or of whoever issued the certificate is off: sync them (NTP), or re-issue the certificate"}
		}
		if now.After(c.NotAfter) {
			return checkResult{name, checkFail, fmt.Sprintf("the certificate %s presented by %s expired at %s (%s ago)", certName(c), t.addr(), c.NotAfter.UTC().Format(time.RFC3339), approx(now.Sub(c.NotAfter))),
				"renew the serving certificate (cert-manager renews the chart's; a renewed file is picked up without a restart)"}
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: t.roots, Intermediates: inter, CurrentTime: now})
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		issuer := "CN=" + leaf.Issuer.CommonName
		if leaf.Issuer.CommonName == "" {
			issuer = leaf.Issuer.String()
		}
		where := "the kubeconfig's CA (" + joinNames(t.caCerts) + ")"
		if t.roots == nil {
			where = "this machine's system roots (the kubeconfig has no certificate-authority-data)"
		}
		return checkResult{name, checkFail, fmt.Sprintf("the serving certificate %s, issued by %s, does not chain to %s", certName(leaf), issuer, where),
			fmt.Sprintf("the kubeconfig's CA did not sign the serving certificate: put the CA of %s into certificate-authority-data, e.g. with `webhook apiserver-config --ca-secret NAMESPACE/NAME` (the Secret whose ca.crt signed the serving certificate)", issuer)}
	case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
		return checkResult{name, checkFail, fmt.Sprintf("the serving certificate %s is not for server authentication (extended key usage)", certName(leaf)), "re-issue it with extendedKeyUsage serverAuth"}
	case err != nil:
		return checkResult{name, checkFail, fmt.Sprintf("the serving certificate %s does not verify: %v", certName(leaf), err), "re-issue the serving certificate from the CA in the kubeconfig's certificate-authority-data"}
	}
	if err := leaf.VerifyHostname(t.serverName); err != nil {
		against := "the server URL's host " + t.serverName
		if t.explicitSN {
			against = "tls-server-name " + t.serverName
		}
		sans := sanList(leaf)
		fix := fmt.Sprintf("add %s to the serving certificate's subject alternative names and re-issue it", t.serverName)
		if len(sans) > 0 {
			fix += fmt.Sprintf(", or set tls-server-name to one of its names (%s) with `webhook apiserver-config --tls-server-name NAME`", strings.Join(sans, ", "))
		}
		has := "names " + strings.Join(sans, ", ")
		if len(sans) == 0 {
			has = "has no subject alternative names (kube-apiserver ignores its common name " + leaf.Subject.CommonName + ")"
		}
		return checkResult{name, checkFail, fmt.Sprintf("the serving certificate %s %s, but kube-apiserver checks it against %s", certName(leaf), has, against), fix}
	}
	msg := fmt.Sprintf("serving certificate chains to the kubeconfig's CA and names %s", t.serverName)
	if t.roots == nil {
		msg = fmt.Sprintf("serving certificate chains to this machine's system roots (the kubeconfig has no certificate-authority-data) and names %s", t.serverName)
	}
	if left := leaf.NotAfter.Sub(now); left < expiryWarning {
		return checkResult{name, checkWarn, fmt.Sprintf("%s, but it expires in %s (%s)", msg, approx(left), leaf.NotAfter.UTC().Format(time.RFC3339)),
			"renew the serving certificate before then (cert-manager renews the chart's; a renewed file is picked up without a restart)"}
	}
	return checkResult{name, checkOK, msg, ""}
}

// --- client-certificate and tokenreview ---------------------------------------------------------------

// reviewAnswer is one POST of a TokenReview to the webhook.
type reviewAnswer struct {
	code int
	body []byte
	err  error
}

func (d *doctor) checkReviews(ctx context.Context) (clientCert, review checkResult) {
	clientCert = d.checkClientCertLocal()
	if d.target == nil || d.blocked != "" {
		if clientCert.Status == checkOK {
			clientCert = checkResult{clientCert.Name, checkSkip, clientCert.Message + "; not tried against clustertrust: " + d.blocked, ""}
		}
		return clientCert, checkResult{"tokenreview", checkSkip, "skipped: " + d.blocked, ""}
	}
	a := d.postReview(ctx, garbageToken())
	clientCert = d.judgeClientCert(clientCert, a)
	if d.blocked != "" {
		return clientCert, checkResult{"tokenreview", checkSkip, "skipped: " + d.blocked, ""}
	}
	return clientCert, d.judgeGarbageReview(a)
}

// checkClientCertLocal checks the kubeconfig's client certificate without the network.
func (d *doctor) checkClientCertLocal() checkResult {
	const name = "client-certificate"
	if d.target == nil {
		return checkResult{name, checkSkip, "skipped: " + d.blocked, ""}
	}
	t := d.target
	if len(t.certPEM) == 0 {
		return checkResult{name, checkOK, "the kubeconfig has no client certificate", ""}
	}
	pair, err := tls.X509KeyPair(t.certPEM, t.keyPEM)
	if err != nil {
		d.blocked = "kube-apiserver cannot load the kubeconfig's client certificate"
		return checkResult{name, checkFail, fmt.Sprintf("the kubeconfig's client certificate and key do not make a pair: %v", err),
			"put the certificate and its own key into client-certificate-data and client-key-data (kube-apiserver will not start its webhook client otherwise)"}
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		d.blocked = "kube-apiserver cannot load the kubeconfig's client certificate"
		return checkResult{name, checkFail, fmt.Sprintf("the kubeconfig's client certificate does not parse: %v", err), "put a PEM certificate into client-certificate-data"}
	}
	now := time.Now()
	switch {
	case now.Before(leaf.NotBefore):
		return checkResult{name, checkFail, fmt.Sprintf("the client certificate %s is not valid before %s", certName(leaf), leaf.NotBefore.UTC().Format(time.RFC3339)), "the clock of this machine or of its issuer is off; or re-issue the certificate"}
	case now.After(leaf.NotAfter):
		return checkResult{name, checkFail, fmt.Sprintf("the client certificate %s expired at %s", certName(leaf), leaf.NotAfter.UTC().Format(time.RFC3339)), "issue kube-apiserver a new client certificate from clustertrust's --client-ca-file and put it into the kubeconfig"}
	case len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny):
		return checkResult{name, checkFail, fmt.Sprintf("the client certificate %s is not for client authentication (extended key usage), so clustertrust refuses it", certName(leaf)), "re-issue it with extendedKeyUsage clientAuth"}
	}
	pair.Leaf = leaf
	d.clientCert = &pair
	return checkResult{name, checkOK, fmt.Sprintf("the client certificate %s (issued by %s) matches its key and is valid until %s", certName(leaf), issuerName(leaf), leaf.NotAfter.UTC().Format(time.RFC3339)), ""}
}

// judgeClientCert reads the answer to the garbage review for what it says of the client certificate.
func (d *doctor) judgeClientCert(local checkResult, a reviewAnswer) checkResult {
	const name = "client-certificate"
	if local.Status == checkFail {
		return local
	}
	switch {
	case remoteTLSAlert(a.err):
		d.blocked = "the TLS handshake was refused"
		which := "without a client certificate"
		if d.clientCert != nil {
			which = fmt.Sprintf("with the client certificate %s (issued by %s)", certName(d.clientCert.Leaf), issuerName(d.clientCert.Leaf))
		}
		return checkResult{name, checkFail, fmt.Sprintf("%s refused the TLS handshake %s: %v", d.target.addr(), which, a.err),
			"the server verifies client certificates in the handshake (clustertrust itself answers 401 instead, so a proxy may stand in between): put a client certificate it trusts into the kubeconfig"}
	case a.err != nil:
		return checkResult{name, checkSkip, local.Message + "; not tried: the request failed (see tokenreview)", ""}
	case a.code == http.StatusUnauthorized && d.clientCert == nil:
		d.blocked = "clustertrust refused kube-apiserver (HTTP 401)"
		return checkResult{name, checkFail, "clustertrust requires a client certificate (--client-ca-file) but the kubeconfig has none (HTTP 401: " + quoteBody(a.body) + ")",
			"issue kube-apiserver a client certificate from the CA in clustertrust's --client-ca-file, named as one of --client-allowed-names, and put it into the kubeconfig: `webhook apiserver-config --client-cert-file apiserver-client.crt --client-key-file apiserver-client.key ...`"}
	case a.code == http.StatusUnauthorized:
		d.blocked = "clustertrust refused kube-apiserver's client certificate (HTTP 401)"
		leaf := d.clientCert.Leaf
		fix := fmt.Sprintf("name %q in clustertrust's --client-allowed-names, or issue kube-apiserver a certificate with one of the allowed names", leaf.Subject.CommonName)
		switch body := string(a.body); {
		case strings.Contains(body, "not trusted"):
			fix = fmt.Sprintf("put the CA that issued it (%s) into clustertrust's --client-ca-file, or issue kube-apiserver a certificate from the CA that is there", issuerName(leaf))
		case !strings.Contains(body, "allowed names"):
			fix = fmt.Sprintf("sign it with the CA in clustertrust's --client-ca-file (it is issued by %s) and name %q in --client-allowed-names", issuerName(leaf), leaf.Subject.CommonName)
		}
		return checkResult{name, checkFail, fmt.Sprintf("clustertrust refused kube-apiserver's client certificate (%s, issued by %s): it must be signed by clustertrust's --client-ca-file and be named in --client-allowed-names (HTTP 401: %s)", certName(leaf), issuerName(leaf), quoteBody(a.body)), fix}
	case d.clientCert == nil:
		return checkResult{name, checkOK, "the kubeconfig has no client certificate, and clustertrust does not ask for one", ""}
	}
	if left := time.Until(d.clientCert.Leaf.NotAfter); left < expiryWarning {
		return checkResult{name, checkWarn, fmt.Sprintf("clustertrust accepted the client certificate %s, but it expires in %s", certName(d.clientCert.Leaf), approx(left)),
			"issue kube-apiserver a new client certificate before then and put it into the kubeconfig"}
	}
	return checkResult{name, checkOK, fmt.Sprintf("clustertrust accepted the client certificate %s (or does not check client certificates)", certName(d.clientCert.Leaf)), ""}
}

func (d *doctor) judgeGarbageReview(a reviewAnswer) checkResult {
	const name = "tokenreview"
	if a.err != nil {
		return checkResult{name, checkFail, fmt.Sprintf("POST %s failed: %v", d.target.server, a.err), "see the message: clustertrust must answer within " + d.opts.Timeout.String() + " (kube-apiserver waits 30s at most)"}
	}
	what := fmt.Sprintf("HTTP %d: %s", a.code, quoteBody(a.body))
	if a.code != http.StatusOK {
		fix := fmt.Sprintf("is %s clustertrust's /authenticate, and not another service or a proxy? Its logs say why it answered so", d.target.server)
		switch a.code {
		case http.StatusNotFound:
			fix = "nothing answers TokenReviews at " + d.target.url.Path + ": set server's path to /authenticate"
		case http.StatusTooManyRequests:
			fix = "clustertrust is overloaded (--max-concurrent-reviews): add replicas or raise the limit"
		}
		return checkResult{name, checkFail, "a TokenReview of a garbage token got " + what, fix}
	}
	var tr authenticationv1.TokenReview
	if err := json.Unmarshal(a.body, &tr); err != nil {
		return checkResult{name, checkFail, "a TokenReview of a garbage token got an answer that is not a TokenReview (" + what + ")", "is " + d.target.server + " clustertrust's /authenticate?"}
	}
	switch {
	case tr.APIVersion == "" && tr.Kind == "":
		// kube-apiserver reads an answer without apiVersion and kind as the version it asked for.
	case tr.APIVersion != authenticationv1.SchemeGroupVersion.String() || tr.Kind != "TokenReview":
		return checkResult{name, checkFail, fmt.Sprintf("a TokenReview of a garbage token was answered with apiVersion %q, kind %q instead of authentication.k8s.io/v1 TokenReview (%s)", tr.APIVersion, tr.Kind, what),
			"kube-apiserver cannot read that answer: is " + d.target.server + " clustertrust's /authenticate?"}
	case tr.Status.Authenticated:
		return checkResult{name, checkFail, fmt.Sprintf("a garbage token was authenticated as %q: whatever answers at %s accepts tokens it cannot have verified", tr.Status.User.Username, d.target.server),
			"point server at clustertrust's /authenticate; take whatever answers there out of kube-apiserver's path now"}
	case tr.Status.Error == "":
		return checkResult{name, checkFail, "a garbage token was refused without status.error (" + what + ")", "clustertrust always says why it refuses: is " + d.target.server + " clustertrust's /authenticate?"}
	}
	return checkResult{name, checkOK, fmt.Sprintf("a garbage token was refused in a well-formed authentication.k8s.io/v1 TokenReview (status.error %q)", tr.Status.Error), ""}
}

// postReview posts a v1 TokenReview of token as kube-apiserver does. The token is never part of what
// it returns.
func (d *doctor) postReview(ctx context.Context, token string) reviewAnswer {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	body, err := json.Marshal(authenticationv1.TokenReview{
		TypeMeta: metaTokenReview(),
		Spec:     authenticationv1.TokenReviewSpec{Token: token},
	})
	if err != nil {
		return reviewAnswer{err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.target.server, bytes.NewReader(body))
	if err != nil {
		return reviewAnswer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "clustertrust-doctor")
	// kube-apiserver's client for this file (k8s.io/apiserver's webhook client is a REST client of the
	// same rest.Config): the same TLS, and the same proxy.
	c, err := rest.HTTPClientFor(d.target.rest)
	if err != nil {
		return reviewAnswer{err: err}
	}
	resp, err := c.Do(req)
	if err != nil {
		// The token travels in the body, not in what a transport error quotes. Should one ever quote it,
		// the report carries its hash instead (and loses the error's chain, which only a TLS alert uses).
		if strings.Contains(err.Error(), token) {
			err = errors.New(redact(err.Error(), token))
		}
		return reviewAnswer{err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return reviewAnswer{err: fmt.Errorf("reading the answer: %w", err)}
	}
	return reviewAnswer{code: resp.StatusCode, body: []byte(redact(string(b), token))}
}

// garbageToken is a token of the form clustertrust admits (three segments of canonical base64url), from
// an issuer nobody trusts, with a signature of random bytes.
func garbageToken() string {
	enc := base64.RawURLEncoding
	sig := make([]byte, 64)
	_, _ = rand.Read(sig)
	return enc.EncodeToString([]byte(`{"alg":"RS256","kid":"clustertrust-doctor"}`)) + "." +
		enc.EncodeToString(fmt.Appendf(nil, `{"iss":"https://clustertrust-doctor.invalid","sub":"doctor","aud":["clustertrust-doctor"],"exp":%d}`, time.Now().Add(time.Hour).Unix())) + "." +
		enc.EncodeToString(sig)
}

// --- readyz -----------------------------------------------------------------------------------------

func (d *doctor) checkReadyz(ctx context.Context) checkResult {
	const name = "readyz"
	if d.opts.ReadyzURL == "" {
		return checkResult{name, checkWarn, "skipped: no --readyz-url", "pass --readyz-url http://POD_IP:8081/readyz: clustertrust's plain-HTTP probe port (--health-probe-bind-address, default :8081)"}
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.opts.ReadyzURL, nil)
	if err != nil {
		return checkResult{name, checkFail, fmt.Sprintf("--readyz-url %q: %v", d.opts.ReadyzURL, err), "pass a URL such as http://POD_IP:8081/readyz"}
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return checkResult{name, checkFail, fmt.Sprintf("GET %s failed: %s", d.opts.ReadyzURL, dialReason(err, d.opts.Timeout)),
			"--readyz-url is one replica's plain-HTTP probe port (--health-probe-bind-address, default :8081), e.g. http://POD_IP:8081/readyz: is the replica running?"}
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK {
		return checkResult{name, checkOK, d.opts.ReadyzURL + " is ready", ""}
	}
	var lines []string
	for l := range strings.Lines(string(body)) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	said := strings.Join(lines, "; ")
	if len(said) > 4*maxBodyShown {
		said = said[:4*maxBodyShown] + "…"
	}
	return checkResult{name, checkFail, fmt.Sprintf("%s is not ready (HTTP %d): %s", d.opts.ReadyzURL, resp.StatusCode, said),
		"the [-] lines name what is not ready: \"issuers\" until every OpenIDConnect is routed and has had its first key fetch (and the informer has synced); clustertrust logs the reason at -v=1 (\"healthz check failed\"), and `kubectl get oidc` shows which objects are not Ready"}
}

// --- OpenIDConnect objects --------------------------------------------------------------------------

func (d *doctor) checkObjects(ctx context.Context, now time.Time) ([]v1alpha1.OpenIDConnect, []checkResult) {
	const name = "openidconnect"
	if d.objects == nil {
		return nil, []checkResult{{name, checkWarn, "skipped: no --kubeconfig, so the OpenIDConnect objects and their issuers' clocks were not checked",
			"pass --kubeconfig of the cluster that holds the OpenIDConnect objects (the one clustertrust serves)"}}
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	objs, err := d.objects(ctx)
	if err != nil {
		fix := "is --kubeconfig the cluster clustertrust serves, and does its API server answer?"
		switch {
		case apimeta.IsNoMatchError(err) || apierrors.IsNotFound(err):
			fix = "the OpenIDConnect CRD is not installed there: `kubectl apply -k config/crd` (the Helm chart installs it too)"
		case apierrors.IsForbidden(err):
			fix = "this kubeconfig's user may not list openidconnects.authentication.clustertrust.io: use an admin's, or grant get/list"
		}
		return nil, []checkResult{{name, checkFail, err.Error(), fix}}
	}
	return objs, d.judgeObjects(objs, now)
}

// judgeObjects reports on each object: Ready, and keys refreshed recently.
func (d *doctor) judgeObjects(objs []v1alpha1.OpenIDConnect, now time.Time) []checkResult {
	if len(objs) == 0 {
		return []checkResult{{"openidconnect", checkWarn, "no OpenIDConnect objects: nothing is trusted yet",
			"declare an issuer: `webhook trust --upstream-kubeconfig UPSTREAM --name NAME --apply`, or apply config/samples/openidconnect.yaml"}}
	}
	interval := d.opts.KeyRefreshInterval
	warnAge, failAge := 2*interval, max(staleKeysFailAge, 4*interval)
	out := make([]checkResult, 0, len(objs))
	for i := range objs {
		o := &objs[i]
		name := "openidconnect/" + o.Name
		describe := "kubectl describe oidc " + o.Name
		ready := apimeta.FindStatusCondition(o.Status.Conditions, v1alpha1.ConditionReady)
		synced := apimeta.FindStatusCondition(o.Status.Conditions, v1alpha1.ConditionKeysSynced)
		switch {
		case ready == nil:
			out = append(out, checkResult{name, checkFail, "has no Ready condition: clustertrust has not reconciled it",
				"is clustertrust running against this cluster (and, with --leader-elect, does a replica hold the Lease)? " + describe + "; kubectl logs -n clustertrust-system deploy/clustertrust"})
			continue
		case ready.Status != "True":
			out = append(out, checkResult{name, checkFail, fmt.Sprintf("is not Ready (%s): %s", ready.Reason, ready.Message), readyFix(o, ready.Reason, describe)})
			continue
		}
		keys := plural(len(o.Status.Keys), "key")
		if o.Spec.JWKS != nil {
			out = append(out, checkResult{name, checkOK, "Ready with " + plural(len(o.Status.Keys), "static key") + " from spec.jwks", ""})
			continue
		}
		if o.Status.ObservedGeneration != 0 && o.Status.ObservedGeneration < o.Generation {
			out = append(out, checkResult{name, checkWarn, fmt.Sprintf("is Ready, but its status describes generation %d and the spec is at %d", o.Status.ObservedGeneration, o.Generation),
				"clustertrust has not reconciled the latest change: is it running, and does a replica hold the Lease? " + describe})
			continue
		}
		if o.Status.LastKeysRefreshTime == nil {
			out = append(out, checkResult{name, checkWarn, "is Ready with " + keys + ", but has no lastKeysRefreshTime", describe})
			continue
		}
		age := now.Sub(o.Status.LastKeysRefreshTime.Time)
		refreshed := fmt.Sprintf("keys were last refreshed %s ago", approx(age))
		why := ""
		if synced != nil && synced.Status != "True" {
			why = fmt.Sprintf(" (KeysSynced %s, %s: %s)", synced.Status, synced.Reason, synced.Message)
		}
		switch {
		case age > failAge:
			out = append(out, checkResult{name, checkFail, fmt.Sprintf("is Ready, but its %s, more than %s%s: a key the issuer has withdrawn since would still be trusted", refreshed, approx(failAge), why),
				"clustertrust cannot refresh the keys (or no replica writes status): " + describe + "; check the network path from clustertrust's pods to the issuer and spec.caBundle"})
		case age > warnAge:
			out = append(out, checkResult{name, checkWarn, fmt.Sprintf("is Ready, but its %s, more than twice the refresh interval %s%s", refreshed, approx(interval), why),
				"refreshes are failing or no replica writes status: " + describe + "; check the network path from clustertrust's pods to the issuer (if --key-refresh-interval is not " + approx(interval) + ", pass it here)"})
		case why != "":
			out = append(out, checkResult{name, checkWarn, "is Ready with " + keys + ", but the last refresh failed" + why + "; it serves the last good keys", describe})
		default:
			out = append(out, checkResult{name, checkOK, fmt.Sprintf("Ready with %s, last refreshed %s ago", keys, approx(age)), ""})
		}
	}
	return out
}

func readyFix(o *v1alpha1.OpenIDConnect, reason, describe string) string {
	switch reason {
	case v1alpha1.ReasonInvalidSpec:
		return "fix the spec as the message says: " + describe
	case v1alpha1.ReasonDiscoveryFailed:
		return fmt.Sprintf("clustertrust cannot fetch %s: check the URL, the network path from clustertrust's pods and spec.caBundle; %s", discoveryURL(o), describe)
	case v1alpha1.ReasonNoKeys:
		return "the issuer has published no usable keys yet (or the first fetch is pending): " + describe
	case v1alpha1.ReasonConflict:
		return "an older object has the same issuer and overlapping audiences but maps usernames differently: make the mappings equal, or the audiences disjoint; " + describe
	}
	return describe
}

func discoveryURL(o *v1alpha1.OpenIDConnect) string {
	if o.Spec.DiscoveryURL != "" {
		return o.Spec.DiscoveryURL
	}
	return strings.TrimSuffix(o.Spec.IssuerURL, "/") + "/.well-known/openid-configuration"
}

// --- clocks -----------------------------------------------------------------------------------------

func (d *doctor) checkClocks(ctx context.Context, objs []v1alpha1.OpenIDConnect) []checkResult {
	if d.objects == nil {
		return []checkResult{{"clock", checkSkip, "skipped: no --kubeconfig, so no issuers to compare clocks with", ""}}
	}
	var out []checkResult
	seen := map[string]bool{}
	for i := range objs {
		o := &objs[i]
		if o.Spec.JWKS != nil || o.Spec.IssuerURL == "" {
			continue // static keys: no network, and no issuer to ask
		}
		u := discoveryURL(o)
		key := u + "\x00" + string(o.Spec.CABundle)
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, d.checkClock(ctx, o.Spec.IssuerURL, u, o.Spec.CABundle))
	}
	if len(out) == 0 {
		return []checkResult{{"clock", checkSkip, "skipped: no OpenIDConnect fetches keys from an issuer", ""}}
	}
	return out
}

// checkClock compares this machine's clock with the Date header of the issuer's discovery document.
func (d *doctor) checkClock(ctx context.Context, issuer, discovery string, caBundle []byte) checkResult {
	name := "clock/" + issuer
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	// The webhook's own client for the issuer (its TLS, its CA bundle, no proxy), so the clock is read
	// the way clustertrust reaches the issuer.
	c, err := authn.NewHTTPClient(caBundle)
	if err != nil {
		return checkResult{name, checkWarn, "could not compare clocks: spec.caBundle holds no PEM certificate", "put the issuer's PEM CA into spec.caBundle"}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, discovery, nil)
	if err != nil {
		return checkResult{name, checkWarn, fmt.Sprintf("could not compare clocks: %v", err), ""}
	}
	sent := time.Now()
	resp, err := c.Do(req)
	received := time.Now()
	if err != nil {
		return checkResult{name, checkWarn, fmt.Sprintf("could not reach %s from here to compare clocks: %v", discovery, err),
			"the object's Ready and KeysSynced conditions say whether clustertrust itself reaches it; from here, check the network path and spec.caBundle"}
	}
	_ = resp.Body.Close()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return checkResult{name, checkWarn, fmt.Sprintf("could not compare clocks: %s sent no usable Date header", discovery), ""}
	}
	skew, uncertainty := clockSkew(sent, received, date)
	return judgeSkew(name, issuer, skew, uncertainty, d.opts.MaxClockSkew)
}

// clockSkew is how far this machine's clock is ahead of the server's (negative: behind), from a
// request sent and answered at the given local times and the answer's Date header, which has whole
// seconds; and the measurement's uncertainty.
func clockSkew(sent, received, date time.Time) (skew, uncertainty time.Duration) {
	rtt := received.Sub(sent)
	local := sent.Add(rtt / 2)
	remote := date.Add(500 * time.Millisecond) // the Date header truncates to the second
	return local.Sub(remote), rtt/2 + 500*time.Millisecond
}

func judgeSkew(name, issuer string, skew, uncertainty, maxSkew time.Duration) checkResult {
	abs := skew.Abs()
	pm := "±" + approx(uncertainty)
	if abs-uncertainty <= maxSkew {
		dir := "ahead"
		if skew < 0 {
			dir = "behind"
		}
		return checkResult{name, checkOK, fmt.Sprintf("this machine's clock is within %s of %s's (%s %s, %s)", approx(maxSkew), issuer, approx(abs), dir, pm), ""}
	}
	fix := "sync this machine's clock (NTP, chrony), or the issuer's if it is the wrong one: clustertrust checks exp and nbf with the clock of the nodes it runs on, so run doctor there to measure theirs"
	if skew > 0 {
		return checkResult{name, checkFail, fmt.Sprintf("this machine's clock is %s ahead of %s's (%s): its tokens will look expired that much early (exp has no leeway)", approx(abs), issuer, pm), fix}
	}
	return checkResult{name, checkFail, fmt.Sprintf("this machine's clock is %s behind %s's (%s): its fresh tokens will look not yet valid (nbf has 1m of leeway)", approx(abs), issuer, pm), fix}
}

// --- token ------------------------------------------------------------------------------------------

func (d *doctor) checkToken(ctx context.Context) checkResult {
	const name = "token"
	explainCmd := "webhook explain --token-file " + d.opts.TokenFile
	if d.opts.Kubeconfig != "" {
		explainCmd += " --kubeconfig " + d.opts.Kubeconfig
	}
	explain := "`" + explainCmd + "` shows the verification step by step"
	token, err := d.readToken()
	if err != nil {
		return checkResult{name, checkFail, err.Error(), "--token-file is a file holding the token alone, or - for stdin"}
	}
	if d.target == nil || d.blocked != "" {
		return checkResult{name, checkSkip, "skipped: " + d.blocked, explain + ", without the webhook"}
	}
	a := d.postReview(ctx, token)
	if a.err != nil {
		return checkResult{name, checkFail, fmt.Sprintf("POST %s failed: %v", d.target.server, a.err), "see the tokenreview check"}
	}
	if a.code != http.StatusOK {
		return checkResult{name, checkFail, fmt.Sprintf("the review of the token got HTTP %d: %s", a.code, quoteBody(a.body)), "see the tokenreview check; " + explain}
	}
	var tr authenticationv1.TokenReview
	if err := json.Unmarshal(a.body, &tr); err != nil {
		return checkResult{name, checkFail, "the review of the token got an answer that is not a TokenReview: " + quoteBody(a.body), "see the tokenreview check"}
	}
	if !tr.Status.Authenticated {
		return checkResult{name, checkFail, "clustertrust refused the token: " + redact(tr.Status.Error, token), explain}
	}
	u := tr.Status.User
	msg := fmt.Sprintf("authenticated as %q", u.Username)
	if len(u.Groups) > 0 {
		msg += fmt.Sprintf(", groups %q", u.Groups)
	}
	if len(tr.Status.Audiences) > 0 {
		msg += fmt.Sprintf(", audiences %q", tr.Status.Audiences)
	}
	return checkResult{name, checkOK, redact(msg, token), ""}
}

// readToken reads --token-file, or stdin for "-".
func (d *doctor) readToken() (string, error) {
	stdin := d.stdin
	if d.opts.TokenFile == "-" && stdin == nil {
		return "", errors.New("--token-file -: no stdin")
	}
	// The reading of `webhook explain`, so the two agree on what the file holds.
	token, err := readToken(stdin, d.opts.TokenFile)
	if err != nil {
		return "", err
	}
	if token == "" {
		return "", fmt.Errorf("--token-file %s is empty", d.opts.TokenFile)
	}
	return token, nil
}

// --- output and helpers -----------------------------------------------------------------------------

func writeResults(w io.Writer, format string, results []checkResult) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	var b strings.Builder
	for _, r := range results {
		fmt.Fprintf(&b, "%-6s%s: %s\n", r.Status, r.Name, r.Message)
		if r.Fix != "" && (r.Status == checkWarn || r.Status == checkFail) {
			fmt.Fprintf(&b, "      fix: %s\n", r.Fix)
		}
	}
	fmt.Fprintf(&b, "%d ok, %d warn, %d fail, %d skipped\n", countStatus(results, checkOK), countStatus(results, checkWarn), countStatus(results, checkFail), countStatus(results, checkSkip))
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func countStatus(results []checkResult, status string) int {
	n := 0
	for _, r := range results {
		if r.Status == status {
			n++
		}
	}
	return n
}

func metaTokenReview() metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: authenticationv1.SchemeGroupVersion.String(), Kind: "TokenReview"}
}

func parseCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return "CN=" + c.Subject.CommonName
	}
	return "with subject " + c.Subject.String()
}

func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return "CN=" + c.Issuer.CommonName
	}
	return c.Issuer.String()
}

func joinNames(certs []*x509.Certificate) string {
	names := make([]string, 0, len(certs))
	for _, c := range certs {
		names = append(names, certName(c))
	}
	return strings.Join(names, ", ")
}

// sanList names a certificate's subject alternative names.
func sanList(c *x509.Certificate) []string {
	var out []string
	for _, n := range c.DNSNames {
		out = append(out, "DNS:"+n)
	}
	for _, ip := range c.IPAddresses {
		out = append(out, "IP:"+ip.String())
	}
	return out
}

func quoteKeys[V any](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, fmt.Sprintf("%q", k))
	}
	slices.Sort(keys)
	if len(keys) == 0 {
		return "(none defined)"
	}
	return strings.Join(keys, ", ")
}

// quoteBody quotes the start of an answer's body.
func quoteBody(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > maxBodyShown {
		s = s[:maxBodyShown] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// redact puts the token's short hash (authn.TokenHash, as in the webhook's logs) in place of the token
// wherever s holds it, should anything ever echo it.
func redact(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(s, token, "<token "+authn.TokenHash(token)+">")
}

// approx is a duration for people: seconds below a minute, whole units above.
func approx(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < 48*time.Hour:
		d = d.Round(time.Second)
		s := d.String()
		if d%time.Minute == 0 {
			s = strings.TrimSuffix(s, "0s") // 5m0s
		}
		if d%time.Hour == 0 {
			s = strings.TrimSuffix(s, "0m") // 1h0m
		}
		return s
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
