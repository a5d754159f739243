package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxListedConflicts bounds status.conflictingNamespaces.
const MaxListedConflicts = 20

// ClusterClearanceCredentialSpec defines which connection file to use and
// the namespaces whose target Secret receives the token.
// +kubebuilder:validation:XValidation:rule="has(self.namespaceSelector) || (has(self.namespaces) && size(self.namespaces) > 0)",message="select the target namespaces with namespaceSelector, namespaces or both"
type ClusterClearanceCredentialSpec struct {
	// connectionSecretRef points at the Secret holding the JSON Connection File, in the
	// operator's cluster resource namespace (manager flag --cluster-resource-namespace,
	// by default the operator's own namespace). It cannot name another namespace.
	// +required
	ConnectionSecretRef SecretKeyRef `json:"connectionSecretRef"`

	// secretName is the target Secret written in every selected namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="!format.dns1123Subdomain().validate(self).hasValue()",message="must be a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', starting and ending with an alphanumeric)"
	SecretName string `json:"secretName"`

	// namespaceSelector selects the target namespaces by label. With namespaces, the
	// union of both is selected.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// namespaces lists target namespaces by name. With namespaceSelector, the union of
	// both is selected.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:XValidation:rule="!format.dns1123Label().validate(self).hasValue()",message="must be a namespace name (DNS-1123 label)"
	Namespaces []string `json:"namespaces,omitempty"`

	// audience, when set, is the assertion's `aud` claim.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Audience string `json:"audience,omitempty"`

	// renewBefore is how long before expiry the token is renewed. Default: one third of the token's lifetime.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="renewBefore must be a positive duration"
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`

	// tokenRequestEncoding is how the token request body is encoded: Form (RFC 6749, default) or JSON.
	// +optional
	// +kubebuilder:default=Form
	TokenRequestEncoding TokenRequestEncoding `json:"tokenRequestEncoding,omitempty"`

	// suspend stops minting and writing; the target Secrets are left as they are.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// secretTemplate holds extra labels, annotations and templated data keys for the target Secrets.
	// +optional
	SecretTemplate *SecretTemplate `json:"secretTemplate,omitempty"`
}

// ClusterClearanceCredentialStatus is the observed state of a ClusterClearanceCredential:
// the token's state as for a ClearanceCredential, and how far it reached.
type ClusterClearanceCredentialStatus struct {
	ClearanceCredentialStatus `json:",inline"`

	// selectedNamespaces counts the namespaces selected by the spec (and watched by the operator).
	// +optional
	SelectedNamespaces int32 `json:"selectedNamespaces"`

	// writtenNamespaces counts the selected namespaces whose target Secret holds the current token.
	// +optional
	WrittenNamespaces int32 `json:"writtenNamespaces"`

	// conflictingNamespaceCount counts the selected namespaces where a Secret named
	// secretName exists and is not controlled by this credential; it is left untouched.
	// +optional
	ConflictingNamespaceCount int32 `json:"conflictingNamespaceCount"`

	// conflictingNamespaces lists the first of them, in name order.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=20
	ConflictingNamespaces []string `json:"conflictingNamespaces,omitempty"`
}

// ClusterClearanceCredential keeps one Genetec Clearance access token fresh in a Secret
// of every selected namespace, minting once per renewal for all of them.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cccred,categories=clearance
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.spec.secretName`
// +kubebuilder:printcolumn:name="Selected",type=integer,JSONPath=`.status.selectedNamespaces`
// +kubebuilder:printcolumn:name="Written",type=integer,JSONPath=`.status.writtenNamespaces`
// +kubebuilder:printcolumn:name="Conflicts",type=integer,JSONPath=`.status.conflictingNamespaceCount`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`,description="Expiry of the stored token, RFC 3339 UTC"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterClearanceCredential struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ClusterClearanceCredentialSpec `json:"spec"`
	// +optional
	Status ClusterClearanceCredentialStatus `json:"status,omitempty"`
}

// ClusterClearanceCredentialList is a list of ClusterClearanceCredentials.
// +kubebuilder:object:root=true
type ClusterClearanceCredentialList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterClearanceCredential `json:"items"`
}
