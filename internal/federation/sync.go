package federation

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/authn"
)

// OpenIDConnects is the resource sync-keys patches on the downstream.
var OpenIDConnects = v1alpha1.GroupVersion.WithResource("openidconnects")

// KeySyncer keeps a downstream OpenIDConnect object's static spec.jwks.keys equal to the upstream's
// current JWKS. It only ever replaces a non-empty, usable key set with another one; it never touches an
// object that does not use static keys.
type KeySyncer struct {
	Upstream   *Upstream
	Downstream dynamic.NamespaceableResourceInterface // openidconnects on the downstream
	Name       string
	Log        logr.Logger
}

// SyncOnce pushes the upstream's keys when they differ from the object's. It reports whether it patched.
func (s *KeySyncer) SyncOnce(ctx context.Context) (bool, error) {
	jwks, err := s.Upstream.JWKS(ctx)
	if err != nil {
		return false, err
	}
	want := compactJSON(jwks)
	obj, err := s.Downstream.Get(ctx, s.Name, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("could not read OpenIDConnect %q on the downstream: %w", s.Name, err)
	}
	encoded, found, err := unstructured.NestedString(obj.Object, "spec", "jwks", "keys")
	if err != nil || !found {
		return false, fmt.Errorf("OpenIDConnect %q does not use static keys (spec.jwks.keys); sync-keys only maintains static keys, create it with `webhook trust --static`", s.Name)
	}
	current, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return false, fmt.Errorf("OpenIDConnect %q: spec.jwks.keys is not base64: %w", s.Name, err)
	}
	if sameKeys(current, want) {
		return false, nil
	}
	// A JSON merge patch with the resourceVersion we read: if someone else changed the object meanwhile,
	// the patch fails and the next round starts from what they wrote.
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": obj.GetResourceVersion()},
		"spec":     map[string]any{"jwks": map[string]any{"keys": base64.StdEncoding.EncodeToString(want)}},
	})
	if err != nil {
		return false, err
	}
	if _, err := s.Downstream.Patch(ctx, s.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "clustertrust-sync-keys"}); err != nil {
		return false, fmt.Errorf("could not patch OpenIDConnect %q on the downstream: %w", s.Name, err)
	}
	s.Log.Info("Pushed the upstream's keys", "openidconnect", s.Name, "before", kids(current), "after", kids(want))
	return true, nil
}

// Run syncs every interval until ctx is done. A failed round is logged and retried at the next one.
func (s *KeySyncer) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return errors.New("the interval must be positive")
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if _, err := s.SyncOnce(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error(err, "Could not sync keys; retrying", "in", interval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// sameKeys reports whether two JWKS documents hold the same keys, whatever their order and formatting.
func sameKeys(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	fa, fb := fingerprints(a), fingerprints(b)
	return fa != nil && slices.Equal(fa, fb)
}

// fingerprints lists "kid/alg/thumbprint" of each usable key, sorted; nil when the set does not parse.
func fingerprints(jwks []byte) []string {
	keys, err := authn.ParseJWKS(jwks)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		tp, err := k.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil
		}
		out = append(out, k.KeyID+"/"+k.Algorithm+"/"+base64.RawURLEncoding.EncodeToString(tp))
	}
	slices.Sort(out)
	return out
}

// kids lists the key ids of a JWKS, for logs.
func kids(jwks []byte) []string {
	fps := fingerprints(jwks)
	for i, fp := range fps {
		fps[i], _, _ = strings.Cut(fp, "/")
	}
	return fps
}
