package registry

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/internal/authn"
)

// invalidStatus is the status of an object whose spec cannot be compiled: not routed, Ready=False.
func invalidStatus(obj *v1alpha1.OpenIDConnect, err error) v1alpha1.OpenIDConnectStatus {
	status := v1alpha1.OpenIDConnectStatus{
		ObservedGeneration: obj.Generation,
		Conditions:         copyConditions(obj.Status.Conditions),
	}
	setCondition(&status, obj, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, err.Error())
	meta.RemoveStatusCondition(&status.Conditions, v1alpha1.ConditionKeysSynced)
	return status
}

// entryStatus describes a routed entry from its key set's health.
func entryStatus(obj *v1alpha1.OpenIDConnect, cfg authn.Config, ks authn.KeySetStatus) v1alpha1.OpenIDConnectStatus {
	status := v1alpha1.OpenIDConnectStatus{
		ObservedGeneration: obj.Generation,
		Conditions:         copyConditions(obj.Status.Conditions),
		JWKSURI:            ks.JWKSURI,
		KeyCount:           int32(len(ks.Keys)), //nolint:gosec // G115: bounded by authn's limit of 64 keys per set
		UsernamePrefix:     cfg.UsernamePrefix,
		ExampleUsername:    ExampleUsername(cfg),
	}
	for _, k := range ks.Keys {
		status.Keys = append(status.Keys, v1alpha1.KeyStatus{KID: k.KID, Alg: k.Alg})
	}
	if !ks.LastSuccess.IsZero() && !ks.Static {
		t := metav1.NewTime(ks.LastSuccess.UTC().Truncate(1e9))
		status.LastKeysRefreshTime = &t
	}

	switch {
	case ks.Static:
		setCondition(&status, obj, v1alpha1.ConditionKeysSynced, metav1.ConditionTrue, v1alpha1.ReasonStaticKeys, "static keys from spec.jwks")
	case !ks.Attempted:
		setCondition(&status, obj, v1alpha1.ConditionKeysSynced, metav1.ConditionUnknown, "Pending", "waiting for the first key fetch")
	case errors.Is(ks.LastError, authn.ErrInsecureRedirect):
		setCondition(&status, obj, v1alpha1.ConditionKeysSynced, metav1.ConditionFalse, v1alpha1.ReasonInsecureRedirect, ks.LastError.Error())
	case ks.LastError != nil:
		setCondition(&status, obj, v1alpha1.ConditionKeysSynced, metav1.ConditionFalse, v1alpha1.ReasonFetchFailed, ks.LastError.Error())
	default:
		setCondition(&status, obj, v1alpha1.ConditionKeysSynced, metav1.ConditionTrue, v1alpha1.ReasonFetchSucceeded, fmt.Sprintf("fetched %d keys from %s", len(ks.Keys), ks.JWKSURI))
	}

	switch {
	case len(ks.Keys) > 0:
		setCondition(&status, obj, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonActive, fmt.Sprintf("routing tokens of %s with %d keys", cfg.Issuer, len(ks.Keys)))
	case !ks.Attempted:
		setCondition(&status, obj, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNoKeys, "waiting for the first key fetch")
	case errors.Is(ks.LastError, authn.ErrNoKeys):
		setCondition(&status, obj, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNoKeys, ks.LastError.Error())
	default:
		setCondition(&status, obj, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonDiscoveryFailed, ks.LastError.Error())
	}
	return status
}

func setCondition(status *v1alpha1.OpenIDConnectStatus, obj *v1alpha1.OpenIDConnect, typ string, s metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type:               typ,
		Status:             s,
		Reason:             reason,
		Message:            truncate(message, 1024),
		ObservedGeneration: obj.Generation,
	})
}

func copyConditions(in []metav1.Condition) []metav1.Condition {
	return append([]metav1.Condition(nil), in...)
}

func readyCondition(obj *v1alpha1.OpenIDConnect) *metav1.Condition {
	return meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
}

// readyChanged reports whether the Ready condition appeared or changed status or reason from before to
// after: the moments worth an event or a log line.
func readyChanged(before, after *metav1.Condition) bool {
	return after != nil && (before == nil || before.Status != after.Status || before.Reason != after.Reason)
}

func hasReason(obj *v1alpha1.OpenIDConnect, reason string) bool {
	c := readyCondition(obj)
	return c != nil && c.Reason == reason
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
