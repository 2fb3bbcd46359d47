// Command runlocal is `make run`: clustertrust on 127.0.0.1 with the file source and a sample issuer, no
// cluster needed. It writes, under the state directory (default .run, gitignored):
//
//	ca.crt, serving.crt, serving.key   the webhook's TLS (curl --cacert ca.crt)
//	issuers/sample.yaml                an OpenIDConnect with static keys for https://issuer.example
//	review.json                        a TokenReview carrying a ServiceAccount token that sample.yaml trusts
//	signing-key.pem                    the sample issuer's private key, to mint more tokens
//
// then prints the curl command that posts review.json and serves until interrupted. Edit
// issuers/sample.yaml (or add files next to it) while it runs: the webhook reloads the directory.
package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clustertrust/clustertrust/cmd/webhook/app"
	"github.com/clustertrust/clustertrust/internal/pki"
	"github.com/clustertrust/clustertrust/internal/testissuer"
)

const (
	issuerURL = "https://issuer.example"
	audience  = "https://downstream.example:6443"
)

func main() {
	dir := flag.String("dir", ".run", "state directory")
	port := flag.Int("port", 9443, "HTTPS port of /authenticate on 127.0.0.1")
	flag.Parse()
	if err := prepare(*dir, *port); err != nil {
		fmt.Fprintln(os.Stderr, "runlocal:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(app.Main(ctx, []string{"serve",
		"--source=file", "--config-dir", filepath.Join(*dir, "issuers"),
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(*port),
		"--tls-cert-file", filepath.Join(*dir, "serving.crt"), "--tls-private-key-file", filepath.Join(*dir, "serving.key"),
		"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(*port+1),
		"--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(*port+2),
		"--log-development", "--v", "4",
	}, os.Stdout, os.Stderr))
}

func prepare(dir string, port int) error {
	if err := os.MkdirAll(filepath.Join(dir, "issuers"), 0o700); err != nil {
		return err
	}
	ca, err := pki.NewCA("clustertrust-run-ca")
	if err != nil {
		return err
	}
	serving, err := ca.Serving("clustertrust", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	if err != nil {
		return err
	}
	if _, _, err := serving.Write(dir, "serving"); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM(), 0o600); err != nil {
		return err
	}

	key, err := testissuer.NewKey(jose.RS256)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key.Private)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "signing-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Private.Public(), KeyID: key.KID, Algorithm: string(key.Alg), Use: "sig"}}})
	if err != nil {
		return err
	}
	manifest := fmt.Sprintf(`# Written by make run. Tokens of https://issuer.example minted for %s map to
# sample:<sub>; a ServiceAccount token of tenant-a/reconciler becomes
# sample:system:serviceaccount:tenant-a:reconciler. Edit me while the webhook runs.
apiVersion: authentication.clustertrust.io/v1alpha1
kind: OpenIDConnect
metadata:
  name: sample
spec:
  issuerURL: %s
  audiences: [%q]
  jwks:
    keys: %s # base64 of the JWKS JSON
`, audience, issuerURL, audience, base64.StdEncoding.EncodeToString(jwks))
	if err := os.WriteFile(filepath.Join(dir, "issuers", "sample.yaml"), []byte(manifest), 0o600); err != nil {
		return err
	}

	claims := testissuer.ServiceAccountClaims("tenant-a", "reconciler", audience)
	claims["exp"] = time.Now().Add(24 * time.Hour).Unix()
	token, err := testissuer.MintFor(key, issuerURL, claims)
	if err != nil {
		return err
	}
	review, err := json.MarshalIndent(map[string]any{
		"apiVersion": "authentication.k8s.io/v1",
		"kind":       "TokenReview",
		"spec":       map[string]any{"token": token, "audiences": []string{audience}},
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "review.json"), review, 0o600); err != nil {
		return err
	}
	fmt.Printf(`clustertrust is starting on https://127.0.0.1:%d with --source=file --config-dir %s.
In another terminal:

  curl -sS --cacert %s -H 'Content-Type: application/json' \
    --data @%s https://127.0.0.1:%d/authenticate

  curl -sS http://127.0.0.1:%d/readyz; curl -sS http://127.0.0.1:%d/metrics | grep ^clustertrust_

Stop with Ctrl-C.

`, port, filepath.Join(dir, "issuers"), filepath.Join(dir, "ca.crt"), filepath.Join(dir, "review.json"), port, port+2, port+1)
	return nil
}
