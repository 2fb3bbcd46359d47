package app

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/federation"
)

func newTrustCommand() *cobra.Command {
	var (
		upstreamKubeconfig, issuerURL, issuerCAFile, kubeconfig string
		apply                                                   bool
		wait                                                    time.Duration
		o                                                       federation.TrustOptions
	)
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Print (or apply) the OpenIDConnect object that trusts an upstream cluster or issuer",
		Long: `trust reads an upstream's discovery document and keys — through its API server with the upstream
kubeconfig's credentials, so a private cluster works too — and prints a ready OpenIDConnect manifest for
the downstream. It chooses how clustertrust will get the keys, and says why in comments at the top:

  issuer        the issuer URL serves discovery and keys without credentials (caBundle is set when its
                certificate is signed by the upstream kubeconfig's CA rather than a public one)
  discoveryURL  the issuer URL is not readable, but the upstream API server serves its discovery
                anonymously: clustertrust fetches from there
  static        nothing is readable without credentials (or --static): the current keys are copied
                into spec.jwks; keep them current with 'webhook sync-keys'

Reachability is probed from where trust runs; run it where clustertrust's network view is the same, or
pass --static. With --apply the object (and with --sync-keys-identity, the RBAC for sync-keys) is
created or updated on the downstream of --kubeconfig, and trust waits until the object is Ready.`,
		Example: `  # Trust cluster "hub" for tokens minted for this cluster's address, and apply it here:
  webhook trust --upstream-kubeconfig hub.kubeconfig --name hub \
    --audience https://prod.example.com:6443 --apply

  # A private upstream: copy its keys, and let its sync-keys Deployment keep them current:
  webhook trust --upstream-kubeconfig hub.kubeconfig --name hub --static \
    --sync-keys-identity clustertrust-system/sync-keys --apply

  # Any OIDC issuer:
  webhook trust --issuer-url https://token.actions.githubusercontent.com --name gha --audience prod`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if (upstreamKubeconfig == "") == (issuerURL == "") {
				return errors.New("give exactly one of --upstream-kubeconfig and --issuer-url")
			}
			up, err := upstreamFrom(upstreamKubeconfig, issuerURL, issuerCAFile)
			if err != nil {
				return err
			}
			var downstream *rest.Config
			if apply || o.Audience == "" {
				if downstream, err = loadRESTConfig(kubeconfig); err != nil {
					return fmt.Errorf("the downstream (--kubeconfig): %w", err)
				}
			}
			if o.Audience == "" {
				o.Audience = strings.TrimSuffix(downstream.Host, "/")
				_, _ = fmt.Fprintf(cmd.ErrOrStderr(), "audience: %s (the downstream API server of --kubeconfig; set --audience if clients address it differently)\n", o.Audience)
			}
			plan, err := federation.PlanTrust(ctx, up, o)
			if err != nil {
				return err
			}
			out, err := plan.Render()
			if err != nil {
				return err
			}
			if !apply {
				_, err = cmd.OutOrStdout().Write(out)
				return err
			}
			_, _ = cmd.ErrOrStderr().Write(out)
			return applyPlan(ctx, downstream, plan, wait, cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&upstreamKubeconfig, "upstream-kubeconfig", "", "Kubeconfig of the upstream cluster; its API server is read with these credentials.")
	fs.StringVar(&issuerURL, "issuer-url", "", "An OIDC issuer URL to trust instead of a cluster.")
	fs.StringVar(&issuerCAFile, "issuer-ca-file", "", "With --issuer-url: PEM CA to trust for it (default: system roots).")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Kubeconfig of the downstream cluster (default: in-cluster, then $KUBECONFIG).")
	fs.StringVar(&o.Name, "name", "", "Name of the OpenIDConnect object; the default username and groups prefix is \"<name>:\".")
	fs.StringVar(&o.Audience, "audience", "", "Audience the upstream's tokens carry for the downstream (default: the downstream API server URL of --kubeconfig).")
	fs.StringVar(&o.Prefix, "prefix", "", "Username and groups prefix (default \"<name>:\"; \"-\" for none; never \"system:\").")
	fs.BoolVar(&o.Static, "static", false, "Copy the upstream's current keys into the object instead of letting clustertrust fetch them.")
	fs.StringVar(&o.SyncIdentity, "sync-keys-identity", "", "namespace/name of the upstream ServiceAccount running sync-keys: adds RBAC letting it get and patch this object only.")
	fs.BoolVar(&apply, "apply", false, "Create or update the object on the downstream and wait until it is Ready.")
	fs.DurationVar(&wait, "wait", time.Minute, "With --apply: how long to wait for Ready.")
	return cmd
}

func upstreamFrom(kubeconfig, issuerURL, caFile string) (*federation.Upstream, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("could not load --upstream-kubeconfig: %w", err)
		}
		cfg.Timeout = 15 * time.Second
		return federation.NewKubernetesUpstream(cfg)
	}
	u, err := url.Parse(issuerURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--issuer-url %q is not an https URL", issuerURL)
	}
	up := &federation.Upstream{IssuerURL: strings.TrimSuffix(issuerURL, "/")}
	if caFile != "" {
		if up.IssuerCAPEM, err = os.ReadFile(caFile); err != nil { //nolint:gosec // G304: the file the operator named
			return nil, fmt.Errorf("could not read --issuer-ca-file: %w", err)
		}
	}
	return up, nil
}

// applyPlan creates or updates the plan's objects on the downstream and waits for the OpenIDConnect to
// be Ready, printing why it is not while it waits.
func applyPlan(ctx context.Context, cfg *rest.Config, plan *federation.Plan, wait time.Duration, out io.Writer) error {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("could not create a client for the downstream: %w", err)
	}
	objs := append([]client.Object{plan.Object}, plan.RBAC...)
	for _, obj := range objs {
		if err := createOrUpdate(ctx, c, obj); err != nil {
			return err
		}
		_, _ = fmt.Fprintf(out, "%s/%s applied\n", strings.ToLower(obj.GetObjectKind().GroupVersionKind().Kind), obj.GetName())
	}
	name := plan.Object.Name
	deadline := time.Now().Add(wait)
	last := ""
	for {
		var obj v1alpha1.OpenIDConnect
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &obj); err != nil {
			return err
		}
		ready := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
		if ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == obj.Generation {
			_, _ = fmt.Fprintf(out, "openidconnect/%s is Ready: %s; example user %s\n", name, ready.Message, obj.Status.ExampleUsername)
			return nil
		}
		if ready != nil {
			last = ready.Reason + ": " + ready.Message
		} else {
			last = "no status yet: is clustertrust running on the downstream?"
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("openidconnect/%s is not Ready after %s (%s)", name, wait, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func createOrUpdate(ctx context.Context, c client.Client, obj client.Object) error {
	gvk := obj.GetObjectKind().GroupVersionKind()
	existing := obj.DeepCopyObject().(client.Object)
	err := c.Get(ctx, client.ObjectKeyFromObject(obj), existing)
	switch {
	case apierrors.IsNotFound(err):
		err = c.Create(ctx, obj)
	case err == nil:
		obj.SetResourceVersion(existing.GetResourceVersion())
		err = c.Update(ctx, obj)
	}
	if err != nil {
		return fmt.Errorf("could not apply %s %q: %w", gvk.Kind, obj.GetName(), err)
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk) // the client clears it
	return nil
}

func newAPIServerConfigCommand() *cobra.Command {
	var (
		server, caFile, clientCertFile, clientKeyFile, output, configPath string
		service, caSecret, kubeconfig, tlsServerName                      string
		cacheTTL                                                          time.Duration
		kubeadm                                                           bool
	)
	cmd := &cobra.Command{
		Use:   "apiserver-config",
		Short: "Print the webhook kubeconfig and the flags kube-apiserver needs to call clustertrust",
		Long: `apiserver-config renders the file that kube-apiserver's --authentication-token-webhook-config-file
points at: clustertrust's /authenticate URL and the CA of its serving certificate, and optionally a
client certificate kube-apiserver presents (for clustertrust's --client-ca-file). Without --output the
file goes to stdout with the flags as comments at its top; with --output it is written there and the
flags are printed. --kubeadm adds the ClusterConfiguration patch for a kubeadm-style static pod.

For clustertrust installed by the Helm chart or config/default, --service and --ca-secret read the
address and the CA from the cluster of --kubeconfig: the Service's cluster IP and https port (give the
Service a fixed clusterIP, which the serving certificate names, since kube-apiserver does not use
cluster DNS) and the Secret's ca.crt (cert-manager's serving Secret holds it).`,
		Example: `  webhook apiserver-config --server https://127.0.0.1:9443/authenticate --ca-file ca.crt \
    --client-cert-file apiserver-client.crt --client-key-file apiserver-client.key \
    --output /etc/kubernetes/clustertrust/webhook-kubeconfig.yaml --kubeadm

  # clustertrust installed with the Helm chart and cert-manager
  webhook apiserver-config --kubeconfig ~/.kube/config \
    --service clustertrust-system/clustertrust --ca-secret clustertrust-system/clustertrust-serving-cert`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (server == "") == (service == "") {
				return errors.New("give exactly one of --server (an https URL) and --service (namespace/name of the chart's Service)")
			}
			if (caFile == "") == (caSecret == "") {
				return errors.New("give exactly one of --ca-file and --ca-secret (namespace/name of a Secret with ca.crt)")
			}
			var ca []byte
			if service != "" || caSecret != "" {
				found, err := fromCluster(cmd.Context(), kubeconfig, service, caSecret)
				if err != nil {
					return err
				}
				if service != "" {
					server = found.server
					if tlsServerName == "" {
						tlsServerName = found.serverName
					}
				}
				ca = found.ca
				for _, w := range found.warnings {
					_, _ = fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
				}
			}
			u, err := url.Parse(server)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				return fmt.Errorf("--server %q must be clustertrust's https URL, such as https://127.0.0.1:9443/authenticate", server)
			}
			if u.Path == "" || u.Path == "/" {
				u.Path = "/authenticate"
			}
			if (clientCertFile == "") != (clientKeyFile == "") {
				return errors.New("--client-cert-file and --client-key-file go together")
			}
			if cacheTTL < 0 {
				return errors.New("--cache-ttl must not be negative")
			}
			if caFile != "" {
				if ca, err = readPEM("--ca-file", caFile); err != nil {
					return err
				}
			}
			var cert, key []byte
			if clientCertFile != "" {
				if cert, err = readPEM("--client-cert-file", clientCertFile); err != nil {
					return err
				}
				if key, err = readPEM("--client-key-file", clientKeyFile); err != nil {
					return err
				}
			}
			kc, err := webhookKubeconfig(u.String(), tlsServerName, ca, cert, key)
			if err != nil {
				return err
			}
			if configPath == "" {
				configPath = output
			}
			if configPath == "" {
				configPath = "/etc/kubernetes/clustertrust/webhook-kubeconfig.yaml"
			}
			flags := []string{
				"--authentication-token-webhook-config-file=" + configPath,
				"--authentication-token-webhook-version=v1",
				"--authentication-token-webhook-cache-ttl=" + cacheTTL.String(),
			}
			w := cmd.OutOrStdout()
			if output == "" {
				_, _ = fmt.Fprintln(w, "# Add to kube-apiserver, with this file at "+configPath+":")
				for _, f := range flags {
					_, _ = fmt.Fprintln(w, "#   "+f)
				}
				_, err = w.Write(kc)
			} else {
				if err := os.WriteFile(output, kc, 0o600); err != nil {
					return err
				}
				_, _ = fmt.Fprintf(w, "wrote %s; add to kube-apiserver:\n", output)
				for _, f := range flags {
					_, _ = fmt.Fprintln(w, "  "+f)
				}
			}
			if err == nil && kubeadm {
				err = writeKubeadmPatch(w, configPath, flags)
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&server, "server", "", "clustertrust's /authenticate URL as kube-apiserver reaches it (no cluster DNS: a node-local port, a load balancer or a fixed IP).")
	fs.StringVar(&caFile, "ca-file", "", "PEM CA of clustertrust's serving certificate.")
	fs.StringVar(&clientCertFile, "client-cert-file", "", "PEM client certificate kube-apiserver presents to clustertrust (optional, for mTLS).")
	fs.StringVar(&clientKeyFile, "client-key-file", "", "PEM key of --client-cert-file.")
	fs.StringVar(&output, "output", "", "Write the kubeconfig to this file instead of stdout.")
	fs.StringVar(&configPath, "config-path", "", "Where kube-apiserver reads the file (default: --output, else /etc/kubernetes/clustertrust/webhook-kubeconfig.yaml).")
	fs.DurationVar(&cacheTTL, "cache-ttl", 10*time.Second, "kube-apiserver's --authentication-token-webhook-cache-ttl (10–30s recommended).")
	fs.BoolVar(&kubeadm, "kubeadm", false, "Also print a kubeadm ClusterConfiguration patch (extraArgs and the volume mount).")
	fs.StringVar(&service, "service", "", "Instead of --server: namespace/name of clustertrust's Service, whose cluster IP and https port kube-apiserver dials.")
	fs.StringVar(&caSecret, "ca-secret", "", "Instead of --ca-file: namespace/name of a Secret whose ca.crt is the CA of the serving certificate.")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "With --service or --ca-secret: kubeconfig of the cluster that holds them (default: in-cluster config, then $KUBECONFIG).")
	fs.StringVar(&tlsServerName, "tls-server-name", "", "Name kube-apiserver verifies the serving certificate against, when it is not --server's host (with --service and --ca-secret it is chosen from the certificate).")
	return cmd
}

// clusterWiring is what --service and --ca-secret read: the Service's address, the name its serving
// certificate is verified against when it does not name that address, and the Secret's CA.
type clusterWiring struct {
	server, serverName string
	ca                 []byte
	warnings           []string
}

func fromCluster(ctx context.Context, kubeconfig, service, caSecret string) (clusterWiring, error) {
	var w clusterWiring
	cfg, err := loadRESTConfig(kubeconfig)
	if err != nil {
		return w, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return w, fmt.Errorf("could not create an API client: %w", err)
	}
	if service != "" {
		ns, name, ok := strings.Cut(service, "/")
		if !ok || ns == "" || name == "" {
			return w, fmt.Errorf("--service %q must be namespace/name", service)
		}
		svc, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return w, fmt.Errorf("could not read --service %s: %w", service, err)
		}
		ip := svc.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone {
			return w, fmt.Errorf("Service %s has no cluster IP kube-apiserver could dial: give it one (the chart's service.clusterIP) or use --server", service) //nolint:staticcheck // ST1005: starts with a kind name
		}
		port := int32(0)
		for _, p := range svc.Spec.Ports {
			if p.Name == "https" || len(svc.Spec.Ports) == 1 {
				port = p.Port
			}
		}
		if port == 0 {
			return w, fmt.Errorf("Service %s has no port named https", service) //nolint:staticcheck // ST1005: starts with a kind name
		}
		w.server = "https://" + net.JoinHostPort(ip, strconv.Itoa(int(port))) + "/authenticate"
		w.serverName = svc.Name + "." + svc.Namespace + ".svc" // what the chart's certificates name
	}
	if caSecret != "" {
		ns, name, ok := strings.Cut(caSecret, "/")
		if !ok || ns == "" || name == "" {
			return w, fmt.Errorf("--ca-secret %q must be namespace/name", caSecret)
		}
		sec, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return w, fmt.Errorf("could not read --ca-secret %s: %w", caSecret, err)
		}
		w.ca = sec.Data["ca.crt"]
		if !strings.Contains(string(w.ca), "-----BEGIN ") {
			return w, fmt.Errorf("Secret %s has no PEM ca.crt (cert-manager writes one for CA and self-signed issuers; otherwise use --ca-file)", caSecret) //nolint:staticcheck // ST1005: starts with a kind name
		}
		if service != "" {
			if err := w.chooseServerName(sec.Data["tls.crt"], caSecret); err != nil {
				return w, err
			}
		}
	} else if service != "" {
		w.warnings = append(w.warnings, fmt.Sprintf("the serving certificate was not read (--ca-file): kube-apiserver will verify it against %s; it must name that, or pass --tls-server-name", w.serverName))
	}
	return w, nil
}

// chooseServerName picks what kube-apiserver verifies the serving certificate in tlsCrt against: the
// Service's cluster IP when the certificate names it (no tls-server-name), else the Service's DNS name
// when it names that; a certificate that names neither could never be verified, so that is an error.
func (w *clusterWiring) chooseServerName(tlsCrt []byte, secret string) error {
	block, _ := pem.Decode(tlsCrt)
	if block == nil {
		w.warnings = append(w.warnings, fmt.Sprintf("Secret %s holds no tls.crt to check: kube-apiserver will verify the serving certificate against %s", secret, w.serverName))
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("the tls.crt of Secret %s does not parse: %w", secret, err)
	}
	u, _ := url.Parse(w.server)
	if cert.VerifyHostname(u.Hostname()) == nil {
		w.serverName = ""
		return nil
	}
	if cert.VerifyHostname(w.serverName) == nil {
		return nil
	}
	return fmt.Errorf("the serving certificate in Secret %s names neither the Service's cluster IP %s nor %s, so kube-apiserver could not verify it: add one of them to the certificate (the chart's service.clusterIP or tls.certManager.ipAddresses)", secret, u.Hostname(), w.serverName)
}

func readPEM(flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path) //nolint:gosec // G304: the file the operator named
	if err != nil {
		return nil, fmt.Errorf("could not read %s: %w", flag, err)
	}
	if !strings.Contains(string(b), "-----BEGIN ") {
		return nil, fmt.Errorf("%s %s holds no PEM block", flag, path)
	}
	return b, nil
}

func writeKubeadmPatch(w io.Writer, configPath string, flags []string) error {
	dir := configPath[:strings.LastIndex(configPath, "/")+1]
	if dir == "" {
		dir = "."
	}
	var b strings.Builder
	b.WriteString("---\n# kubeadm: merge into your ClusterConfiguration (kubeadm.k8s.io/v1beta4), then `kubeadm upgrade apply` or re-init.\n")
	b.WriteString("apiServer:\n  extraArgs:\n")
	for _, f := range flags {
		name, value, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		fmt.Fprintf(&b, "  - name: %s\n    value: %q\n", name, value)
	}
	fmt.Fprintf(&b, "  extraVolumes:\n  - name: clustertrust\n    hostPath: %s\n    mountPath: %s\n    readOnly: true\n    pathType: DirectoryOrCreate\n", dir, dir)
	_, err := io.WriteString(w, b.String())
	return err
}

func newPublishDiscoveryCommand() *cobra.Command {
	var upstreamKubeconfig, publicURL, dir string
	cmd := &cobra.Command{
		Use:   "publish-discovery",
		Short: "Write an upstream's discovery document and JWKS for static hosting at a public URL",
		Long: `publish-discovery reads the upstream's discovery document and JWKS through its API server (with the
kubeconfig's credentials) and writes them under --dir as
  .well-known/openid-configuration   (issuer and jwks_uri rewritten to --public-url)
  openid/v1/jwks
ready to upload to a static host (a bucket, a CDN, GitHub Pages) at --public-url. A private cluster can
then be trusted by anything that needs a public issuer, cloud IAM included. It prints the kube-apiserver
flags the upstream needs so that its tokens name the public issuer. Re-run it after every key rotation
(or let sync-keys keep static keys current instead).`,
		Example: `  webhook publish-discovery --upstream-kubeconfig hub.kubeconfig \
    --public-url https://oidc.example.com/hub --dir ./public`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			up, err := upstreamFrom(upstreamKubeconfig, "", "")
			if err != nil {
				return err
			}
			p, err := federation.PublishDiscovery(cmd.Context(), up, publicURL, dir)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, f := range p.Files {
				_, _ = fmt.Fprintf(w, "wrote %s\n", f)
			}
			_, _ = fmt.Fprintf(w, "Upload %s so that %s%s and %s are served over https.\n", dir, p.Issuer, federation.DiscoveryPath, p.JWKSURI)
			if p.CurrentIssuer == p.Issuer {
				_, _ = fmt.Fprintln(w, "The upstream already uses this issuer; its kube-apiserver needs:")
			} else {
				_, _ = fmt.Fprintf(w, "The upstream's tokens name %s today; set on its kube-apiserver:\n", p.CurrentIssuer)
			}
			for _, f := range p.Flags {
				_, _ = fmt.Fprintln(w, "  "+f)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&upstreamKubeconfig, "upstream-kubeconfig", "", "Kubeconfig of the upstream cluster.")
	fs.StringVar(&publicURL, "public-url", "", "https URL the files will be served at; becomes the issuer.")
	fs.StringVar(&dir, "dir", "", "Directory to write the files into.")
	for _, f := range []string{"upstream-kubeconfig", "public-url", "dir"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newSyncKeysCommand() *cobra.Command {
	var (
		upstreamKubeconfig, server, caFile, tokenFile, name string
		interval                                            time.Duration
		once                                                bool
		logLevel                                            int
	)
	cmd := &cobra.Command{
		Use:   "sync-keys",
		Short: "Keep a downstream OpenIDConnect's static keys equal to this upstream's current JWKS",
		Long: `sync-keys runs in the upstream cluster (config/sync-keys). Every --interval it reads the upstream's
JWKS from its own API server and, when it differs, patches spec.jwks.keys of the OpenIDConnect --name on
the downstream. It authenticates to the downstream with its own projected ServiceAccount token
(--token-file), which the downstream's clustertrust verifies with the very keys sync-keys maintains, and
which RBAC there allows to get and patch that one object (webhook trust --sync-keys-identity).

Bootstrap: (1) on the downstream, 'webhook trust --static --sync-keys-identity NS/NAME --apply'; (2) in
the upstream, deploy sync-keys. Keys then follow rotations with no human. If sync-keys is down when the
upstream rotates, it catches up with its current token as long as the downstream still knows the key
that signed it; a rotation that drops the old key while sync-keys is down locks it out: re-run step 1.`,
		Example: `  webhook sync-keys --downstream-server https://prod.example.com:6443 --downstream-ca-file /etc/downstream/ca.crt \
    --token-file /var/run/secrets/clustertrust/token --name hub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < time.Second {
				return fmt.Errorf("--interval %s is shorter than 1s", interval)
			}
			if _, err := os.Stat(tokenFile); err != nil {
				return fmt.Errorf("could not read --token-file: %w", err)
			}
			var upCfg *rest.Config
			var err error
			if upstreamKubeconfig != "" {
				upCfg, err = clientcmd.BuildConfigFromFlags("", upstreamKubeconfig)
			} else {
				upCfg, err = rest.InClusterConfig()
			}
			if err != nil {
				return fmt.Errorf("could not load the upstream's config (--upstream-kubeconfig, or in-cluster): %w", err)
			}
			upCfg.Timeout = 15 * time.Second
			up, err := federation.NewKubernetesUpstream(upCfg)
			if err != nil {
				return err
			}
			downCfg := &rest.Config{
				Host: server, BearerTokenFile: tokenFile, Timeout: 15 * time.Second, UserAgent: "clustertrust-sync-keys",
				TLSClientConfig: rest.TLSClientConfig{CAFile: caFile},
			}
			dc, err := dynamic.NewForConfig(downCfg)
			if err != nil {
				return fmt.Errorf("could not create a client for the downstream: %w", err)
			}
			s := &federation.KeySyncer{
				Upstream: up, Downstream: dc.Resource(federation.OpenIDConnects), Name: name,
				Log: newLogger(cmd.ErrOrStderr(), logLevel, false).WithName("sync-keys"),
			}
			if once {
				changed, err := s.SyncOnce(cmd.Context())
				if err == nil && !changed {
					_, _ = fmt.Fprintf(cmd.OutOrStdout(), "openidconnect/%s already has the upstream's keys\n", name)
				}
				return err
			}
			return s.Run(cmd.Context(), interval)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&upstreamKubeconfig, "upstream-kubeconfig", "", "Kubeconfig of the upstream (default: in-cluster).")
	fs.StringVar(&server, "downstream-server", "", "URL of the downstream API server.")
	fs.StringVar(&caFile, "downstream-ca-file", "", "PEM CA of the downstream API server (default: system roots).")
	fs.StringVar(&tokenFile, "token-file", "/var/run/secrets/clustertrust/token", "Projected ServiceAccount token for the downstream's audience; re-read for every request.")
	fs.StringVar(&name, "name", "", "Name of the OpenIDConnect object on the downstream.")
	fs.DurationVar(&interval, "interval", 30*time.Second, "How often to compare keys. Keep it well below the token's refresh time so a rotation is pushed with a token the downstream still accepts.")
	fs.BoolVar(&once, "once", false, "Sync once and exit (for a CronJob or a test).")
	fs.IntVarP(&logLevel, "v", "v", 0, "Log verbosity.")
	for _, f := range []string{"downstream-server", "name"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}
