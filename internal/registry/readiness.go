package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
)

// ReadyChecker returns a health check that passes once the informer has synced, its event handler has
// routed the initial list, and every valid object has had its first key load attempt, so a replica
// never takes traffic while it would still refuse tokens it is about to accept.
//
// Once passed, it stays passed: objects created later are routed within milliseconds of the informer
// delivering them, and a readiness that dropped on every create would take every replica out of the
// Service during a burst of creates, which is when kube-apiserver needs them.
func (r *Reconciler) ReadyChecker(c cache.Cache) func(*http.Request) error {
	return func(req *http.Request) error {
		r.init()
		if r.ready.Load() {
			return nil
		}
		ctx, cancel := context.WithTimeout(req.Context(), 50*time.Millisecond)
		defer cancel()
		if !c.WaitForCacheSync(ctx) {
			return errors.New("informer has not synced")
		}
		if r.fromInformer != nil && !r.fromInformer() {
			return errors.New("the informer's initial list is not routed yet")
		}
		var list v1alpha1.OpenIDConnectList
		// The check reads only names and generations: no need for a copy of every object.
		if err := c.List(req.Context(), &list, client.UnsafeDisableDeepCopy); err != nil {
			return fmt.Errorf("could not list OpenIDConnects: %w", err)
		}
		return r.latchReady(r.unready(list.Items))
	}
}

// latchReady remembers a passed readiness check.
func (r *Reconciler) latchReady(err error) error {
	if err == nil {
		r.ready.Store(true)
	}
	return err
}

// unready returns why the router is not yet ready to answer for objs, or nil: every object that is not
// known to be invalid must be routed and have had its first key load attempt.
func (r *Reconciler) unready(objs []v1alpha1.OpenIDConnect) error {
	r.init()
	for i := range objs {
		obj := &objs[i]
		if !obj.DeletionTimestamp.IsZero() {
			continue // being deleted (held by a finalizer): never routed, so nothing to wait for
		}
		r.mu.Lock()
		inv, invalid := r.invalid[obj.Name]
		r.mu.Unlock()
		if invalid && inv.version == versionOf(obj) {
			continue
		}
		e, ok := r.Router.Get(obj.Name)
		if !ok {
			return fmt.Errorf("OpenIDConnect %q is not routed yet", obj.Name)
		}
		if !e.KeyStatus().Attempted {
			return fmt.Errorf("OpenIDConnect %q has not loaded keys yet", obj.Name)
		}
	}
	return nil
}
