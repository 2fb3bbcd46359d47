package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	authenticationcel "k8s.io/apiserver/pkg/authentication/cel"
	ctrl "sigs.k8s.io/controller-runtime"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/authn"
	"github.com/clustertrust/clustertrust/internal/testissuer"
)

// TestReadinessStaysOnceReached: a replica that has been ready stays ready when a new object arrives
// whose keys are still loading. A readiness that dropped on every new object would take every replica
// out of the Service during a burst of creates.
func TestReadinessStaysOnceReached(t *testing.T) {
	t.Parallel()
	hub, err := testissuer.New(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	slow, err := testissuer.New(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(slow.Close)
	slow.SetDelay(3 * time.Second) // its first key load is still running while the test looks

	dir := t.TempDir()
	writeFileT(t, filepath.Join(dir, "hub.yaml"), fmt.Sprintf(`apiVersion: authentication.clustertrust.io/v1alpha1
kind: OpenIDConnect
metadata: {name: hub}
spec:
  issuerURL: %q
  audiences: [downstream]
  jwks: {keys: %s}
`, hub.URL, base64.StdEncoding.EncodeToString(hub.JWKS())))
	src, router := startFileSource(t, dir, logr.Discard(), "hub", "slow")
	ready := src.ReadyChecker()
	eventually(t, "ready with hub", func() bool { return ready(nil) == nil })

	writeFileT(t, filepath.Join(dir, "slow.yaml"), fmt.Sprintf(`apiVersion: authentication.clustertrust.io/v1alpha1
kind: OpenIDConnect
metadata: {name: slow}
spec:
  issuerURL: %q
  audiences: [downstream]
  caBundle: %s
`, slow.URL, base64.StdEncoding.EncodeToString(slow.CAPEM())))
	eventually(t, "slow routed", func() bool { _, ok := router.Get("slow"); return ok })
	if e, _ := router.Get("slow"); e.KeyStatus().Attempted {
		t.Fatal("slow's first key load finished already; the test needs it running")
	}
	if err := ready(nil); err != nil {
		t.Fatalf("readiness dropped when a new object arrived: %v", err)
	}
}

// TestRoutedAs: with an informer, Reconcile reports what the informer's event handler routed. It waits
// for a version the handler has not reached, and drops one older than the handler's.
func TestRoutedAs(t *testing.T) {
	t.Parallel()
	key, err := testissuer.NewKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	obj := staticObject(t, "routed-as", key)
	r, router, c := newReconciler(t, obj)
	r.fromInformer = func() bool { return true }
	stored := get(t, c, "routed-as")

	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: "routed-as"}})
	if err != nil || res.RequeueAfter == 0 {
		t.Fatalf("Reconcile before the handler routed = %+v, %v; want a requeue", res, err)
	}
	if _, ok := router.Get("routed-as"); ok {
		t.Fatal("Reconcile routed; with an informer only its event handler routes")
	}

	r.routeObject(stored)
	reconcile(t, r, "routed-as")
	if got := get(t, c, "routed-as"); !isReady(got) {
		t.Fatalf("status after the handler routed = %+v", got.Status)
	}

	older := stored.DeepCopy()
	newer := stored.DeepCopy()
	newer.Generation++
	newer.Spec.UsernamePrefix = "newer:"
	r.routeObject(newer)
	if e, _ := router.Get("routed-as"); e.Config().UsernamePrefix != "newer:" {
		t.Fatalf("routed prefix %q, want newer:", e.Config().UsernamePrefix)
	}
	if _, pending, stale, _ := r.routedAs(older); pending || !stale {
		t.Fatalf("routedAs(older) pending=%v stale=%v; want stale", pending, stale)
	}
	if _, pending, stale, _ := r.routedAs(newer); pending || stale {
		t.Fatalf("routedAs(newer) pending=%v stale=%v; want neither", pending, stale)
	}
	recreated := newer.DeepCopy()
	recreated.UID = "another-uid"
	recreated.Generation = 1
	if _, pending, _, _ := r.routedAs(recreated); !pending {
		t.Fatal("routedAs of a recreated object (new uid) is not pending")
	}
}

// TestStatusWritesYieldToArrivals: while objects keep arriving, status writes trickle; once arrivals
// pause they go at once.
func TestStatusWritesYieldToArrivals(t *testing.T) {
	t.Parallel()
	r := &Reconciler{}
	r.init()
	r.arrived()
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				r.arrived()
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	var passed atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100_000 { // bounded: an unyielding writer would spin through it at once
			if r.yieldToArrivals(ctx) != nil || ctx.Err() != nil {
				return
			}
			passed.Add(1)
			time.Sleep(time.Microsecond)
		}
	}()
	const window = 500 * time.Millisecond
	time.Sleep(window)
	during := passed.Load()
	close(stop)
	// The trickle allows trickleRate a second after a burst of one; allow generous slack for a slow
	// machine, but nowhere near the unbounded loop an unyielding writer would run.
	if limit := int64(1 + trickleRate*window.Seconds()*4); during > limit {
		t.Fatalf("%d status writes went ahead during %s of arrivals; the trickle allows about %d", during, window, limit/4)
	}
	eventually(t, "writes go ahead once arrivals pause", func() bool { return passed.Load() > during+100 })
	cancel()
	<-done
}

func staticObject(t testing.TB, name string, key testissuer.Key) *v1alpha1.OpenIDConnect {
	t.Helper()
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Private.Public(), KeyID: key.KID, Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &v1alpha1.OpenIDConnect{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name + "-uid"), Generation: 1},
		Spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: "https://" + name + ".example", Audiences: []string{"downstream"}, JWKS: &v1alpha1.JWKSSpec{Keys: jwks}},
	}
}

func isReady(obj *v1alpha1.OpenIDConnect) bool {
	c := readyCondition(obj)
	return c != nil && c.Status == metav1.ConditionTrue
}

// TestSameGenerationSpecChangeIsRouted: a spec can change without a new generation (a default the CRD
// gained, applied as objects are read from storage); the informer's handler routes it all the same.
func TestSameGenerationSpecChangeIsRouted(t *testing.T) {
	t.Parallel()
	key, err := testissuer.NewKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	obj := staticObject(t, "same-generation", key)
	r, router, _ := newReconciler(t, obj)
	r.fromInformer = func() bool { return true }
	r.onAdd(obj)
	changed := obj.DeepCopy()
	changed.Spec.UsernamePrefix = "defaulted:"
	r.onUpdate(obj, changed)
	if e, ok := router.Get("same-generation"); !ok || e.Config().UsernamePrefix != "defaulted:" {
		t.Fatalf("routed %+v after a same-generation spec change, want prefix defaulted:", e)
	}
}

// panickyCompiler panics on any use, as a bug in building an entry would.
type panickyCompiler struct{ authenticationcel.Compiler }

// TestPanicWhileRoutingIsReportedNotFatal: a panic while building an entry on the informer's goroutine
// is recovered and reported as an invalid spec, instead of ending the process on every replica.
func TestPanicWhileRoutingIsReportedNotFatal(t *testing.T) {
	t.Parallel()
	key, err := testissuer.NewKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	obj := staticObject(t, "panicky", key)
	obj.Spec.ClaimMappings = &v1alpha1.ClaimMappings{Username: &v1alpha1.CELExpression{Expression: "claims.sub"}}
	r, router, c := newReconciler(t, obj)
	r.EntryOptions.Compiler = panickyCompiler{}
	r.fromInformer = func() bool { return true }
	r.onAdd(obj)
	if _, ok := router.Get("panicky"); ok {
		t.Fatal("an entry that panicked while building is routed")
	}
	reconcile(t, r, "panicky")
	if got := get(t, c, "panicky"); !hasReason(got, v1alpha1.ReasonInvalidSpec) {
		t.Fatalf("status after a panic = %+v, want InvalidSpec", got.Status)
	}
}

// TestTerminatingObjectsDoNotHoldReadiness: an object held by a finalizer is never routed; a replica
// starting meanwhile must still become ready.
func TestTerminatingObjectsDoNotHoldReadiness(t *testing.T) {
	t.Parallel()
	key, err := testissuer.NewKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	obj := staticObject(t, "terminating", key)
	now := metav1.Now()
	obj.DeletionTimestamp = &now
	r := &Reconciler{Router: authn.NewRouter()}
	if err := r.unready([]v1alpha1.OpenIDConnect{*obj}); err != nil {
		t.Fatalf("a terminating object holds readiness: %v", err)
	}
}
