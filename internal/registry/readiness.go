package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/cache"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
)

// ReadyChecker returns a health check that passes once the informer has synced and every valid object
// is routed and has had its first key load attempt, so a replica never takes traffic while it would
// still refuse tokens it is about to accept.
func (r *Reconciler) ReadyChecker(c cache.Cache) func(*http.Request) error {
	return func(req *http.Request) error {
		r.init()
		ctx, cancel := context.WithTimeout(req.Context(), 50*time.Millisecond)
		defer cancel()
		if !c.WaitForCacheSync(ctx) {
			return errors.New("informer has not synced")
		}
		var list v1alpha1.OpenIDConnectList
		if err := c.List(req.Context(), &list); err != nil {
			return fmt.Errorf("could not list OpenIDConnects: %w", err)
		}
		return r.unready(list.Items)
	}
}

// unready returns why the router is not yet ready to answer for objs, or nil: every object that is not
// known to be invalid must be routed and have had its first key load attempt.
func (r *Reconciler) unready(objs []v1alpha1.OpenIDConnect) error {
	r.init()
	for i := range objs {
		obj := &objs[i]
		r.mu.Lock()
		gen, invalid := r.invalid[obj.Name]
		r.mu.Unlock()
		if invalid && gen == obj.Generation {
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
