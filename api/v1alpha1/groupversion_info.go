// Package v1alpha1 contains the authentication.clustertrust.io/v1alpha1 API: the cluster-scoped
// OpenIDConnect kind an admin creates for each upstream issuer the downstream cluster trusts.
//
// Field names follow Gardener's OpenIDConnect where the two overlap, so its users can migrate by changing
// the apiVersion; the advanced fields follow Kubernetes' AuthenticationConfiguration JWT authenticator.
//
// +kubebuilder:object:generate=true
// +groupName=authentication.clustertrust.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "authentication.clustertrust.io", Version: "v1alpha1"}

	// SchemeBuilder collects the functions that add this API's types to a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion, &OpenIDConnect{}, &OpenIDConnectList{})
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
