//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/testissuer"
	"github.com/clustertrust/clustertrust/test/framework"
)

// TestRoutingDoesNotWaitForStatus runs the webhook against a kube-apiserver of its own with status
// writes throttled to one a second, creates many objects at once, and checks what issue #14 asks of
// the control loop:
//   - every new object authenticates promptly, however many status writes are queued;
//   - a restarted replica is ready only once it answers for every stored object, and writes nothing
//     when every stored status is already right.
func TestRoutingDoesNotWaitForStatus(t *testing.T) {
	ctx := context.Background()
	bin := buildWebhook(t)
	c, kubeconfig := ownAPIServer(t)

	key, err := testissuer.NewKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Private.Public(), KeyID: key.KID, Use: "sig"}}})
	const n = 60
	tokens := make([]string, n)
	for i := range tokens {
		if tokens[i], err = testissuer.Sign(key, testissuer.Claims{"iss": arrivalIssuer(i), "sub": "alice", "aud": audience, "exp": time.Now().Add(time.Hour).Unix()}, nil); err != nil {
			t.Fatal(err)
		}
	}

	// One status write a second: a control loop that routes only after writing status would take about
	// a minute to route 60 objects.
	a := startReplica(t, bin, "throttled", kubeconfig, "--kube-api-qps", "1", "--kube-api-burst", "1")
	framework.Eventually(t, 60*time.Second, "throttled replica ready", func() error { _, err := framework.Get(a.probes + "/readyz"); return err })
	for i := range n {
		obj := &v1alpha1.OpenIDConnect{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("arrival-%d", i),
				// The informer's cache drops annotations; the status writes must keep them.
				Annotations: map[string]string{lastApplied: `{"kind":"OpenIDConnect"}`}},
			Spec: v1alpha1.OpenIDConnectSpec{IssuerURL: arrivalIssuer(i), Audiences: []string{audience}, JWKS: &v1alpha1.JWKSSpec{Keys: jwks}},
		}
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	framework.Eventually(t, 15*time.Second, "every new object authenticates", func() error {
		for i, tok := range tokens {
			if st := reviewAt(t, a, tok); !st.Authenticated {
				return fmt.Errorf("arrival-%d: not authenticated: %s", i, st.Error)
			}
		}
		return nil
	})
	stopReplica(t, a)

	// A replica at the default client rate reports every object.
	b := startReplica(t, bin, "reporting", kubeconfig)
	framework.Eventually(t, 120*time.Second, "every object Ready", func() error {
		var list v1alpha1.OpenIDConnectList
		if err := c.List(ctx, &list); err != nil {
			return err
		}
		for _, o := range list.Items {
			if !meta.IsStatusConditionTrue(o.Status.Conditions, v1alpha1.ConditionReady) {
				return fmt.Errorf("%s is not Ready yet", o.Name)
			}
		}
		return nil
	})
	var kept v1alpha1.OpenIDConnect
	if err := c.Get(ctx, client.ObjectKey{Name: "arrival-0"}, &kept); err != nil {
		t.Fatal(err)
	}
	if kept.Annotations[lastApplied] == "" {
		t.Fatalf("a status write dropped the object's annotations: %v", kept.Annotations)
	}
	stopReplica(t, b)

	// Restart with everything stored and reported: the first ready moment answers for every object, and
	// no status is written.
	var list v1alpha1.OpenIDConnectList
	if err := c.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(ctx, &v1alpha1.OpenIDConnectList{}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	restarted := startReplica(t, bin, "restarted", kubeconfig)
	framework.Eventually(t, 60*time.Second, "restarted replica ready", func() error { _, err := framework.Get(restarted.probes + "/readyz"); return err })
	for i, tok := range tokens {
		if st := reviewAt(t, restarted, tok); !st.Authenticated {
			t.Fatalf("arrival-%d: the restarted replica refused a token at its first ready moment: %s", i, st.Error)
		}
	}
	framework.Eventually(t, 60*time.Second, "restarted replica leads", func() error { return restarted.leading(true) })
	var writes []string
	for deadline := time.After(3 * time.Second); ; {
		select {
		case ev := <-w.ResultChan():
			if ev.Type == watch.Modified {
				writes = append(writes, ev.Object.(*v1alpha1.OpenIDConnect).Name)
			}
			continue
		case <-deadline:
		}
		break
	}
	if len(writes) > 0 {
		slices.Sort(writes)
		t.Fatalf("the restarted replica rewrote the unchanged status of %d objects: %v", len(writes), writes)
	}
}

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

func arrivalIssuer(i int) string { return fmt.Sprintf("https://arrival-%d.example", i) }

// stopReplica ends r with SIGTERM, as a rollout does.
func stopReplica(t *testing.T, r *replica) {
	t.Helper()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("replica %s did not stop on SIGTERM", r.name)
	}
}
