package app

import (
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// WebhookKubeconfig renders the file kube-apiserver reads with --authentication-token-webhook-config-file:
// the cluster is clustertrust's /authenticate URL and the CA that signed its serving certificate; the
// optional client certificate lets kube-apiserver authenticate itself to clustertrust (mTLS).
func WebhookKubeconfig(url string, caPEM, clientCertPEM, clientKeyPEM []byte) ([]byte, error) {
	return webhookKubeconfig(url, "", caPEM, clientCertPEM, clientKeyPEM)
}

// webhookKubeconfig is WebhookKubeconfig with the name kube-apiserver verifies the serving certificate
// against when it is not the URL's host (tls-server-name): a Service's DNS name while it dials the
// Service's cluster IP.
func webhookKubeconfig(url, serverName string, caPEM, clientCertPEM, clientKeyPEM []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["clustertrust"] = &clientcmdapi.Cluster{Server: url, TLSServerName: serverName, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["kube-apiserver"] = &clientcmdapi.AuthInfo{ClientCertificateData: clientCertPEM, ClientKeyData: clientKeyPEM}
	cfg.Contexts["webhook"] = &clientcmdapi.Context{Cluster: "clustertrust", AuthInfo: "kube-apiserver"}
	cfg.CurrentContext = "webhook"
	return clientcmd.Write(*cfg)
}
