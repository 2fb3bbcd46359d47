// Command devcluster runs local control planes for the demo and the e2e suite: an upstream cluster that
// issues ServiceAccount tokens, a downstream cluster whose kube-apiserver authenticates them through
// clustertrust, and an untrusted third cluster. Each is a real etcd and kube-apiserver process on
// 127.0.0.1 (no container engine needed). Use it through hack/clusters.sh.
//
//	devcluster up | down | env | status | stop CLUSTER | start CLUSTER | rotate-key CLUSTER
//	devcluster certs DIR   (a webhook CA, a serving certificate for 127.0.0.1 and webhook.kubeconfig)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/clustertrust/clustertrust/cmd/webhook/app"
	"github.com/clustertrust/clustertrust/internal/pki"
)

// Cluster names, with the base ports of their kube-apiserver and etcd (CLUSTERS_PORT_OFFSET is added).
var clusterPorts = []struct {
	name           string
	port, etcdPort int
}{
	{"upstream", 16443, 12379},
	{"downstream", 26443, 22379},
	{"third", 36443, 32379},
}

const (
	webhookPort = 19443
	metricsPort = 19080
	probePort   = 19081
)

type options struct {
	stateDir           string
	assets             string
	webhookBin         string
	crdDir             string
	webhookCacheTTL    string
	keyRefreshInterval string
	offset             int
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "devcluster: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("devcluster", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.stateDir, "state-dir", ".clusters", "Directory for certificates, data, logs and state.json.")
	fs.StringVar(&o.assets, "assets", os.Getenv("KUBEBUILDER_ASSETS"), "Directory holding kube-apiserver and etcd.")
	fs.StringVar(&o.webhookBin, "webhook", "bin/webhook", "The clustertrust webhook binary.")
	fs.StringVar(&o.crdDir, "crds", "config/crd/bases", "Directory of the CRDs to install into the downstream cluster.")
	fs.StringVar(&o.webhookCacheTTL, "webhook-cache-ttl", envOr("WEBHOOK_CACHE_TTL", "0s"), "Downstream --authentication-token-webhook-cache-ttl.")
	fs.StringVar(&o.keyRefreshInterval, "key-refresh-interval", envOr("KEY_REFRESH_INTERVAL", "10s"), "clustertrust --key-refresh-interval.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if v := os.Getenv("CLUSTERS_PORT_OFFSET"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("CLUSTERS_PORT_OFFSET=%q is not a number", v)
		}
		o.offset = n
	}
	dir, err := filepath.Abs(o.stateDir)
	if err != nil {
		return err
	}
	o.stateDir = dir
	rest := fs.Args()
	if len(rest) == 0 {
		return errors.New("usage: devcluster [flags] up|down|env|status|stop CLUSTER|start CLUSTER|rotate-key CLUSTER|apiserver-log CLUSTER")
	}
	switch cmd := rest[0]; cmd {
	case "up":
		return up(ctx, o, stdout)
	case "down":
		return down(o, stdout)
	case "env":
		s, err := loadState(o.stateDir)
		if err != nil {
			return err
		}
		printEnv(s, stdout)
		return nil
	case "status":
		return status(o, stdout)
	case "certs":
		if len(rest) != 2 {
			return errors.New("usage: devcluster certs DIR")
		}
		url := "https://127.0.0.1:" + strconv.Itoa(webhookPort+o.offset) + "/authenticate"
		if _, _, _, err := writeWebhookCerts(rest[1], url); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote webhook-ca.crt, webhook.crt, webhook.key and webhook.kubeconfig (for %s) to %s\n", url, rest[1])
		return nil
	case "stop", "start", "rotate-key":
		if len(rest) != 2 {
			return fmt.Errorf("usage: devcluster %s CLUSTER", cmd)
		}
		return control(o, cmd, rest[1], stdout)
	case "apiserver-log":
		if len(rest) != 2 {
			return errors.New("usage: devcluster apiserver-log CLUSTER")
		}
		return apiserverLog(o, rest[1], stdout)
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func up(ctx context.Context, o options, stdout io.Writer) error {
	if _, err := os.Stat(statePath(o.stateDir)); err == nil {
		return fmt.Errorf("clusters are already up (%s exists): run `hack/clusters.sh down` first", statePath(o.stateDir))
	}
	if o.assets == "" {
		return errors.New("no control-plane binaries: pass --assets or set KUBEBUILDER_ASSETS (hack/build-control-plane.sh prints the directory)")
	}
	etcdBin, apiserverBin := filepath.Join(o.assets, "etcd"), filepath.Join(o.assets, "kube-apiserver")
	webhookBin, err := filepath.Abs(o.webhookBin)
	if err != nil {
		return err
	}
	for _, b := range []string{etcdBin, apiserverBin, webhookBin} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("binary %s is missing: run `make control-plane build` first", b)
		}
	}
	ports := map[int]string{}
	for _, c := range clusterPorts {
		ports[c.port+o.offset] = c.name + " kube-apiserver"
		ports[c.etcdPort+o.offset] = c.name + " etcd"
		ports[c.etcdPort+o.offset+1] = c.name + " etcd peer"
	}
	ports[webhookPort+o.offset] = "clustertrust webhook"
	ports[metricsPort+o.offset] = "clustertrust metrics"
	ports[probePort+o.offset] = "clustertrust probes"
	if err := checkPortsFree(ports); err != nil {
		return err
	}
	if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
		return err
	}
	s := &State{Dir: o.stateDir, Clusters: map[string]*Cluster{}}
	s.WebhookURL = "https://127.0.0.1:" + strconv.Itoa(webhookPort+o.offset) + "/authenticate"
	s.ProbeURL = "http://127.0.0.1:" + strconv.Itoa(probePort+o.offset)
	s.MetricsURL = "http://127.0.0.1:" + strconv.Itoa(metricsPort+o.offset) + "/metrics"
	// Save after every start, so `down` can stop whatever started even if a later step fails.
	fail := func(err error) error {
		_ = s.save()
		return fmt.Errorf("%w (run `hack/clusters.sh down` to clean up)", err)
	}

	webhookCertFile, webhookKeyFile, webhookKubeconfig, err := writeWebhookCerts(s.Dir, s.WebhookURL)
	if err != nil {
		return fail(err)
	}
	s.WebhookCA = filepath.Join(s.Dir, "webhook-ca.crt")
	s.WebhookKubeconfig = webhookKubeconfig
	for _, cp := range clusterPorts {
		c, err := newCluster(o.stateDir, cp.name, cp.port+o.offset, cp.etcdPort+o.offset)
		if err != nil {
			return fail(err)
		}
		s.Clusters[cp.name] = c
		if cp.name == "downstream" {
			c.ExtraArgs = []string{
				"--authentication-token-webhook-config-file", webhookKubeconfig,
				"--authentication-token-webhook-version", "v1",
				"--authentication-token-webhook-cache-ttl", o.webhookCacheTTL,
			}
		}
	}
	for _, cp := range clusterPorts {
		c := s.Clusters[cp.name]
		fmt.Fprintf(stdout, "starting %s etcd on 127.0.0.1:%d\n", c.Name, c.EtcdPort)
		if err := c.startEtcd(etcdBin); err != nil {
			return fail(err)
		}
		_ = s.save()
	}
	for _, cp := range clusterPorts {
		c := s.Clusters[cp.name]
		fmt.Fprintf(stdout, "starting %s kube-apiserver on %s (issuer %s)\n", c.Name, c.Issuer, c.Issuer)
		if err := c.startAPIServer(apiserverBin); err != nil {
			return fail(err)
		}
		_ = s.save()
		if cp.name != "downstream" {
			if err := c.publishDiscovery(ctx); err != nil {
				return fail(err)
			}
		}
	}

	down := s.Clusters["downstream"]
	restCfg, err := clientcmd.BuildConfigFromFlags("", down.Kubeconfig)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintln(stdout, "installing the OpenIDConnect CRD into downstream")
	if _, err := envtest.InstallCRDs(restCfg, envtest.CRDInstallOptions{Paths: []string{o.crdDir}, ErrorIfPathMissing: true}); err != nil {
		return fail(fmt.Errorf("could not install CRDs: %w", err))
	}

	fmt.Fprintf(stdout, "starting clustertrust on %s\n", s.WebhookURL)
	s.Webhook, err = startProcess("clustertrust", webhookBin, []string{
		"serve",
		"--kubeconfig", down.Kubeconfig,
		"--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(webhookPort + o.offset),
		"--tls-cert-file", webhookCertFile,
		"--tls-private-key-file", webhookKeyFile,
		"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(metricsPort+o.offset),
		"--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(probePort+o.offset),
		"--key-refresh-interval", o.keyRefreshInterval,
		"--min-refetch-interval", "1s",
		"--v", "4",
	}, filepath.Join(o.stateDir, "clustertrust.log"))
	if err != nil {
		return fail(err)
	}
	if err := waitUntil(s.Webhook, 60*time.Second, "clustertrust /readyz", func() error { return httpOK(&http.Client{Timeout: 2 * time.Second}, s.ProbeURL+"/readyz") }); err != nil {
		return fail(err)
	}
	if err := s.save(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "clusters are up; state and logs in %s\n", o.stateDir)
	return nil
}

// writeWebhookCerts writes, into dir, clustertrust's CA (webhook-ca.crt), a serving certificate for
// 127.0.0.1 (webhook.crt, webhook.key) and the kubeconfig kube-apiserver uses to call url
// (webhook.kubeconfig).
func writeWebhookCerts(dir, url string) (certFile, keyFile, kubeconfig string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", "", err
	}
	ca, err := pki.NewCA("clustertrust-webhook-ca")
	if err != nil {
		return "", "", "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "webhook-ca.crt"), ca.CertPEM(), 0o644); err != nil { //nolint:gosec // G306: a certificate is public
		return "", "", "", err
	}
	pair, err := ca.Serving("clustertrust", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	if err != nil {
		return "", "", "", err
	}
	if certFile, keyFile, err = pair.Write(dir, "webhook"); err != nil {
		return "", "", "", err
	}
	kc, err := app.WebhookKubeconfig(url, ca.CertPEM(), nil, nil)
	if err != nil {
		return "", "", "", err
	}
	kubeconfig = filepath.Join(dir, "webhook.kubeconfig")
	return certFile, keyFile, kubeconfig, os.WriteFile(kubeconfig, kc, 0o600)
}

func down(o options, stdout io.Writer) error {
	s, err := loadState(o.stateDir)
	if err != nil {
		// Nothing recorded: nothing of ours can be running. Remove a half-written directory, if any.
		_ = os.RemoveAll(o.stateDir)
		fmt.Fprintln(stdout, "no clusters are up")
		return nil
	}
	var procs []*Process
	if s.Webhook != nil {
		procs = append(procs, s.Webhook)
	}
	for _, name := range sortedNames(s) {
		c := s.Clusters[name]
		procs = append(procs, c.APIServer, c.Etcd)
	}
	for _, p := range procs {
		if p != nil && p.ours() {
			fmt.Fprintf(stdout, "stopping %s (pid %d)\n", p.Name, p.PID)
			stopProcess(p, 15*time.Second)
		}
	}
	if err := os.RemoveAll(o.stateDir); err != nil {
		return fmt.Errorf("could not remove %s: %w", o.stateDir, err)
	}
	fmt.Fprintln(stdout, "clusters are down")
	return nil
}

// apiserverLog copies the cluster's kube-apiserver log to stdout: the e2e suite reads from it what
// kube-apiserver logged of a refused token.
func apiserverLog(o options, name string, stdout io.Writer) error {
	s, err := loadState(o.stateDir)
	if err != nil {
		return err
	}
	c, ok := s.Clusters[name]
	if !ok || c.APIServer == nil {
		return fmt.Errorf("no kube-apiserver of a cluster named %q", name)
	}
	f, err := os.Open(c.APIServer.Log)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	_, err = io.Copy(stdout, f)
	return err
}

func control(o options, cmd, name string, stdout io.Writer) error {
	s, err := loadState(o.stateDir)
	if err != nil {
		return err
	}
	c, ok := s.Clusters[name]
	if !ok {
		return fmt.Errorf("no cluster named %q (have %s)", name, strings.Join(sortedNames(s), ", "))
	}
	apiserverBin := filepath.Join(o.assets, "kube-apiserver")
	if c.APIServer != nil && c.APIServer.Path != "" {
		apiserverBin = c.APIServer.Path
	}
	switch cmd {
	case "stop":
		if c.APIServer != nil {
			stopProcess(c.APIServer, 15*time.Second)
		}
		fmt.Fprintf(stdout, "%s kube-apiserver stopped\n", name)
	case "start":
		if c.APIServer != nil && c.APIServer.ours() {
			return fmt.Errorf("%s kube-apiserver is already running (pid %d)", name, c.APIServer.PID)
		}
		if err := c.startAPIServer(apiserverBin); err != nil {
			_ = s.save()
			return err
		}
		fmt.Fprintf(stdout, "%s kube-apiserver started\n", name)
	case "rotate-key":
		key, err := c.addSAKey()
		if err != nil {
			return err
		}
		if c.APIServer != nil {
			stopProcess(c.APIServer, 15*time.Second)
		}
		if err := c.startAPIServer(apiserverBin); err != nil {
			_ = s.save()
			return err
		}
		fmt.Fprintf(stdout, "%s now signs with %s and still accepts %d older keys\n", name, filepath.Base(key), len(c.SAKeys)-1)
	}
	return s.save()
}

func status(o options, stdout io.Writer) error {
	s, err := loadState(o.stateDir)
	if err != nil {
		return err
	}
	line := func(p *Process) {
		if p == nil {
			return
		}
		state := "stopped"
		if p.ours() {
			state = "running"
		}
		fmt.Fprintf(stdout, "%-28s pid %-7d %s\n", p.Name, p.PID, state)
	}
	for _, name := range sortedNames(s) {
		line(s.Clusters[name].Etcd)
		line(s.Clusters[name].APIServer)
	}
	line(s.Webhook)
	return nil
}

func printEnv(s *State, w io.Writer) {
	for _, name := range sortedNames(s) {
		fmt.Fprintf(w, "export %s_KUBECONFIG=%s\n", strings.ToUpper(name), s.Clusters[name].Kubeconfig)
	}
	fmt.Fprintf(w, "export WEBHOOK_URL=%s\n", s.WebhookURL)
	fmt.Fprintf(w, "export WEBHOOK_CA_FILE=%s\n", s.WebhookCA)
	fmt.Fprintf(w, "export WEBHOOK_METRICS_URL=%s\n", s.MetricsURL)
	fmt.Fprintf(w, "export WEBHOOK_READYZ_URL=%s\n", s.ProbeURL+"/readyz")
	fmt.Fprintf(w, "export WEBHOOK_KUBECONFIG=%s\n", s.WebhookKubeconfig)
}

func sortedNames(s *State) []string {
	names := make([]string, 0, len(s.Clusters))
	for n := range s.Clusters {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// httpOK GETs url with c and fails unless the answer is 200.
func httpOK(c *http.Client, url string) error {
	resp, err := c.Get(url) //nolint:noctx // bounded local poll
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
