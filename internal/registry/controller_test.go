package registry

import (
	"context"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/authn"
	"github.com/clustertrust/clustertrust/internal/testissuer"
)

func newReconciler(t *testing.T, objs ...client.Object) (*Reconciler, *authn.Router, client.Client) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(&v1alpha1.OpenIDConnect{}).Build()
	router := authn.NewRouter()
	r := &Reconciler{
		Objects:      APIObjects(c),
		Router:       router,
		Log:          logr.Discard(),
		EntryOptions: authn.EntryOptions{Compiler: compiler},
	}
	t.Cleanup(func() {
		for _, o := range objs {
			router.Delete(o.GetName())
		}
	})
	return r, router, c
}

var compiler = authn.NewCompiler()

func reconcile(t *testing.T, r *Reconciler, name string) {
	t.Helper()
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: name}}); err != nil {
		t.Fatalf("Reconcile(%s) error = %v", name, err)
	}
}

func get(t *testing.T, c client.Client, name string) *v1alpha1.OpenIDConnect {
	t.Helper()
	var obj v1alpha1.OpenIDConnect
	if err := c.Get(context.Background(), types.NamespacedName{Name: name}, &obj); err != nil {
		t.Fatal(err)
	}
	return &obj
}

func TestReconcile(t *testing.T) {
	t.Parallel()
	iss, err := testissuer.New(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)

	tests := []struct {
		name       string
		spec       v1alpha1.OpenIDConnectSpec
		wantRouted bool
		wantReady  metav1.ConditionStatus
		wantReason string
		wantKeys   metav1.ConditionStatus
	}{
		{
			name:       "static keys",
			spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: iss.URL, Audiences: []string{"a"}, JWKS: &v1alpha1.JWKSSpec{Keys: iss.JWKS()}},
			wantRouted: true, wantReady: metav1.ConditionTrue, wantReason: v1alpha1.ReasonActive, wantKeys: metav1.ConditionTrue,
		},
		{
			name:       "invalid CEL",
			spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: iss.URL, Audiences: []string{"a"}, ClaimMappings: &v1alpha1.ClaimMappings{Username: &v1alpha1.CELExpression{Expression: "claims.("}}},
			wantRouted: false, wantReady: metav1.ConditionFalse, wantReason: v1alpha1.ReasonInvalidSpec,
		},
		{
			name:       "system prefix from a file source",
			spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: iss.URL, Audiences: []string{"a"}, UsernamePrefix: "system:x:"},
			wantRouted: false, wantReady: metav1.ConditionFalse, wantReason: v1alpha1.ReasonInvalidSpec,
		},
		{
			name:       "bad static JWKS",
			spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: iss.URL, Audiences: []string{"a"}, JWKS: &v1alpha1.JWKSSpec{Keys: []byte(`{"keys":[]}`)}},
			wantRouted: false, wantReady: metav1.ConditionFalse, wantReason: v1alpha1.ReasonInvalidSpec,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			obj := &v1alpha1.OpenIDConnect{ObjectMeta: metav1.ObjectMeta{Name: "hub", Generation: 2, UID: "u1"}, Spec: tt.spec}
			r, router, c := newReconciler(t, obj)
			reconcile(t, r, "hub")
			if _, ok := router.Get("hub"); ok != tt.wantRouted {
				t.Fatalf("routed = %v, want %v", ok, tt.wantRouted)
			}
			got := get(t, c, "hub")
			ready := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
			if ready == nil || ready.Status != tt.wantReady || ready.Reason != tt.wantReason || ready.ObservedGeneration != 2 {
				t.Fatalf("Ready = %+v", ready)
			}
			if got.Status.ObservedGeneration != 2 {
				t.Fatalf("observedGeneration = %d", got.Status.ObservedGeneration)
			}
			keys := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionKeysSynced)
			if tt.wantKeys == "" {
				if keys != nil {
					t.Fatalf("KeysSynced = %+v on an unrouted object", keys)
				}
			} else if keys == nil || keys.Status != tt.wantKeys {
				t.Fatalf("KeysSynced = %+v", keys)
			}
		})
	}
}

func TestReconcileKeepsEntryUntilSpecChangesAndRemovesOnDelete(t *testing.T) {
	t.Parallel()
	iss, err := testissuer.New(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	obj := &v1alpha1.OpenIDConnect{
		ObjectMeta: metav1.ObjectMeta{Name: "hub", Generation: 1},
		Spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: iss.URL, Audiences: []string{"a"}, JWKS: &v1alpha1.JWKSSpec{Keys: iss.JWKS()}},
	}
	r, router, c := newReconciler(t, obj)
	reconcile(t, r, "hub")
	first, _ := router.Get("hub")
	reconcile(t, r, "hub")
	if again, _ := router.Get("hub"); again != first {
		t.Fatal("an unchanged object got a new entry")
	}

	cur := get(t, c, "hub")
	cur.Spec.UsernamePrefix = "changed:"
	if err := c.Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	reconcile(t, r, "hub")
	changed, _ := router.Get("hub")
	if changed == first || changed.Config().UsernamePrefix != "changed:" {
		t.Fatal("a changed object kept its old entry")
	}
	if got := get(t, c, "hub").Status.UsernamePrefix; got != "changed:" {
		t.Fatalf("status.usernamePrefix = %q", got)
	}

	if err := c.Delete(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	reconcile(t, r, "hub")
	if _, ok := router.Get("hub"); ok {
		t.Fatal("deleted object still routed")
	}
}

func TestToConfigDefaults(t *testing.T) {
	t.Parallel()
	obj := &v1alpha1.OpenIDConnect{
		ObjectMeta: metav1.ObjectMeta{Name: "hub"},
		Spec:       v1alpha1.OpenIDConnectSpec{IssuerURL: "https://hub.example", ClientID: "legacy", Audiences: []string{"a"}},
	}
	cfg, err := ToConfig(obj)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UsernamePrefix != "hub:" || cfg.GroupsPrefix != "hub:" || cfg.UsernameClaim != "sub" || !cfg.ServiceAccountGroups {
		t.Fatalf("defaults = %+v", cfg)
	}
	if len(cfg.Audiences) != 2 || cfg.Audiences[1] != "legacy" {
		t.Fatalf("audiences = %v, want clientID merged", cfg.Audiences)
	}
	obj.Spec.UsernamePrefix, obj.Spec.GroupsPrefix = "-", "-"
	cfg, _ = ToConfig(obj)
	if cfg.UsernamePrefix != "" || cfg.GroupsPrefix != "" {
		t.Fatalf("disabled prefixes = %q %q", cfg.UsernamePrefix, cfg.GroupsPrefix)
	}
	if ExampleUsername(cfg) != "system:serviceaccount:<namespace>:<name>" {
		t.Fatalf("example = %q", ExampleUsername(cfg))
	}
}

func TestReconcileConflict(t *testing.T) {
	t.Parallel()
	iss, err := testissuer.New(jose.RS256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	spec := func(prefix string) v1alpha1.OpenIDConnectSpec {
		return v1alpha1.OpenIDConnectSpec{IssuerURL: iss.URL, Audiences: []string{"a"}, UsernamePrefix: prefix, JWKS: &v1alpha1.JWKSSpec{Keys: iss.JWKS()}}
	}
	older := &v1alpha1.OpenIDConnect{ObjectMeta: metav1.ObjectMeta{Name: "older", CreationTimestamp: metav1.Unix(1000, 0)}, Spec: spec("old:")}
	newer := &v1alpha1.OpenIDConnect{ObjectMeta: metav1.ObjectMeta{Name: "newer", CreationTimestamp: metav1.Unix(2000, 0)}, Spec: spec("new:")}
	r, router, c := newReconciler(t, older, newer)
	recorder := events.NewFakeRecorder(10)
	r.Recorder = recorder

	reconcile(t, r, "newer")
	reconcile(t, r, "older")
	reconcile(t, r, "newer") // requeued by the older object's arrival

	ready := func(name string) *metav1.Condition {
		return meta.FindStatusCondition(get(t, c, name).Status.Conditions, v1alpha1.ConditionReady)
	}
	if got := ready("newer"); got.Status != metav1.ConditionFalse || got.Reason != v1alpha1.ReasonConflict || !strings.Contains(got.Message, `"older"`) {
		t.Fatalf("newer Ready = %+v, want Conflict naming older", got)
	}
	if got := ready("older"); got.Status != metav1.ConditionTrue {
		t.Fatalf("older Ready = %+v", got)
	}
	if winner, ok := router.Conflict("newer"); !ok || winner != "older" {
		t.Fatalf("router conflict = %q, %v", winner, ok)
	}
	var got []string
	for len(recorder.Events) > 0 {
		got = append(got, <-recorder.Events)
	}
	joined := strings.Join(got, "\n")
	if strings.Count(joined, "Conflict") < 2 {
		t.Fatalf("events = %q, want a Conflict event on each object", got)
	}

	// Deleting the winner routes the newer object once it is reconciled again.
	if err := c.Delete(context.Background(), older); err != nil {
		t.Fatal(err)
	}
	for len(r.events) > 0 {
		<-r.events
	}
	reconcile(t, r, "older")
	if len(r.events) == 0 {
		t.Fatal("deleting the winner did not requeue the object it shadowed")
	}
	ev := <-r.events
	reconcile(t, r, ev.Object.GetName())
	if got := ready("newer"); got.Status != metav1.ConditionTrue {
		t.Fatalf("newer Ready after the winner left = %+v", got)
	}
}
