// Package registry is clustertrust's control loop: it turns OpenIDConnect objects into authn issuer
// entries, stores them in the router the request path reads, and reports what it found in each object's
// status conditions and events.
package registry

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
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
	// routeMu serializes routing: with an informer, only its event handler routes; without one (the
	// file source), Reconcile does.
	routeMu sync.Mutex
	mu      sync.Mutex
	built   map[string]built       // name -> what its routed entry was built from
	byIssr  map[string][]string    // issuer -> the names in built with that issuer
	invalid map[string]invalidSpec // name -> the version found invalid, and why
	events  chan event.GenericEvent
	// fromInformer is set when the informer's event handler routes (SetupWithManager); it then reports
	// whether the handler has routed the informer's initial list.
	fromInformer func() bool
	// arrivals is when the informer last delivered a new object or a spec change (UnixNano); status
	// writes yield to arrivals (see yieldToArrivals).
	arrivals atomic.Int64
	// trickle paces the status writes made while objects are still arriving.
	trickle *rate.Limiter
	// ready latches once the replica has been ready (see readiness.go).
	ready atomic.Bool
}

// built records the configuration a routed entry came from, and the version of the object.
type built struct {
	hash    [sha256.Size]byte
	issuer  string
	version version
}

// invalidSpec records the version of an object found invalid, and why.
type invalidSpec struct {
	version version
	err     error
}

// version identifies a version of an object's spec: generations grow with each spec change of one
// object (one uid).
type version struct {
	uid        string
	generation int64
}

func versionOf(obj *v1alpha1.OpenIDConnect) version {
	return version{uid: string(obj.UID), generation: obj.Generation}
}

// Status writes yield to arriving objects: while the informer has delivered a new object or a spec
// change within arrivalQuiet, status is written at most trickleRate times a second (plus each write
// that has waited maxYield), and at the client's full rate once arrivals pause. Routing never waits for status (the informer's event handler routes),
// so a burst of creates is authenticated as it arrives and reported once it ends, without status
// writes competing with the creates for the API server.
const (
	arrivalQuiet = 250 * time.Millisecond
	trickleRate  = 10
	maxYield     = 2 * time.Second
	// routePending is how soon a reconcile that ran ahead of the informer's event handler looks again.
	routePending = 20 * time.Millisecond
)

// SetupWithManager registers the reconciler. Key refreshes, which happen outside any API event, are fed
// back in through a channel so their outcome reaches the status promptly.
//
// The controller runs on every replica, leader or not: each replica serves reviews from its own router.
// With LeaderOnlyWrites, status and events are written only once the manager has won the leader
// election; at that moment every object is reconciled again, so the new leader reports what it sees
// even for objects that did not change.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.init()
	if err := r.routeFromInformer(mgr.GetCache()); err != nil {
		return err
	}
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
		r.invalid = map[string]invalidSpec{}
		r.byIssr = map[string][]string{}
		r.events = make(chan event.GenericEvent, 1024)
		r.trickle = rate.NewLimiter(trickleRate, 1)
	}
}

// routeFromInformer routes objects straight from the informer's event handler, before and apart from
// the reconciles that write status: a new object authenticates as soon as the informer delivers it,
// however many reconciles are queued, and a restarted replica routes its whole initial list in one pass
// (about 16 µs an object with static keys, BenchmarkBuildEntry).
func (r *Reconciler) routeFromInformer(c cache.Cache) error {
	inf, err := c.GetInformer(context.Background(), &v1alpha1.OpenIDConnect{})
	if err != nil {
		return fmt.Errorf("could not get the OpenIDConnect informer: %w", err)
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    r.onAdd,
		UpdateFunc: r.onUpdate,
		DeleteFunc: r.onDelete,
	})
	if err != nil {
		return fmt.Errorf("could not watch OpenIDConnects: %w", err)
	}
	r.fromInformer = reg.HasSynced
	return nil
}

func (r *Reconciler) onAdd(o any) {
	obj, ok := o.(*v1alpha1.OpenIDConnect)
	if !ok {
		r.Log.Error(nil, "The informer delivered an object that is not an OpenIDConnect", "type", fmt.Sprintf("%T", o))
		return
	}
	r.arrived()
	r.routeObject(obj)
}

func (r *Reconciler) onUpdate(oldObj, newObj any) {
	old, ok1 := oldObj.(*v1alpha1.OpenIDConnect)
	obj, ok2 := newObj.(*v1alpha1.OpenIDConnect)
	if !ok1 || !ok2 {
		r.Log.Error(nil, "The informer delivered an object that is not an OpenIDConnect", "type", fmt.Sprintf("%T", newObj))
		return
	}
	newVersion := old.Generation != obj.Generation || old.UID != obj.UID
	// Status updates, most of them this controller's own, change no routing. A spec can also change
	// without a new generation (a default the CRD gained, applied as objects are read from storage), so
	// the spec itself is compared too; only a new version counts as an arrival.
	if !newVersion && obj.DeletionTimestamp.IsZero() && equality.Semantic.DeepEqual(old.Spec, obj.Spec) {
		return
	}
	if newVersion {
		r.arrived()
	}
	r.routeObject(obj)
	r.enqueue(obj.Name) // the controller's own reconcile of this event may have run before the routing
}

func (r *Reconciler) onDelete(o any) {
	if tomb, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = tomb.Obj
	}
	obj, ok := o.(*v1alpha1.OpenIDConnect)
	if !ok {
		r.Log.Error(nil, "The informer delivered a deletion that is not of an OpenIDConnect", "type", fmt.Sprintf("%T", o))
		return
	}
	r.forgetRouted(obj.Name)
}

// forgetRouted stops routing name, holding routeMu.
func (r *Reconciler) forgetRouted(name string) {
	r.init()
	r.routeMu.Lock()
	defer r.routeMu.Unlock()
	r.forget(name)
}

// routeObject routes obj from the informer's event handler; the reconcile that follows reports the
// outcome. A panic while building the entry is recovered and reported as an invalid spec: the handler
// runs on client-go's goroutine, which would otherwise end the process, on every replica, at every
// start, for as long as the object exists.
func (r *Reconciler) routeObject(obj *v1alpha1.OpenIDConnect) {
	r.init()
	log := withLazyValues(r.Log, "openidconnect", obj.Name)
	defer func() {
		if p := recover(); p != nil {
			err := fmt.Errorf("internal error while building the issuer entry: %v", p)
			log.Error(err, "Could not route the object")
			r.forgetRouted(obj.Name)
			r.mu.Lock()
			r.invalid[obj.Name] = invalidSpec{version: versionOf(obj), err: err}
			r.mu.Unlock()
		}
	}()
	if !obj.DeletionTimestamp.IsZero() {
		r.forgetRouted(obj.Name)
		return
	}
	_, _, _ = r.route(obj, log)
}

// arrived records that a new object or spec change arrived now.
func (r *Reconciler) arrived() { r.arrivals.Store(time.Now().UnixNano()) }

// yieldToArrivals returns when a status write may go ahead: at once when no object arrived within
// arrivalQuiet, otherwise when the trickle allows one, arrivals pause, or the write has waited
// maxYield, whichever comes first (so a steady stream of spec changes cannot hold reports back for
// long).
func (r *Reconciler) yieldToArrivals(ctx context.Context) error {
	start := time.Now()
	for {
		quiet := time.Since(time.Unix(0, r.arrivals.Load()))
		if quiet >= arrivalQuiet || r.trickle.Allow() || time.Since(start) >= maxYield {
			return nil
		}
		t := time.NewTimer(min(arrivalQuiet-quiet, 50*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// route makes the router agree with obj: it builds and routes obj's entry (unless the routed one is
// already built from this spec), or, when the spec is invalid, stops routing obj and remembers why.
func (r *Reconciler) route(obj *v1alpha1.OpenIDConnect, log logr.Logger) (authn.Config, *authn.Entry, error) {
	r.routeMu.Lock()
	defer r.routeMu.Unlock()
	cfg, err := ToConfig(obj)
	var entry *authn.Entry
	if err == nil {
		entry, err = r.ensureEntry(obj, cfg, log)
	}
	if err != nil {
		r.forget(obj.Name)
		r.mu.Lock()
		r.invalid[obj.Name] = invalidSpec{version: versionOf(obj), err: err}
		r.mu.Unlock()
		log.V(1).Info("Invalid issuer spec", "error", err.Error())
	}
	return cfg, entry, err
}

// waitInitialRouted waits until the informer's event handler has routed the initial list, and reports
// whether it has (false: ctx ended first).
func (r *Reconciler) waitInitialRouted(ctx context.Context) bool {
	for !r.fromInformer() {
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	return true
}

// routedAs returns what the informer's event handler made of obj: its routed entry, or the error that
// made it invalid. pending means the handler has not yet acted on this version of obj; stale, that it
// already acted on a newer one (the reconcile of which is queued).
func (r *Reconciler) routedAs(obj *v1alpha1.OpenIDConnect) (e *authn.Entry, pending, stale bool, err error) {
	v := versionOf(obj)
	r.mu.Lock()
	b, isBuilt := r.built[obj.Name]
	inv, isInvalid := r.invalid[obj.Name]
	r.mu.Unlock()
	var acted version
	switch {
	case isInvalid:
		acted, err = inv.version, inv.err
	case isBuilt:
		acted = b.version
		var ok bool
		if e, ok = r.Router.Get(obj.Name); !ok {
			return nil, true, false, nil
		}
	default:
		return nil, true, false, nil
	}
	switch {
	case acted.uid != v.uid || acted.generation < v.generation:
		return nil, true, false, nil
	case acted.generation > v.generation:
		return nil, false, true, nil
	}
	return e, false, false, err
}

// Reconcile builds, replaces or removes the entry of one object and writes its status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	r.init()
	name := req.Name
	log := withLazyValues(r.Log, "openidconnect", name)
	obj, err := r.Objects.Get(ctx, name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			r.forgetGone(ctx, name)
			log.V(1).Info("Issuer removed")
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("could not get OpenIDConnect %q: %w", name, err)
	}
	if !obj.DeletionTimestamp.IsZero() {
		if r.fromInformer == nil {
			r.forgetRouted(name)
		}
		return ctrl.Result{}, nil
	}

	var cfg authn.Config
	var entry *authn.Entry
	if r.fromInformer != nil {
		// The informer's event handler routes; this reports what it did, once the initial list is
		// routed: until then the reconciles would only take CPU from the routing a Ready waits for.
		if !r.waitInitialRouted(ctx) {
			return ctrl.Result{}, nil // shutting down
		}
		var pending, stale bool
		entry, pending, stale, err = r.routedAs(obj)
		switch {
		case pending:
			return ctrl.Result{RequeueAfter: routePending}, nil
		case stale:
			return ctrl.Result{}, nil // the reconcile of the newer version is queued
		case err == nil:
			cfg = entry.Config()
		}
	} else {
		cfg, entry, err = r.route(obj, log)
	}
	if err != nil {
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

// forgetGone stops routing name, which Get did not find. With an informer its event handler has done
// so already; this is defence in depth, and it looks again under routeMu so it cannot remove an object
// re-created meanwhile (the cache is updated before the handler is told).
func (r *Reconciler) forgetGone(ctx context.Context, name string) {
	r.routeMu.Lock()
	defer r.routeMu.Unlock()
	if r.fromInformer != nil {
		if _, err := r.Objects.Get(ctx, name); !apierrors.IsNotFound(err) {
			return
		}
	}
	r.forget(name)
}

// ensureEntry returns the routed entry for obj, building and routing a new one when the object's spec
// changed since the last build. Callers hold routeMu.
func (r *Reconciler) ensureEntry(obj *v1alpha1.OpenIDConnect, cfg authn.Config, log logr.Logger) (*authn.Entry, error) {
	name := obj.Name
	hash := configHash(cfg)
	r.mu.Lock()
	previous := r.built[name]
	r.mu.Unlock()
	if e, ok := r.Router.Get(name); ok && previous.hash == hash {
		r.mu.Lock()
		r.setBuiltLocked(name, built{hash: hash, issuer: cfg.Issuer, version: versionOf(obj)})
		r.mu.Unlock()
		return e, nil
	}
	if r.RefreshInterval != 0 {
		cfg.RefreshInterval = r.RefreshInterval
	}
	if r.MinRefetchInterval != 0 {
		cfg.MinRefetchInterval = r.MinRefetchInterval
	}
	opts := r.EntryOptions
	opts.Log = withLazyValues(r.Log, "openidconnect", name)
	opts.OnRefresh = func() { r.enqueue(name) }
	entry, err := authn.NewEntry(cfg, opts)
	if err != nil {
		return nil, err
	}
	entry.Start()
	r.Router.Store(name, entry) // swaps the new entry in, then closes the old one
	r.mu.Lock()
	r.setBuiltLocked(name, built{hash: hash, issuer: cfg.Issuer, version: versionOf(obj)})
	delete(r.invalid, name)
	r.mu.Unlock()
	log.V(1).Info("Issuer routed", "issuer", cfg.Issuer)
	r.enqueueSharing(name, previous.issuer, cfg.Issuer)
	return entry, nil
}

// forget stops routing name. It is the whole of deletion: tokens are refused from here on. Callers hold
// routeMu.
func (r *Reconciler) forget(name string) {
	r.Router.Delete(name)
	r.mu.Lock()
	previous, ok := r.built[name]
	r.dropBuiltLocked(name)
	delete(r.invalid, name)
	r.mu.Unlock()
	if ok {
		r.enqueueSharing(name, previous.issuer)
	}
}

// setBuiltLocked records what name's routed entry was built from, keeping the issuer index; callers
// hold mu.
func (r *Reconciler) setBuiltLocked(name string, b built) {
	r.dropBuiltLocked(name)
	r.built[name] = b
	r.byIssr[b.issuer] = append(r.byIssr[b.issuer], name)
}

// dropBuiltLocked forgets what name's entry was built from; callers hold mu.
func (r *Reconciler) dropBuiltLocked(name string) {
	b, ok := r.built[name]
	if !ok {
		return
	}
	delete(r.built, name)
	names := slices.DeleteFunc(r.byIssr[b.issuer], func(n string) bool { return n == name })
	if len(names) == 0 {
		delete(r.byIssr, b.issuer)
	} else {
		r.byIssr[b.issuer] = names
	}
}

// enqueueSharing requeues the other objects of the given issuers: a change to one entry can start or
// end a conflict for them. It runs only when routing changed, so two objects never requeue each other
// forever.
func (r *Reconciler) enqueueSharing(name string, issuers ...string) {
	r.mu.Lock()
	var others []string
	for i, issuer := range issuers {
		if issuer == "" || slices.Contains(issuers[:i], issuer) {
			continue
		}
		for _, other := range r.byIssr[issuer] {
			if other != name {
				others = append(others, other)
			}
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
	if err := r.yieldToArrivals(ctx); err != nil {
		return nil //nolint:nilerr // shutting down: the next leader reports
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
func configHash(cfg authn.Config) [sha256.Size]byte {
	b, _ := json.Marshal(cfg) // Config holds only plain data
	return sha256.Sum256(b)
}

// TrimForCache is the informer's transform for OpenIDConnect objects: it drops what the webhook never
// reads, so 10,000 cached objects cost less memory. managedFields and annotations go (an object applied
// with kubectl carries its whole spec again in last-applied-configuration). A status update is not
// harmed by the missing fields: the status subresource takes only status from what it is sent.
func TrimForCache(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
		o.SetAnnotations(nil)
	}
	return obj, nil
}
