// Package framework holds the helpers the integration and e2e suites share: polling, posting a
// TokenReview straight to the webhook, asking a kube-apiserver who a token is, reading conditions, and
// fetching probes and metrics.
package framework

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
)

// Eventually polls cond every 50ms until it returns nil and returns how long that took; it fails the
// test with cond's last error after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = cond(); err == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
	return 0
}

// ReviewDirect posts a TokenReview straight to the webhook at url (trusting caPEM, presenting
// clientCert when not nil), bypassing kube-apiserver and its cache.
func ReviewDirect(t testing.TB, url string, caPEM []byte, clientCert *tls.Certificate, token string, audiences ...string) authenticationv1.TokenReviewStatus {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	body, err := json.Marshal(authenticationv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec:     authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences},
	})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
	var review authenticationv1.TokenReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
		t.Fatalf("decode TokenReview: %v", err)
	}
	return review.Status
}

// TokenConfig is a client configuration for the API server of base that authenticates with token only.
func TokenConfig(base *rest.Config, token string) *rest.Config {
	cfg := rest.AnonymousClientConfig(base)
	cfg.BearerToken = token
	return cfg
}

// Whoami asks the API server of base who token is (a SelfSubjectReview) and returns the username.
func Whoami(ctx context.Context, base *rest.Config, token string) (string, error) {
	c, err := kubernetes.NewForConfig(TokenConfig(base, token))
	if err != nil {
		return "", err
	}
	r, err := c.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return r.Status.UserInfo.Username, nil
}

// Condition returns condition typ of the OpenIDConnect name, with the object.
func Condition(ctx context.Context, c client.Client, name, typ string) (*metav1.Condition, *v1alpha1.OpenIDConnect, error) {
	var obj v1alpha1.OpenIDConnect
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &obj); err != nil {
		return nil, nil, err
	}
	cond := meta.FindStatusCondition(obj.Status.Conditions, typ)
	if cond == nil {
		return nil, &obj, fmt.Errorf("no %s condition yet", typ)
	}
	return cond, &obj, nil
}

// WaitCondition waits until condition typ of the OpenIDConnect name has status and, when not empty,
// reason, with a message containing messagePart.
func WaitCondition(t testing.TB, c client.Client, name, typ string, status metav1.ConditionStatus, reason, messagePart string) {
	t.Helper()
	Eventually(t, 30*time.Second, fmt.Sprintf("%s %s=%s %s", name, typ, status, reason), func() error {
		cond, _, err := Condition(context.Background(), c, name, typ)
		if err != nil {
			return err
		}
		if cond.Status != status || (reason != "" && cond.Reason != reason) || !strings.Contains(cond.Message, messagePart) {
			return fmt.Errorf("%s = %s/%s: %s", typ, cond.Status, cond.Reason, cond.Message)
		}
		return nil
	})
}

// Get fetches url over plain HTTP (probes, metrics) and returns the body; a status other than 200 is an
// error carrying the body.
func Get(url string) (string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return string(body), err
}

// SyncBuffer collects what a running server or child process writes while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// SubsetSelected reports whether -run or -skip narrowed the tests of this run. Call it before
// RunAfterSuite, which resets them.
func SubsetSelected() bool {
	return flag.Lookup("test.run").Value.String() != "" || flag.Lookup("test.skip").Value.String() != ""
}

// RunAfterSuite runs checks that must see the effects of the whole suite, once, after m.Run. They are
// not tests of the package (their functions are not named Test*), so -run, -skip and -shuffle cannot
// leave them out or run them early; -list runs neither tests nor checks. testing.RunTests gives each a
// real *testing.T, so they share the tests' helpers and report like tests; it applies -run, -skip,
// -count and -failfast itself, so those are reset first. It reports whether every check passed.
func RunAfterSuite(checks ...testing.InternalTest) bool {
	if flag.Lookup("test.list").Value.String() != "" {
		return true
	}
	for name, value := range map[string]string{"test.run": "", "test.skip": "", "test.count": "1", "test.failfast": "false"} {
		if err := flag.Set(name, value); err != nil {
			fmt.Fprintf(os.Stderr, "could not reset -%s for the after-suite checks: %v\n", name, err)
			return false
		}
	}
	return testing.RunTests(func(string, string) (bool, error) { return true, nil }, checks)
}
