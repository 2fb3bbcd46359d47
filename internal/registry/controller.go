// Package registry is clustertrust's control loop: it turns OpenIDConnect objects into authn issuer
// entries, stores them in the router the request path reads, and reports what it found in each object's
// status conditions and events.
package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/authn"
)

// Router is what the reconciler needs of the request path's router.
type Router interface {
	Store(key string, e *authn.Entry)
	Delete(key string)
	Get(key string) (*authn.Entry, bool)
	Conflict(key string) (winner string, conflicting bool)
}

// The permissions the reconciler needs; `make manifests` turns them into config/rbac/role.yaml.
// +kubebuilder:rbac:groups=authentication.clustertrust.io,resources=openidconnects,verbs=get;list;watch
// +kubebuilder:rbac:groups=authentication.clustertrust.io,resources=openidconnects/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Objects is where the reconciler reads OpenIDConnect objects and writes their status: the Kubernetes
// API (APIObjects) or, for `serve --source=file`, a directory of manifests (FileSource).
type Objects interface {
	// Get returns the object called name, or an error for which apierrors.IsNotFound holds.
	Get(ctx context.Context, name string) (*v1alpha1.OpenIDConnect, error)
	// UpdateStatus stores obj.Status; a conflict or a vanished object is not an error worth retrying.
	UpdateStatus(ctx context.Context, obj *v1alpha1.OpenIDConnect) error
}

// APIObjects reads objects through a controller-runtime client (the manager's informer cache) and
// writes status through the status subresource.
func APIObjects(c client.Client) Objects { return apiObjects{c} }

type apiObjects struct{ c client.Client }

func (a apiObjects) Get(ctx context.Context, name string) (*v1alpha1.OpenIDConnect, error) {
	var obj v1alpha1.OpenIDConnect
	if err := a.c.Get(ctx, client.ObjectKey{Name: name}, &obj); err != nil {
		return nil, err
	}
	return &obj, nil
}

func (a apiObjects) UpdateStatus(ctx context.Context, obj *v1alpha1.OpenIDConnect) error {
	return a.c.Status().Update(ctx, obj)
}

// Reconciler keeps the router equal to the set of valid OpenIDConnect objects.
type Reconciler struct {
	Objects  Objects
	Router   Router
	Recorder events.EventRecorder
	Log      logr.Logger
	// LeaderOnlyWrites makes status and event writes wait until this replica is the leader (see
	// SetupWithManager); every replica still builds its own router from every object.
	LeaderOnlyWrites bool
	// EntryOptions are passed to every entry; OnRefresh is set by the reconciler.
	EntryOptions authn.EntryOptions
	// RefreshInterval and MinRefetchInterval override the key set defaults when non-zero.
	RefreshInterval    time.Duration
	MinRefetchInterval time.Duration

	leading atomic.Bool
	mu      sync.Mutex
	built   map[string]built // name -> what its routed entry was built from
	invalid map[string]int64 // name -> generation found invalid
	events  chan event.GenericEvent
}

// built records the configuration a routed entry came from.
type built struct {
	hash   string
	issuer string
}

// SetupWithManager registers the reconciler. Key refreshes, which happen outside any API event, are fed
// back in through a channel so their outcome reaches the status promptly.
//
// The controller runs on every replica, leader or not: each replica serves reviews from its own router.
// With LeaderOnlyWrites, status and events are written only once the manager has won the leader
// election; at that moment every object is reconciled again, so the new leader reports what it sees
// even for objects that did not change.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.init()
	if r.LeaderOnlyWrites {
		if err := mgr.Add(&leaderTakeover{r: r, c: mgr.GetCache()}); err != nil {
			return err
		}
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("openidconnect").
		For(&v1alpha1.OpenIDConnect{}).
		WatchesRawSource(source.Channel(r.events, &handler.EnqueueRequestForObject{})).
		// Reconciles of different objects are independent (the router and the reconciler's maps are
		// safe for concurrent use); running several at once overlaps the status writes' round trips,
		// which dominate the time to report on thousands of objects.
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false), MaxConcurrentReconciles: 8}).
		Complete(r)
}

// WritesStatus reports whether this replica writes status and events: always without
// LeaderOnlyWrites, otherwise once it is the elected leader.
func (r *Reconciler) WritesStatus() bool { return !r.LeaderOnlyWrites || r.leading.Load() }

// leaderTakeover is a runnable that the manager starts only on the elected leader.
type leaderTakeover struct {
	r *Reconciler
	c cache.Cache
}

func (l *leaderTakeover) NeedLeaderElection() bool { return true }

func (l *leaderTakeover) Start(ctx context.Context) error {
	l.r.leading.Store(true)
	l.r.Log.Info("Elected leader: this replica now writes status")
	if !l.c.WaitForCacheSync(ctx) {
		return nil // shutting down
	}
	var list v1alpha1.OpenIDConnectList
	if err := l.c.List(ctx, &list); err != nil {
		return fmt.Errorf("could not list OpenIDConnects after the election: %w", err)
	}
	for i := range list.Items {
		ev := event.GenericEvent{Object: &list.Items[i]}
		select {
		case l.r.events <- ev: // waits for room: unlike a key refresh, a takeover must reach every object
		case <-ctx.Done():
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

func (r *Reconciler) init() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.built == nil {
		r.built = map[string]built{}
		r.invalid = map[string]int64{}
		r.events = make(chan event.GenericEvent, 1024)
	}
}

// Reconcile builds, replaces or removes the entry of one object and writes its status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	r.init()
	name := req.Name
	log := r.Log.WithValues("openidconnect", name)
	obj, err := r.Objects.Get(ctx, name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(name)
			log.V(1).Info("Issuer removed")
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("could not get OpenIDConnect %q: %w", name, err)
	}
	if !obj.DeletionTimestamp.IsZero() {
		r.forget(name)
		return ctrl.Result{}, nil
	}

	cfg, err := ToConfig(obj)
	var entry *authn.Entry
	if err == nil {
		entry, err = r.ensureEntry(name, cfg, log)
	}
	if err != nil {
		r.forget(name)
		r.mu.Lock()
		r.invalid[name] = obj.Generation
		r.mu.Unlock()
		log.V(1).Info("Invalid issuer spec", "error", err.Error())
		if obj.Status.ObservedGeneration != obj.Generation || !hasReason(obj, v1alpha1.ReasonInvalidSpec) {
			r.event(obj, corev1.EventTypeWarning, v1alpha1.ReasonInvalidSpec, err.Error())
		}
		return ctrl.Result{}, r.writeStatus(ctx, obj, invalidStatus(obj, err))
	}
	status := entryStatus(obj, cfg, entry.KeyStatus())
	if winner, conflicting := r.Router.Conflict(name); conflicting {
		setCondition(&status, obj, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonConflict, fmt.Sprintf(
			"not routed: the older OpenIDConnect %q has the same issuer and overlapping audiences but maps usernames differently; the older object wins", winner))
		if !hasReason(obj, v1alpha1.ReasonConflict) {
			r.eventOn(ctx, winner, corev1.EventTypeWarning, v1alpha1.ReasonConflict, fmt.Sprintf(
				"the newer OpenIDConnect %q has the same issuer and overlapping audiences but maps usernames differently; it is not routed", name))
		}
	}
	return ctrl.Result{}, r.writeStatus(ctx, obj, status)
}

// ensureEntry returns the routed entry for name, building and routing a new one when the object's
// spec changed since the last build.
func (r *Reconciler) ensureEntry(name string, cfg authn.Config, log logr.Logger) (*authn.Entry, error) {
	hash := configHash(cfg)
	r.mu.Lock()
	previous := r.built[name]
	r.mu.Unlock()
	same := previous.hash == hash
	if e, ok := r.Router.Get(name); ok && same {
		return e, nil
	}
	if r.RefreshInterval != 0 {
		cfg.RefreshInterval = r.RefreshInterval
	}
	if r.MinRefetchInterval != 0 {
		cfg.MinRefetchInterval = r.MinRefetchInterval
	}
	opts := r.EntryOptions
	opts.Log = r.Log.WithValues("openidconnect", name)
	opts.OnRefresh = func() { r.enqueue(name) }
	entry, err := authn.NewEntry(cfg, opts)
	if err != nil {
		return nil, err
	}
	entry.Start()
	r.Router.Store(name, entry) // swaps the new entry in, then closes the old one
	r.mu.Lock()
	r.built[name] = built{hash: hash, issuer: cfg.Issuer}
	delete(r.invalid, name)
	r.mu.Unlock()
	log.V(1).Info("Issuer routed", "issuer", cfg.Issuer)
	r.enqueueSharing(name, previous.issuer, cfg.Issuer)
	return entry, nil
}

// forget stops routing name. It is the whole of deletion: tokens are refused from here on.
func (r *Reconciler) forget(name string) {
	r.Router.Delete(name)
	r.mu.Lock()
	previous, ok := r.built[name]
	delete(r.built, name)
	delete(r.invalid, name)
	r.mu.Unlock()
	if ok {
		r.enqueueSharing(name, previous.issuer)
	}
}

// enqueueSharing requeues the other objects of the given issuers: a change to one entry can start or
// end a conflict for them. It runs only when routing changed, so two objects never requeue each other
// forever.
func (r *Reconciler) enqueueSharing(name string, issuers ...string) {
	r.mu.Lock()
	var others []string
	for other, b := range r.built {
		if other != name && slices.Contains(issuers, b.issuer) {
			others = append(others, other)
		}
	}
	r.mu.Unlock()
	for _, other := range others {
		r.enqueue(other)
	}
}

// enqueue asks for a reconcile of name without blocking the key set that calls it.
func (r *Reconciler) enqueue(name string) {
	ev := event.GenericEvent{Object: &v1alpha1.OpenIDConnect{ObjectMeta: metav1.ObjectMeta{Name: name}}}
	select {
	case r.events <- ev:
	default:
		// The queue is full of pending reconciles, each of which reads the latest key status anyway.
	}
}

// writeStatus updates the status subresource when it differs from what is stored.
func (r *Reconciler) writeStatus(ctx context.Context, obj *v1alpha1.OpenIDConnect, status v1alpha1.OpenIDConnectStatus) error {
	if equality.Semantic.DeepEqual(obj.Status, status) {
		return nil
	}
	if !r.WritesStatus() {
		return nil // a follower keeps its router current; the leader reports
	}
	before := readyCondition(obj)
	obj.Status = status
	if err := r.Objects.UpdateStatus(ctx, obj); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // a newer version is queued already, or the object is gone
		}
		return fmt.Errorf("could not update status of OpenIDConnect %q: %w", obj.Name, err)
	}
	// An event marks a change of Ready: a problem (Warning), or a recovery from one (Normal). An
	// object that is Ready the first time it is reported gets none: its status says so, and loading
	// 10,000 objects should not also write 10,000 events.
	if after := readyCondition(obj); readyChanged(before, after) {
		switch {
		case after.Reason == v1alpha1.ReasonInvalidSpec: // Reconcile records it with the error
		case after.Status != metav1.ConditionTrue:
			r.event(obj, corev1.EventTypeWarning, after.Reason, after.Message)
		case before != nil:
			r.event(obj, corev1.EventTypeNormal, after.Reason, after.Message)
		}
	}
	return nil
}

// eventOn records an event on the object called name, if it still exists.
func (r *Reconciler) eventOn(ctx context.Context, name, kind, reason, message string) {
	if obj, err := r.Objects.Get(ctx, name); err == nil {
		r.event(obj, kind, reason, message)
	}
}

func (r *Reconciler) event(obj *v1alpha1.OpenIDConnect, kind, reason, message string) {
	if r.Recorder != nil && r.WritesStatus() {
		r.Recorder.Eventf(obj, nil, kind, reason, "Reconcile", "%s", message)
	}
}

// configHash identifies a configuration, so an unchanged object keeps its entry (and its keys).
func configHash(cfg authn.Config) string {
	b, _ := json.Marshal(cfg) // Config holds only plain data
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
