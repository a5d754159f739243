// Package v1alpha1 contains the clearance.dev/v1alpha1 API: the ClearanceCredential kind.
// +kubebuilder:object:generate=true
// +groupName=clearance.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "clearance.dev", Version: "v1alpha1"}

	// SchemeBuilder registers this API's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this API's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers this API's kinds; the api package depends only on
// apimachinery so that clients can import it cheaply.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &ClearanceCredential{}, &ClearanceCredentialList{},
		&ClusterClearanceCredential{}, &ClusterClearanceCredentialList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
