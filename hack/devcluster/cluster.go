package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/clustertrust/clustertrust/internal/pki"
)

// newCluster writes the certificates, ServiceAccount signing key and admin kubeconfig of a cluster.
func newCluster(root, name string, port, etcdPort int) (*Cluster, error) {
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := pki.NewCA(name + "-ca")
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	serving, err := ca.Serving("kube-apiserver", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	if err != nil {
		return nil, err
	}
	if _, _, err := serving.Write(dir, "serving"); err != nil {
		return nil, err
	}
	admin, err := ca.Client("admin", "system:masters")
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		Name:       name,
		Dir:        dir,
		Port:       port,
		EtcdPort:   etcdPort,
		Issuer:     "https://127.0.0.1:" + strconv.Itoa(port),
		Kubeconfig: filepath.Join(dir, "admin.kubeconfig"),
		CAFile:     caFile,
	}
	if err := writeKubeconfig(c.Kubeconfig, name, "https://127.0.0.1:"+strconv.Itoa(port), ca.CertPEM(), admin); err != nil {
		return nil, err
	}
	if _, err := c.addSAKey(); err != nil {
		return nil, err
	}
	return c, nil
}

// addSAKey generates a new ServiceAccount signing key; kube-apiserver signs with the newest and still
// accepts (and publishes) every older one.
func (c *Cluster) addSAKey() (string, error) {
	private, public, err := pki.NewRSAKeyPEM()
	if err != nil {
		return "", err
	}
	base := filepath.Join(c.Dir, "sa-"+strconv.Itoa(len(c.SAKeys)+1))
	if err := os.WriteFile(base+".key", private, 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(base+".pub", public, 0o644); err != nil {
		return "", err
	}
	c.SAKeys = append(c.SAKeys, base+".key")
	return base + ".key", nil
}

func writeKubeconfig(path, name, server string, caPEM []byte, user pki.Pair) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: user.CertPEM, ClientKeyData: user.KeyPEM}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: "admin"}
	cfg.CurrentContext = name
	return clientcmd.WriteToFile(*cfg, path)
}

func (c *Cluster) startEtcd(bin string) error {
	peer := "http://127.0.0.1:" + strconv.Itoa(c.EtcdPort+1)
	client := "http://127.0.0.1:" + strconv.Itoa(c.EtcdPort)
	args := []string{
		"--name", c.Name,
		"--data-dir", filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", c.Name + "=" + peer,
		"--unsafe-no-fsync", // throwaway local data: durability is not worth the disk latency
		"--log-level", "warn",
	}
	p, err := startProcess(c.Name+" etcd", bin, args, filepath.Join(c.Dir, "etcd.log"))
	if err != nil {
		return err
	}
	c.Etcd = p
	hc := &http.Client{Timeout: 2 * time.Second}
	return waitUntil(p, 30*time.Second, c.Name+" etcd health", func() error { return httpOK(hc, client+"/health") })
}

func (c *Cluster) apiserverArgs() []string {
	args := []string{
		"--etcd-servers", "http://127.0.0.1:" + strconv.Itoa(c.EtcdPort),
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--endpoint-reconciler-type", "none", // a loopback advertise address is refused by the reconciler
		"--secure-port", strconv.Itoa(c.Port),
		"--cert-dir", c.Dir,
		"--tls-cert-file", filepath.Join(c.Dir, "serving.crt"),
		"--tls-private-key-file", filepath.Join(c.Dir, "serving.key"),
		"--client-ca-file", c.CAFile,
		"--authorization-mode", "RBAC",
		"--service-account-issuer", c.Issuer,
		"--service-account-signing-key-file", c.SAKeys[len(c.SAKeys)-1],
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	}
	for _, k := range c.SAKeys {
		args = append(args, "--service-account-key-file", k[:len(k)-len(".key")]+".pub")
	}
	return append(args, c.ExtraArgs...)
}

func (c *Cluster) startAPIServer(bin string) error {
	p, err := startProcess(c.Name+" kube-apiserver", bin, c.apiserverArgs(), filepath.Join(c.Dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	c.APIServer = p
	hc, err := c.httpClient()
	if err != nil {
		return err
	}
	return waitUntil(p, 120*time.Second, c.Name+" kube-apiserver /readyz", func() error { return httpOK(hc, c.Issuer+"/readyz") })
}

// httpClient authenticates as the cluster's admin.
func (c *Cluster) httpClient() (*http.Client, error) {
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	auth := cfg.AuthInfos["admin"]
	cert, err := tls.X509KeyPair(auth.ClientCertificateData, auth.ClientKeyData)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cfg.Clusters[c.Name].CertificateAuthorityData)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
	}}}, nil
}

func (c *Cluster) clientset() (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// publishDiscovery lets anyone read the ServiceAccount issuer's discovery document and JWKS, as managed
// clusters do, so that clustertrust fetches keys without credentials.
func (c *Cluster) publishDiscovery(ctx context.Context) error {
	cs, err := c.clientset()
	if err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "clustertrust-public-issuer-discovery"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:service-account-issuer-discovery"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:unauthenticated"}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("could not publish %s issuer discovery: %w", c.Name, err)
	}
	return nil
}
