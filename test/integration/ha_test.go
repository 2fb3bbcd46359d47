//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/testissuer"
	"github.com/clustertrust/clustertrust/test/framework"
)

const leaseName = "clustertrust-ha-test"

// replica is one `webhook serve --leader-elect` process.
type replica struct {
	name    string
	cmd     *exec.Cmd
	url     string // /authenticate
	probes  string
	metrics string
	log     string
	exited  chan struct{}
}

// TestTwoReplicas runs two webhook processes with leader election against a kube-apiserver of their own
// (so no other webhook writes status there) and checks what HA promises: both replicas answer every
// review the same, a replica answers correctly from its first ready moment, only the leader writes
// status, and when the leader dies the other takes over the Lease and reports on what changed meanwhile.
func TestTwoReplicas(t *testing.T) {
	ctx := context.Background()
	bin := buildWebhook(t)
	c, kubeconfig := ownAPIServer(t)

	iss, err := testissuer.New(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	first := newOIDC("ha-first", iss)
	if err := c.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	token, err := iss.Mint(testissuer.ServiceAccountClaims("tenant-a", "reconciler", audience))
	if err != nil {
		t.Fatal(err)
	}
	const want = "ha-first:system:serviceaccount:tenant-a:reconciler"

	a := startReplica(t, bin, "a", kubeconfig)
	framework.Eventually(t, 60*time.Second, "replica a leads", func() error { return a.leading(true) })
	waitReady(t, c, "ha-first")

	// b must answer correctly the first moment it reports ready: poll fast and review at once.
	b := startReplica(t, bin, "b", kubeconfig)
	framework.Eventually(t, 60*time.Second, "replica b ready", func() error { _, err := framework.Get(b.probes + "/readyz"); return err })
	for _, r := range []*replica{b, a} {
		if st := reviewAt(t, r, token); !st.Authenticated || st.User.Username != want {
			t.Fatalf("replica %s answered %+v, want %s", r.name, st, want)
		}
	}
	if err := b.leading(false); err != nil {
		t.Fatal(err)
	}

	// Freeze the leader: it can neither write nor renew. b still routes a new object at once, and does
	// not write its status.
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	iss2, err := testissuer.New(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	defer iss2.Close()
	if err := c.Create(ctx, newOIDC("ha-second", iss2)); err != nil {
		t.Fatal(err)
	}
	token2, err := iss2.Mint(testissuer.ServiceAccountClaims("ci", "runner", audience))
	if err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 10*time.Second, "follower b routes ha-second", func() error {
		if st := reviewAt(t, b, token2); !st.Authenticated {
			return fmt.Errorf("not authenticated: %s", st.Error)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // long enough for a write that should not happen to land
	var second v1alpha1.OpenIDConnect
	if err := c.Get(ctx, client.ObjectKey{Name: "ha-second"}, &second); err != nil {
		t.Fatal(err)
	}
	if len(second.Status.Conditions) != 0 {
		t.Fatalf("the follower wrote status: %+v", second.Status.Conditions)
	}

	// Kill the leader: b takes the Lease over when it expires and reports on ha-second.
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.exited
	took := framework.Eventually(t, 60*time.Second, "replica b takes over", func() error { return b.leading(true) })
	t.Logf("replica b took the Lease over %s after the leader was killed (Lease duration 15s)", took.Round(100*time.Millisecond))
	waitReady(t, c, "ha-second")
	if st := reviewAt(t, b, token); !st.Authenticated || st.User.Username != want {
		t.Fatalf("after the takeover b answered %+v", st)
	}
}

// buildWebhook builds the webhook binary for tests that run their own replicas.
func buildWebhook(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "webhook")
	if out, err := exec.CommandContext(context.Background(), "go", "build", "-o", bin, "../../cmd/webhook").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// ownAPIServer starts a kube-apiserver (and etcd) for one test, so no other webhook writes status
// there, and returns a client of it and a kubeconfig file of a system:masters user for the webhook.
func ownAPIServer(t *testing.T) (client.WithWatch, string) {
	t.Helper()
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: os.Getenv("KUBEBUILDER_ASSETS"),
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	_ = v1alpha1.AddToScheme(scheme)
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	user, err := env.AddUser(envtest.User{Name: "clustertrust", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfigBytes, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kubeconfigBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return c, kubeconfig
}

// startReplica starts `webhook serve --leader-elect` with the test's serving certificate and, after the
// suite's flags, extra.
func startReplica(t *testing.T, bin, name, kubeconfig string, extra ...string) *replica {
	t.Helper()
	ports := make([]string, 3)
	for i := range ports {
		p, err := framework.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = strconv.Itoa(p)
	}
	r := &replica{
		name:    name,
		url:     "https://127.0.0.1:" + ports[0] + "/authenticate",
		metrics: "http://127.0.0.1:" + ports[1] + "/metrics",
		probes:  "http://127.0.0.1:" + ports[2],
		log:     filepath.Join(t.TempDir(), name+".log"),
		exited:  make(chan struct{}),
	}
	logFile, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve",
		"--kubeconfig", kubeconfig, "--leader-elect", "--leader-election-namespace", "default", "--leader-election-id", leaseName,
		"--bind-address", "127.0.0.1", "--secure-port", ports[0],
		"--tls-cert-file", servingCertFile, "--tls-private-key-file", servingKeyFile,
		"--metrics-bind-address", "127.0.0.1:" + ports[1], "--health-probe-bind-address", "127.0.0.1:" + ports[2],
		"--shutdown-timeout", "2s", "--v", "1"}, extra...)
	r.cmd = exec.CommandContext(context.Background(), bin, args...) //nolint:gosec // G204: the binary this test built
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); _ = logFile.Close(); close(r.exited) }()
	t.Cleanup(func() {
		select {
		case <-r.exited:
		default:
			_ = r.cmd.Process.Signal(syscall.SIGCONT)
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-r.exited:
			case <-time.After(10 * time.Second):
				_ = r.cmd.Process.Kill()
				<-r.exited
			}
		}
		if t.Failed() {
			logs, _ := os.ReadFile(r.log)
			t.Logf("--- replica %s log:\n%s", r.name, logs)
		}
	})
	return r
}

// leading checks the replica's own view of the election (controller-runtime's
// leader_election_master_status gauge).
func (r *replica) leading(want bool) error {
	body, err := framework.Get(r.metrics)
	if err != nil {
		return err
	}
	line := fmt.Sprintf(`leader_election_master_status{name="%s"} 1`, leaseName)
	if got := strings.Contains(body, line); got != want {
		return fmt.Errorf("replica %s leading = %v, want %v", r.name, got, want)
	}
	return nil
}

func reviewAt(t *testing.T, r *replica, token string) authenticationv1.TokenReviewStatus {
	t.Helper()
	return framework.ReviewDirect(t, r.url, webhookCA, nil, token, audience)
}

func waitReady(t *testing.T, c client.Client, name string) {
	t.Helper()
	framework.Eventually(t, 60*time.Second, name+" Ready", func() error {
		var obj v1alpha1.OpenIDConnect
		if err := c.Get(context.Background(), client.ObjectKey{Name: name}, &obj); err != nil {
			return err
		}
		if cond := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady); cond == nil || cond.Status != metav1.ConditionTrue {
			return errors.New("not Ready yet")
		}
		return nil
	})
}
