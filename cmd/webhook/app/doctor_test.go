package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/tools/clientcmd"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/authn"
	"github.com/clustertrust/clustertrust/internal/pki"
	"github.com/clustertrust/clustertrust/internal/serving"
)

// jwtLike is a token of the form clustertrust admits: three segments of canonical base64url.
func jwtLike(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"RS256","kid":"k1"}`)) + "." + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString([]byte("not-a-signature-"+payload))
}

var (
	goodToken    = jwtLike(`{"iss":"https://hub.example","sub":"system:serviceaccount:tenant-a:reconciler","secret":"good"}`)
	expiredToken = jwtLike(`{"iss":"https://hub.example","sub":"system:serviceaccount:tenant-a:reconciler","secret":"expired"}`)
)

// stubAuthenticator answers like clustertrust's router: the good token authenticates, the expired one
// is refused as expired, every other as of an unknown issuer.
type stubAuthenticator struct{}

func (stubAuthenticator) AuthenticateToken(_ context.Context, token string) (*authenticator.Response, bool, error) {
	switch token {
	case goodToken:
		return &authenticator.Response{User: &user.DefaultInfo{
			Name: "hub:system:serviceaccount:tenant-a:reconciler", Groups: []string{"hub:system:serviceaccounts", "hub:system:serviceaccounts:tenant-a"},
		}}, true, nil
	case expiredToken:
		return nil, false, errors.New("oidc: verify token: oidc: token is expired (Token Expiry: 2020-01-01 00:00:00 +0000 UTC)")
	}
	return nil, false, authn.ErrUnknownIssuer
}

// staticClientCA is a fixed --client-ca-file.
type staticClientCA struct{ pool *x509.CertPool }

func (s staticClientCA) VerifyOptions() (x509.VerifyOptions, bool) {
	return x509.VerifyOptions{Roots: s.pool}, true
}

type webhookOpts struct {
	ips      []net.IP // default 127.0.0.1
	dns      []string
	clientCA *pki.CA // set: --client-ca-file
	allowed  []string
	handler  http.Handler // default: clustertrust's TokenReview handler
	// tlsClientCA set: client certificates are verified in the handshake (not clustertrust's way, but
	// a proxy's in front of it), with TLS up to tlsMaxVersion
	tlsClientCA   *pki.CA
	tlsMaxVersion uint16
}

// startWebhook serves /authenticate over TLS like clustertrust and returns its URL and serving CA.
func startWebhook(t *testing.T, o webhookOpts) (string, *pki.CA) {
	t.Helper()
	ca, err := pki.NewCA("serving-ca")
	if err != nil {
		t.Fatal(err)
	}
	if o.ips == nil && o.dns == nil {
		o.ips = []net.IP{net.ParseIP("127.0.0.1")}
	}
	pair, err := ca.Serving("clustertrust", o.ips, o.dns)
	if err != nil {
		t.Fatal(err)
	}
	h := o.handler
	if h == nil {
		h = &authn.Handler{Authenticator: stubAuthenticator{}, Log: logr.Discard()}
	}
	clientAuth := tls.NoClientCert
	if o.clientCA != nil {
		pool := x509.NewCertPool()
		pool.AddCert(o.clientCA.Cert)
		h = &serving.ClientCertAuth{CA: staticClientCA{pool}, AllowedNames: o.allowed, Next: h, Log: logr.Discard()}
		clientAuth = tls.RequestClientCert
	}
	mux := http.NewServeMux()
	mux.Handle("/authenticate", h)
	srv := httptest.NewUnstartedServer(mux)
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: clientAuth, MinVersion: tls.VersionTLS12, MaxVersion: o.tlsMaxVersion}
	if o.tlsClientCA != nil {
		srv.TLS.ClientAuth, srv.TLS.ClientCAs = tls.RequireAndVerifyClientCert, x509.NewCertPool()
		srv.TLS.ClientCAs.AddCert(o.tlsClientCA.Cert)
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake errors are what some tests provoke
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL + "/authenticate", ca
}

// writeWebhookKubeconfig writes the file kube-apiserver would read.
func writeWebhookKubeconfig(t *testing.T, server, serverName string, ca []byte, client *pki.Pair) string {
	t.Helper()
	var cert, key []byte
	if client != nil {
		cert, key = client.CertPEM, client.KeyPEM
	}
	kc, err := webhookKubeconfig(server, serverName, ca, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "webhook-kubeconfig.yaml")
	writeFile(t, path, string(kc))
	return path
}

func newTestDoctor(kubeconfig string) *doctor {
	return &doctor{opts: doctorOptions{
		WebhookKubeconfig: kubeconfig, KeyRefreshInterval: authn.DefaultRefreshInterval,
		MaxClockSkew: defaultMaxClockSkew, Timeout: 5 * time.Second, Output: "text",
	}}
}

func result(t *testing.T, results []checkResult, name string) checkResult {
	t.Helper()
	for _, r := range results {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no %s check in %+v", name, results)
	return checkResult{}
}

// expect asserts a check's status and that its message and fix contain the given texts.
func expect(t *testing.T, results []checkResult, name, status string, message, fix []string) {
	t.Helper()
	r := result(t, results, name)
	failed := t.Failed()
	defer func() {
		if !failed && t.Failed() {
			var b bytes.Buffer
			_ = writeResults(&b, "text", results)
			t.Logf("report:\n%s", b.String())
		}
	}()
	if r.Status != status {
		t.Errorf("%s: status %s, want %s (%s; fix: %s)", name, r.Status, status, r.Message, r.Fix)
	}
	for _, m := range message {
		if !strings.Contains(r.Message, m) {
			t.Errorf("%s: message %q does not contain %q", name, r.Message, m)
		}
	}
	for _, f := range fix {
		if !strings.Contains(r.Fix, f) {
			t.Errorf("%s: fix %q does not contain %q", name, r.Fix, f)
		}
	}
}

func newClientCA(t *testing.T, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func clientPair(t *testing.T, ca *pki.CA, cn string) *pki.Pair {
	t.Helper()
	p, err := ca.Client(cn)
	if err != nil {
		t.Fatal(err)
	}
	return &p
}

func TestDoctorHealthyWiring(t *testing.T) {
	t.Parallel()
	clientCA := newClientCA(t, "apiserver-client-ca")
	server, servingCA := startWebhook(t, webhookOpts{clientCA: clientCA, allowed: []string{"kube-apiserver"}})
	kc := writeWebhookKubeconfig(t, server, "", servingCA.CertPEM(), clientPair(t, clientCA, "kube-apiserver"))
	readyz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	t.Cleanup(readyz.Close)

	d := newTestDoctor(kc)
	d.opts.ReadyzURL = readyz.URL + "/readyz"
	d.opts.TokenFile = "-"
	d.stdin = strings.NewReader(goodToken + "\n")
	hub := readyObject("hub", metav1.Now())
	hub.Spec.IssuerURL, hub.Spec.CABundle = startIssuer(t, 0)
	d.objects = func(context.Context) ([]v1alpha1.OpenIDConnect, error) { return []v1alpha1.OpenIDConnect{hub}, nil }
	results := d.run(context.Background())
	for _, r := range results {
		if r.Status != checkOK && r.Status != checkSkip {
			t.Errorf("%s: %s: %s (fix: %s)", r.Name, r.Status, r.Message, r.Fix)
		}
	}
	expect(t, results, "tls", checkOK, []string{"serving certificate chains to the kubeconfig's CA and names 127.0.0.1"}, nil)
	expect(t, results, "client-certificate", checkOK, []string{"CN=kube-apiserver"}, nil)
	expect(t, results, "tokenreview", checkOK, []string{"well-formed", "status.error"}, nil)
	expect(t, results, "token", checkOK, []string{`"hub:system:serviceaccount:tenant-a:reconciler"`}, nil)
	expect(t, results, "openidconnect/hub", checkOK, []string{"Ready with 1 key"}, nil)
	assertNoToken(t, results, goodToken)
}

func TestDoctorCommandOutput(t *testing.T) {
	t.Parallel()
	server, servingCA := startWebhook(t, webhookOpts{})
	kc := writeWebhookKubeconfig(t, server, "", servingCA.CertPEM(), nil)

	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"doctor", "--webhook-kubeconfig", kc}, &out, &errOut); code != 0 {
		t.Fatalf("exit code %d, stderr %q, stdout:\n%s", code, errOut.String(), out.String())
	}
	text := out.String()
	for _, want := range []string{
		"ok    tls: serving certificate chains to the kubeconfig's CA and names 127.0.0.1\n",
		"ok    tokenreview: a garbage token was refused",
		"warn  readyz: skipped: no --readyz-url\n      fix: pass --readyz-url",
		"warn  openidconnect: skipped: no --kubeconfig",
		"skip  clock: skipped",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text output does not contain %q:\n%s", want, text)
		}
	}

	// JSON is an array of results; a failure exits 1.
	out.Reset()
	errOut.Reset()
	kc = writeWebhookKubeconfig(t, server, "", newClientCA(t, "some-other-ca").CertPEM(), nil)
	if code := Main(context.Background(), []string{"doctor", "--webhook-kubeconfig", kc, "--output", "json"}, &out, &errOut); code != 1 {
		t.Fatalf("exit code %d with a wrong CA, want 1", code)
	}
	var results []checkResult
	if err := json.Unmarshal(out.Bytes(), &results); err != nil {
		t.Fatalf("output is not a JSON array of results: %v\n%s", err, out.String())
	}
	expect(t, results, "tls", checkFail, nil, []string{"certificate-authority-data"})
	if !strings.Contains(errOut.String(), "checks failed") {
		t.Errorf("stderr = %q", errOut.String())
	}

	// Flags are checked before anything runs.
	errOut.Reset()
	if code := Main(context.Background(), []string{"doctor"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "--webhook-kubeconfig is required") {
		t.Errorf("without --webhook-kubeconfig: exit %d, stderr %q", code, errOut.String())
	}
}

func TestDoctorWrongCA(t *testing.T) {
	t.Parallel()
	server, _ := startWebhook(t, webhookOpts{})
	other := newClientCA(t, "not-the-serving-ca")
	results := newTestDoctor(writeWebhookKubeconfig(t, server, "", other.CertPEM(), nil)).run(context.Background())
	expect(t, results, "tls", checkFail,
		[]string{"CN=clustertrust", "issued by CN=serving-ca", "does not chain to the kubeconfig's CA (CN=not-the-serving-ca)"},
		[]string{"the kubeconfig's CA did not sign the serving certificate", "put the CA of CN=serving-ca into certificate-authority-data", "webhook apiserver-config --ca-secret"})
	// kube-apiserver cannot get past TLS: the HTTP checks are not run.
	expect(t, results, "tokenreview", checkSkip, []string{"does not trust the serving certificate"}, nil)
}

func TestDoctorInsecureKubeconfig(t *testing.T) {
	t.Parallel()
	server, _ := startWebhook(t, webhookOpts{})
	path := filepath.Join(t.TempDir(), "insecure.yaml")
	writeFile(t, path, strings.Replace(kubeconfigYAML(server, "webhook"), "    server:", "    insecure-skip-tls-verify: true\n    server:", 1))
	results := newTestDoctor(path).run(context.Background())
	expect(t, results, "tls", checkWarn, []string{"insecure-skip-tls-verify is set", "would not verify"}, []string{"remove insecure-skip-tls-verify", "certificate-authority-data"})
	expect(t, results, "tokenreview", checkOK, nil, nil) // kube-apiserver gets through, unverified
}

func TestDoctorServingCertWithoutHost(t *testing.T) {
	t.Parallel()
	const svc = "clustertrust.clustertrust-system.svc"
	server, servingCA := startWebhook(t, webhookOpts{dns: []string{svc}})
	results := newTestDoctor(writeWebhookKubeconfig(t, server, "", servingCA.CertPEM(), nil)).run(context.Background())
	expect(t, results, "tls", checkFail,
		[]string{"names DNS:" + svc, "checks it against the server URL's host 127.0.0.1"},
		[]string{"add 127.0.0.1 to the serving certificate's subject alternative names", "set tls-server-name to one of its names (DNS:" + svc + ")", "webhook apiserver-config --tls-server-name"})

	// The fix it names works.
	results = newTestDoctor(writeWebhookKubeconfig(t, server, svc, servingCA.CertPEM(), nil)).run(context.Background())
	expect(t, results, "tls", checkOK, []string{"names " + svc}, nil)
	expect(t, results, "tokenreview", checkOK, nil, nil)
}

func TestDoctorClientCertificateRefused(t *testing.T) {
	t.Parallel()
	clientCA := newClientCA(t, "apiserver-client-ca")
	server, servingCA := startWebhook(t, webhookOpts{clientCA: clientCA, allowed: []string{"kube-apiserver"}})

	// Signed by the right CA, but not an allowed name.
	kc := writeWebhookKubeconfig(t, server, "", servingCA.CertPEM(), clientPair(t, clientCA, "someone-else"))
	results := newTestDoctor(kc).run(context.Background())
	expect(t, results, "client-certificate", checkFail,
		[]string{"clustertrust refused kube-apiserver's client certificate (CN=someone-else", "it must be signed by clustertrust's --client-ca-file and be named in --client-allowed-names", "HTTP 401"},
		[]string{`name "someone-else" in clustertrust's --client-allowed-names`})
	expect(t, results, "tokenreview", checkSkip, nil, nil)

	// The allowed name, but from another CA.
	foreign := newClientCA(t, "foreign-ca")
	kc = writeWebhookKubeconfig(t, server, "", servingCA.CertPEM(), clientPair(t, foreign, "kube-apiserver"))
	results = newTestDoctor(kc).run(context.Background())
	expect(t, results, "client-certificate", checkFail,
		[]string{"CN=kube-apiserver, issued by CN=foreign-ca"},
		[]string{"put the CA that issued it (CN=foreign-ca) into clustertrust's --client-ca-file"})
}

func TestDoctorClientCertificateRefusedInHandshake(t *testing.T) {
	t.Parallel()
	clientCA := newClientCA(t, "apiserver-client-ca")
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		server, servingCA := startWebhook(t, webhookOpts{tlsClientCA: clientCA, tlsMaxVersion: version})
		kc := writeWebhookKubeconfig(t, server, "", servingCA.CertPEM(), clientPair(t, newClientCA(t, "foreign-ca"), "kube-apiserver"))
		results := newTestDoctor(kc).run(context.Background())
		expect(t, results, "tls", checkOK, []string{"names 127.0.0.1"}, nil)
		expect(t, results, "client-certificate", checkFail, []string{"refused the TLS handshake"}, []string{"client certificate"})
		expect(t, results, "tokenreview", checkSkip, nil, nil)

		kc = writeWebhookKubeconfig(t, server, "", servingCA.CertPEM(), clientPair(t, clientCA, "kube-apiserver"))
		expect(t, newTestDoctor(kc).run(context.Background()), "tokenreview", checkOK, nil, nil)
	}
}

func TestDoctorClientCertificateRequiredButMissing(t *testing.T) {
	t.Parallel()
	clientCA := newClientCA(t, "apiserver-client-ca")
	server, servingCA := startWebhook(t, webhookOpts{clientCA: clientCA, allowed: []string{"kube-apiserver"}})
	results := newTestDoctor(writeWebhookKubeconfig(t, server, "", servingCA.CertPEM(), nil)).run(context.Background())
	expect(t, results, "client-certificate", checkFail,
		[]string{"clustertrust requires a client certificate (--client-ca-file) but the kubeconfig has none"},
		[]string{"--client-ca-file", "--client-allowed-names", "--client-cert-file"})
}

func TestDoctorClientCertificateKeyMismatch(t *testing.T) {
	t.Parallel()
	clientCA := newClientCA(t, "apiserver-client-ca")
	server, servingCA := startWebhook(t, webhookOpts{clientCA: clientCA})
	a, b := clientPair(t, clientCA, "kube-apiserver"), clientPair(t, clientCA, "kube-apiserver")
	mixed := &pki.Pair{CertPEM: a.CertPEM, KeyPEM: b.KeyPEM}
	results := newTestDoctor(writeWebhookKubeconfig(t, server, "", servingCA.CertPEM(), mixed)).run(context.Background())
	expect(t, results, "client-certificate", checkFail, []string{"do not make a pair"}, []string{"client-key-data"})
	for _, r := range results {
		if strings.Contains(r.Message+r.Fix, "PRIVATE KEY") {
			t.Errorf("%s prints the key: %s", r.Name, r.Message)
		}
	}
}

func TestDoctorWebhookDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	ca := newClientCA(t, "serving-ca")
	results := newTestDoctor(writeWebhookKubeconfig(t, "https://"+addr+"/authenticate", "", ca.CertPEM(), nil)).run(context.Background())
	expect(t, results, "reach", checkFail,
		[]string{"kube-apiserver cannot reach https://" + addr + "/authenticate from here: connection refused"},
		[]string{"is clustertrust running, and is " + addr + " the address it listens on", "Service"})
	expect(t, results, "tls", checkSkip, nil, nil)
	expect(t, results, "tokenreview", checkSkip, nil, nil)
}

func TestDoctorPlainHTTPPort(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	ca := newClientCA(t, "serving-ca")
	results := newTestDoctor(writeWebhookKubeconfig(t, "https://"+addr+"/authenticate", "", ca.CertPEM(), nil)).run(context.Background())
	expect(t, results, "tls", checkFail, []string{"no TLS handshake"}, []string{"plain HTTP", "--secure-port"})
}

func TestDoctorGarbageReviewAnswers(t *testing.T) {
	t.Parallel()
	answer := func(code int, body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
		})
	}
	tests := []struct {
		name    string
		handler http.Handler
		status  string
		message []string
	}{
		{"clustertrust", nil, checkOK, []string{"refused in a well-formed authentication.k8s.io/v1 TokenReview (status.error"}},
		{"html", answer(http.StatusOK, "<html>welcome to nginx</html>"), checkFail, []string{"not a TokenReview", "HTTP 200", "welcome to nginx"}},
		{"no error", answer(http.StatusOK, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":false}}`), checkFail, []string{"without status.error"}},
		{"v1beta1", answer(http.StatusOK, `{"apiVersion":"authentication.k8s.io/v1beta1","kind":"TokenReview","status":{"error":"no"}}`), checkFail, []string{`apiVersion "authentication.k8s.io/v1beta1"`}},
		{"accepts anything", answer(http.StatusOK, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":true,"user":{"username":"admin"}}}`), checkFail, []string{`authenticated as "admin"`}},
		// kube-apiserver reads an answer without apiVersion and kind as v1: so does doctor.
		{"no apiVersion", answer(http.StatusOK, `{"status":{"authenticated":false,"error":"no"}}`), checkOK, []string{`status.error "no"`}},
		{"server error", answer(http.StatusInternalServerError, strings.Repeat("x", 500)), checkFail, []string{"HTTP 500", strings.Repeat("x", maxBodyShown) + "…"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server, ca := startWebhook(t, webhookOpts{handler: tt.handler})
			results := newTestDoctor(writeWebhookKubeconfig(t, server, "", ca.CertPEM(), nil)).run(context.Background())
			expect(t, results, "tokenreview", tt.status, tt.message, nil)
		})
	}

	// A server path clustertrust does not answer on.
	server, ca := startWebhook(t, webhookOpts{})
	results := newTestDoctor(writeWebhookKubeconfig(t, strings.TrimSuffix(server, "/authenticate")+"/review", "", ca.CertPEM(), nil)).run(context.Background())
	expect(t, results, "kubeconfig", checkWarn, []string{`not "/review"`}, []string{"/authenticate"})
	expect(t, results, "tokenreview", checkFail, []string{"HTTP 404"}, []string{"set server's path to /authenticate"})
}

func TestDoctorReadyz(t *testing.T) {
	t.Parallel()
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("[-]issuers failed: reason withheld\nhealthz check failed\n"))
	}))
	t.Cleanup(notReady.Close)
	d := newTestDoctor("")
	d.opts.ReadyzURL = notReady.URL + "/readyz"
	r := d.checkReadyz(context.Background())
	expect(t, []checkResult{r}, "readyz", checkFail, []string{"is not ready (HTTP 500): [-]issuers failed: reason withheld; healthz check failed"}, []string{"kubectl get oidc", "-v=1"})

	d.opts.ReadyzURL = ""
	expect(t, []checkResult{d.checkReadyz(context.Background())}, "readyz", checkWarn, []string{"skipped"}, []string{"--readyz-url", "8081"})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.opts.ReadyzURL = "http://" + ln.Addr().String() + "/readyz"
	_ = ln.Close()
	expect(t, []checkResult{d.checkReadyz(context.Background())}, "readyz", checkFail, []string{"connection refused"}, []string{"--health-probe-bind-address"})
}

func TestDoctorTokenFile(t *testing.T) {
	t.Parallel()
	server, ca := startWebhook(t, webhookOpts{})
	kc := writeWebhookKubeconfig(t, server, "", ca.CertPEM(), nil)
	dir := t.TempDir()

	good := filepath.Join(dir, "good.jwt")
	writeFile(t, good, goodToken+"\n")
	d := newTestDoctor(kc)
	d.opts.TokenFile = good
	results := d.run(context.Background())
	expect(t, results, "token", checkOK, []string{`authenticated as "hub:system:serviceaccount:tenant-a:reconciler"`, "hub:system:serviceaccounts:tenant-a"}, nil)
	assertNoToken(t, results, goodToken)

	refused := filepath.Join(dir, "refused.jwt")
	writeFile(t, refused, expiredToken)
	d = newTestDoctor(kc)
	d.opts.TokenFile = refused
	results = d.run(context.Background())
	expect(t, results, "token", checkFail, []string{"clustertrust refused the token: ", "expired"}, []string{"webhook explain --token-file " + refused})
	assertNoToken(t, results, expiredToken)

	d.opts.TokenFile = filepath.Join(dir, "missing.jwt")
	expect(t, []checkResult{d.checkToken(context.Background())}, "token", checkFail, []string{"could not read the token"}, nil)
	empty := filepath.Join(dir, "empty.jwt")
	writeFile(t, empty, "\n")
	d.opts.TokenFile = empty
	expect(t, []checkResult{d.checkToken(context.Background())}, "token", checkFail, []string{"is empty"}, nil)
}

// assertNoToken checks that neither output format holds the token.
func assertNoToken(t *testing.T, results []checkResult, token string) {
	t.Helper()
	for _, format := range []string{"text", "json"} {
		var b bytes.Buffer
		if err := writeResults(&b, format, results); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(b.String(), token) || strings.Contains(b.String(), strings.Split(token, ".")[1]) {
			t.Errorf("the %s report contains the token:\n%s", format, b.String())
		}
	}
}

// startIssuer serves a discovery document whose Date header is off by skew.
func startIssuer(t *testing.T, skew time.Duration) (string, []byte) {
	t.Helper()
	ca := newClientCA(t, "issuer-ca")
	pair, err := ca.Serving("issuer", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", time.Now().Add(skew).UTC().Format(http.TimeFormat))
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"issuer":"x","jwks_uri":"x"}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, ca.CertPEM()
}

func TestDoctorClockSkew(t *testing.T) {
	t.Parallel()
	behindIssuer, behindCA := startIssuer(t, -10*time.Minute) // the issuer is 10m behind: we are ahead
	aheadIssuer, aheadCA := startIssuer(t, 10*time.Minute)
	inSync, inSyncCA := startIssuer(t, 0)
	now := metav1.Now()
	objs := []v1alpha1.OpenIDConnect{readyObject("ahead", now), readyObject("behind", now), readyObject("in-sync", now), readyObject("static", now)}
	objs[0].Spec.IssuerURL, objs[0].Spec.CABundle = behindIssuer, behindCA
	objs[1].Spec.IssuerURL, objs[1].Spec.CABundle = aheadIssuer, aheadCA
	objs[2].Spec.IssuerURL, objs[2].Spec.CABundle = inSync, inSyncCA
	objs[3].Spec.JWKS = &v1alpha1.JWKSSpec{Keys: []byte(`{"keys":[]}`)}
	d := newTestDoctor("")
	d.objects = func(context.Context) ([]v1alpha1.OpenIDConnect, error) { return objs, nil }
	results := d.checkClocks(context.Background(), objs)
	if len(results) != 3 {
		t.Fatalf("%d clock checks, want 3 (static keys need no clock check): %+v", len(results), results)
	}
	expect(t, results, "clock/"+behindIssuer, checkFail, []string{"this machine's clock is 10m", "ahead of " + behindIssuer + "'s", "tokens will look expired"}, []string{"NTP"})
	expect(t, results, "clock/"+aheadIssuer, checkFail, []string{"behind " + aheadIssuer, "not yet valid"}, []string{"NTP"})
	expect(t, results, "clock/"+inSync, checkOK, []string{"within 1m of " + inSync + "'s"}, nil)

	// An issuer that cannot be reached warns.
	objs[2].Spec.CABundle = newClientCA(t, "wrong").CertPEM()
	expect(t, d.checkClocks(context.Background(), objs[2:3]), "clock/"+inSync, checkWarn, []string{"could not reach"}, []string{"spec.caBundle"})
}

func TestClockSkewArithmetic(t *testing.T) {
	t.Parallel()
	sent := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	skew, unc := clockSkew(sent, sent.Add(200*time.Millisecond), sent.Add(-90*time.Second).Truncate(time.Second))
	if skew < 89*time.Second || skew > 91*time.Second || unc != 600*time.Millisecond {
		t.Fatalf("skew %s ± %s, want about 90s ± 600ms", skew, unc)
	}
	// A skew within the measurement's uncertainty of the limit is not a failure.
	if r := judgeSkew("clock/x", "x", 60500*time.Millisecond, 600*time.Millisecond, time.Minute); r.Status != checkOK {
		t.Fatalf("60.5s ± 0.6s against 1m: %s", r.Status)
	}
}

func readyObject(name string, refreshed metav1.Time) v1alpha1.OpenIDConnect {
	return v1alpha1.OpenIDConnect{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1},
		Spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: "https://" + name + ".example", Audiences: []string{"https://downstream.example"}},
		Status: v1alpha1.OpenIDConnectStatus{
			ObservedGeneration: 1,
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonActive},
				{Type: v1alpha1.ConditionKeysSynced, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonFetchSucceeded},
			},
			Keys:                []v1alpha1.KeyStatus{{KID: "k1"}},
			LastKeysRefreshTime: &refreshed,
		},
	}
}

func TestDoctorObjects(t *testing.T) {
	t.Parallel()
	now := time.Now()
	at := func(ago time.Duration) metav1.Time { return metav1.NewTime(now.Add(-ago)) }

	notReady := readyObject("broken", at(time.Minute))
	notReady.Status.Conditions[0] = metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonDiscoveryFailed, Message: "dial tcp: connection refused"}
	stale := readyObject("stale", at(12*time.Minute))
	failing := readyObject("failing", at(3*time.Minute))
	failing.Status.Conditions[1] = metav1.Condition{Type: v1alpha1.ConditionKeysSynced, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonFetchFailed, Message: "HTTP 503"}
	ancient := readyObject("ancient", at(49*time.Hour))
	unreconciled := readyObject("new", at(0))
	unreconciled.Status = v1alpha1.OpenIDConnectStatus{}
	static := readyObject("static", at(0))
	static.Spec.JWKS = &v1alpha1.JWKSSpec{Keys: []byte(`{"keys":[]}`)}
	static.Status.LastKeysRefreshTime = nil

	d := newTestDoctor("")
	results := d.judgeObjects([]v1alpha1.OpenIDConnect{readyObject("fresh", at(time.Minute)), notReady, stale, failing, ancient, unreconciled, static}, now)
	expect(t, results, "openidconnect/fresh", checkOK, []string{"Ready with 1 key, last refreshed 1m ago"}, nil)
	expect(t, results, "openidconnect/broken", checkFail, []string{"is not Ready (DiscoveryFailed): dial tcp: connection refused"},
		[]string{"kubectl describe oidc broken", "https://broken.example/.well-known/openid-configuration"})
	expect(t, results, "openidconnect/stale", checkWarn, []string{"keys were last refreshed 12m ago, more than twice the refresh interval 5m"}, []string{"kubectl describe oidc stale"})
	expect(t, results, "openidconnect/failing", checkWarn, []string{"the last refresh failed", "FetchFailed: HTTP 503"}, []string{"kubectl describe oidc failing"})
	expect(t, results, "openidconnect/ancient", checkFail, []string{"keys were last refreshed 2d ago, more than 24h", "withdrawn since would still be trusted"}, []string{"kubectl describe oidc ancient"})
	expect(t, results, "openidconnect/new", checkFail, []string{"no Ready condition"}, []string{"kubectl describe oidc new"})
	expect(t, results, "openidconnect/static", checkOK, []string{"Ready with 1 static key from spec.jwks"}, nil)

	expect(t, d.judgeObjects(nil, now), "openidconnect", checkWarn, []string{"no OpenIDConnect objects: nothing is trusted yet"}, []string{"webhook trust"})

	// Without --kubeconfig the object checks warn, and say how to enable them.
	_, res := d.checkObjects(context.Background(), now)
	expect(t, res, "openidconnect", checkWarn, []string{"skipped"}, []string{"--kubeconfig"})

	// The CRD not installed.
	d.objects = func(context.Context) ([]v1alpha1.OpenIDConnect, error) {
		return nil, &apimeta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "authentication.clustertrust.io", Kind: "OpenIDConnect"}}
	}
	_, res = d.checkObjects(context.Background(), now)
	expect(t, res, "openidconnect", checkFail, nil, []string{"CRD is not installed"})
	expect(t, d.run(context.Background()), "clock", checkSkip, []string{"could not be listed"}, nil)
}

func TestDoctorBrokenKubeconfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, content string
		message, fix  []string
	}{
		{"not yaml", "{{{", []string{"could not load"}, []string{"webhook apiserver-config"}},
		{"http", kubeconfigYAML("http://127.0.0.1:9443/authenticate", "webhook"), []string{"is not https"}, []string{"https://127.0.0.1:9443/authenticate"}},
		{"no context", kubeconfigYAML("https://127.0.0.1:9443/authenticate", "other"), []string{`current-context "other"`}, []string{`"webhook"`}},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
		writeFile(t, path, tt.content)
		results := newTestDoctor(path).run(context.Background())
		expect(t, results, "kubeconfig", checkFail, tt.message, tt.fix)
		expect(t, results, "reach", checkSkip, nil, nil)
	}
	results := newTestDoctor(filepath.Join(dir, "missing")).run(context.Background())
	expect(t, results, "kubeconfig", checkFail, []string{"could not load"}, []string{"--authentication-token-webhook-config-file"})
}

func kubeconfigYAML(server, current string) string {
	return `apiVersion: v1
kind: Config
clusters:
- name: clustertrust
  cluster:
    server: ` + server + `
contexts:
- name: webhook
  context:
    cluster: clustertrust
current-context: ` + current + "\n"
}

func TestDoctorCertificateValidity(t *testing.T) {
	t.Parallel()
	ca := newClientCA(t, "serving-ca")
	pair, err := ca.Serving("clustertrust", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseCerts(pair.CertPEM)[0]
	target := &webhookTarget{url: mustURL(t, "https://127.0.0.1:9443/authenticate"), serverName: "127.0.0.1", roots: x509.NewCertPool(), caCerts: []*x509.Certificate{ca.Cert}}
	target.roots.AddCert(ca.Cert)

	expect(t, []checkResult{diagnoseChain(target, []*x509.Certificate{leaf}, time.Now())}, "tls", checkOK, nil, nil)
	expect(t, []checkResult{diagnoseChain(target, []*x509.Certificate{leaf}, leaf.NotAfter.Add(-72*time.Hour))}, "tls", checkWarn, []string{"expires in 3d"}, []string{"renew"})
	expect(t, []checkResult{diagnoseChain(target, []*x509.Certificate{leaf}, leaf.NotAfter.Add(time.Hour))}, "tls", checkFail, []string{"expired at", "1h ago"}, []string{"renew"})
	expect(t, []checkResult{diagnoseChain(target, []*x509.Certificate{leaf}, leaf.NotBefore.Add(-time.Hour))}, "tls", checkFail, []string{"is not valid before"}, []string{"clock"})
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestApprox(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		300 * time.Millisecond: "300ms", 1500 * time.Millisecond: "1.5s", 5 * time.Minute: "5m", 10*time.Minute + 30*time.Second: "10m30s",
		time.Hour: "1h", 90 * time.Minute: "1h30m", 24 * time.Hour: "24h", 72 * time.Hour: "3d",
	} {
		if got := approx(d); got != want {
			t.Errorf("approx(%s) = %q, want %q", d, got, want)
		}
	}
}

// TestDoctorIgnoresAnExpiredCertificateNoChainNeeds: a server that sends, after its leaf, an expired CA
// certificate no chain needs (an old cross-sign) verifies for kube-apiserver's TLS, so doctor passes it.
func TestDoctorIgnoresAnExpiredCertificateNoChainNeeds(t *testing.T) {
	t.Parallel()
	ca, err := pki.NewCA("serving-ca")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Serving("clustertrust", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	old, err := pki.NewCA("old-cross-sign")
	if err != nil {
		t.Fatal(err)
	}
	expired := *old.Cert
	expiredDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: expired.Subject, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, old.Cert, old.Key.Public(), old.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert.Certificate = append(cert.Certificate, expiredDER)
	mux := http.NewServeMux()
	mux.Handle("/authenticate", &authn.Handler{Authenticator: stubAuthenticator{}, Log: logr.Discard()})
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	results := newTestDoctor(writeWebhookKubeconfig(t, srv.URL+"/authenticate", "", ca.CertPEM(), nil)).run(context.Background())
	if r := result(t, results, "tls"); r.Status != checkOK {
		t.Fatalf("tls: %s %s", r.Status, r.Message)
	}
}

// TestDoctorNamesTheProxy: a proxy-url in the kubeconfig is what kube-apiserver's client uses; doctor
// sends its reviews through it too (so a dead proxy fails them) and says so.
func TestDoctorNamesTheProxy(t *testing.T) {
	t.Parallel()
	server, ca := startWebhook(t, webhookOpts{})
	kc := writeWebhookKubeconfig(t, server, "", ca.CertPEM(), nil)
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		c.ProxyURL = "http://user:secret@127.0.0.1:9" // nothing listens there
	}
	withProxy := filepath.Join(t.TempDir(), "proxy.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, withProxy); err != nil {
		t.Fatal(err)
	}
	results := newTestDoctor(withProxy).run(context.Background())
	if r := result(t, results, "proxy"); r.Status != checkWarn || !strings.Contains(r.Message, "127.0.0.1:9") || strings.Contains(r.Message, "secret") {
		t.Errorf("proxy: %s %s", r.Status, r.Message)
	}
	if r := result(t, results, "tokenreview"); r.Status != checkFail {
		t.Errorf("a review through a dead proxy: %s %s", r.Status, r.Message)
	}
}

func TestRedactPutsTheTokensHash(t *testing.T) {
	got := redact(`unauthorized: "`+goodToken+`" refused`, goodToken)
	if strings.Contains(got, goodToken) || !strings.Contains(got, "<token "+authn.TokenHash(goodToken)+">") {
		t.Fatalf("redact = %q", got)
	}
}
