package registry

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/authn"
)

// TestKeysSyncedReasons: the KeysSynced condition names why keys are not synced, and a redirect away
// from https has a reason of its own, since it is a configuration problem of the issuer, not an outage.
func TestKeysSyncedReasons(t *testing.T) {
	t.Parallel()
	obj := &v1alpha1.OpenIDConnect{ObjectMeta: metav1.ObjectMeta{Name: "hub", Generation: 2}}
	cfg := authn.Config{Issuer: "https://hub.example", UsernameClaim: "sub", UsernamePrefix: "hub:"}
	good := []authn.KeyInfo{{KID: "k1", Alg: "RS256"}}
	for _, tt := range []struct {
		name       string
		ks         authn.KeySetStatus
		want       metav1.ConditionStatus
		wantReason string
	}{
		{"static", authn.KeySetStatus{Static: true, Attempted: true, Keys: good}, metav1.ConditionTrue, v1alpha1.ReasonStaticKeys},
		{"fetched", authn.KeySetStatus{Attempted: true, Keys: good, LastSuccess: time.Now()}, metav1.ConditionTrue, v1alpha1.ReasonFetchSucceeded},
		{"failed", authn.KeySetStatus{Attempted: true, Keys: good, LastError: errors.New("GET x: 500")}, metav1.ConditionFalse, v1alpha1.ReasonFetchFailed},
		{"redirected to http", authn.KeySetStatus{Attempted: true, LastError: fmt.Errorf("could not fetch JWKS: Get \"https://hub.example/jwks\": %w (http://evil.example/jwks)", authn.ErrInsecureRedirect)}, metav1.ConditionFalse, v1alpha1.ReasonInsecureRedirect},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status := entryStatus(obj, cfg, tt.ks)
			c := meta.FindStatusCondition(status.Conditions, v1alpha1.ConditionKeysSynced)
			if c == nil || c.Status != tt.want || c.Reason != tt.wantReason || c.ObservedGeneration != 2 {
				t.Fatalf("KeysSynced = %+v, want %s/%s", c, tt.want, tt.wantReason)
			}
			if tt.ks.LastError != nil && c.Message != tt.ks.LastError.Error() {
				t.Fatalf("message = %q, want the error", c.Message)
			}
		})
	}
}
