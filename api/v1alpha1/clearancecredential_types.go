package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TokenRequestEncoding selects how the token request body is encoded.
// +kubebuilder:validation:Enum=Form;JSON
type TokenRequestEncoding string

const (
	// TokenRequestEncodingForm posts an application/x-www-form-urlencoded body (RFC 6749, the vendor's curl example).
	TokenRequestEncodingForm TokenRequestEncoding = "Form"
	// TokenRequestEncodingJSON posts a JSON body (as the vendor's Node and Python samples do).
	TokenRequestEncodingJSON TokenRequestEncoding = "JSON"
)

const (
	// DefaultConnectionSecretKey is the data key read from the connection Secret when spec.connectionSecretRef.key is empty.
	DefaultConnectionSecretKey = "config.json"

	// RefreshRequestedAtAnnotation on a ClearanceCredential forces one immediate re-mint whenever its value changes.
	RefreshRequestedAtAnnotation = "clearance.dev/refresh-requested-at"

	// ExpiresAtAnnotation on the target Secret carries the stored token's expiry (RFC 3339, UTC).
	ExpiresAtAnnotation = "clearance.dev/expires-at"

	// ManagedByLabel marks the Secrets this operator writes; the manager caches only Secrets carrying it.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of ManagedByLabel on Secrets this operator writes.
	ManagedByValue = "clearance-operator"
)

// Data keys of the target Secret. token, expiresAt and tokenType are the contract;
// the rest are non-secret extras that spare a pod from needing the connection file.
const (
	// SecretKeyToken holds the access token.
	SecretKeyToken = "token"
	// SecretKeyExpiresAt holds the token's expiry, RFC 3339 in UTC.
	SecretKeyExpiresAt = "expiresAt"
	// SecretKeyTokenType holds the token type, always "Bearer".
	SecretKeyTokenType = "tokenType"
	// SecretKeyTenantID holds the connection file's TenantId.
	SecretKeyTenantID = "tenantId"
	// SecretKeyClientID holds "<ServicePrincipalId>@<TenantId>".
	SecretKeyClientID = "clientId"
)

// SecretKeyRef names a key in a Secret of the credential's own namespace.
type SecretKeyRef struct {
	// name of the Secret, in the same namespace as the ClearanceCredential.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="!format.dns1123Subdomain().validate(self).hasValue()",message="must be a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', starting and ending with an alphanumeric)"
	Name string `json:"name"`

	// key in the Secret's data holding the JSON Connection File.
	// +optional
	// +kubebuilder:default="config.json"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="must be a valid Secret data key: not '.' or '..'"
	Key string `json:"key,omitempty"`
}

// SecretTemplate holds extra metadata and extra data keys for the target Secret.
type SecretTemplate struct {
	// labels added to the target Secret. app.kubernetes.io/managed-by is always clearance-operator.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// annotations added to the target Secret. Keys under the clearance.dev/ prefix are
	// reserved for the operator's bookkeeping and ignored.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// data maps extra data keys of the target Secret to Go text/template text, rendered
	// with .Token, .ExpiresAt, .TokenType, .TenantID, .ClientID and .Addresses (the
	// first address of each address list, by the data-key names of the target Secret)
	// each time a token is written. The operator's own keys (token, expiresAt,
	// tokenType, tenantId, clientId and the address keys) cannot be overridden.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 253 && k.matches('^[-._a-zA-Z0-9]+$') && k != '.' && k != '..')",message="keys must be valid Secret data keys: alphanumerics, '-', '_' or '.', at most 253 characters, not '.' or '..'"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['token', 'expiresAt', 'tokenType', 'tenantId', 'clientId']))",message="token, expiresAt, tokenType, tenantId and clientId are the operator's keys and cannot be templated"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 8192)",message="each template is at most 8192 characters"
	Data map[string]string `json:"data,omitempty"`
}

// ClearanceCredentialSpec defines which connection file to use and where to write the token.
// +kubebuilder:validation:XValidation:rule="self.secretName != self.connectionSecretRef.name",message="secretName must differ from connectionSecretRef.name: the token must not overwrite the connection file"
type ClearanceCredentialSpec struct {
	// connectionSecretRef points at the Secret, in the same namespace, holding the JSON Connection File.
	// +required
	ConnectionSecretRef SecretKeyRef `json:"connectionSecretRef"`

	// secretName is the target Secret, in the same namespace, the access token is written to.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="!format.dns1123Subdomain().validate(self).hasValue()",message="must be a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', starting and ending with an alphanumeric)"
	SecretName string `json:"secretName"`

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

	// suspend stops minting; the target Secret is left as it is.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// secretTemplate holds extra labels, annotations and templated data keys for the target Secret.
	// +optional
	SecretTemplate *SecretTemplate `json:"secretTemplate,omitempty"`
}

// ClearanceCredentialStatus is the observed state of a ClearanceCredential.
type ClearanceCredentialStatus struct {
	// conditions: Ready, Reconciling, Stalled (kstatus) and Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// observedGeneration is the generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// expiresAt is the expiry of the token now in the target Secret.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// renewalTime is when the stored token is renewed; empty while requests fail (see nextAttemptTime).
	// +optional
	RenewalTime *metav1.Time `json:"renewalTime,omitempty"`

	// tokenEndpoint is the STS token endpoint that issued the stored token.
	// +optional
	TokenEndpoint string `json:"tokenEndpoint,omitempty"`

	// keyID is the JWK kid that signed the assertion for the stored token.
	// +optional
	KeyID string `json:"keyID,omitempty"`

	// lastRequestTime is when the operator last requested a token for this credential,
	// successfully or not; mints asked for by a user wait for a minimum interval after it.
	// +optional
	LastRequestTime *metav1.Time `json:"lastRequestTime,omitempty"`

	// lastFailureTime is the time of the latest failed mint in the current failure streak.
	// +optional
	LastFailureTime *metav1.Time `json:"lastFailureTime,omitempty"`

	// failedAttempts counts consecutive failed mints; reset by a success.
	// +optional
	FailedAttempts int32 `json:"failedAttempts,omitempty"`

	// nextAttemptTime is when the next token request is made after a failed one.
	// +optional
	NextAttemptTime *metav1.Time `json:"nextAttemptTime,omitempty"`

	// failedInputs identifies (as a hash) the connection Secret version, the spec fields that
	// shape a token and the refresh request the failed requests were made with: a change of any of them is retried
	// at once instead of at nextAttemptTime.
	// +optional
	FailedInputs string `json:"failedInputs,omitempty"`
}

// ClearanceCredential keeps a Genetec Clearance access token fresh in a Secret.
// Expires is a string column: kubectl renders a date column as an age and
// prints <invalid> for a time in the future.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ccred,categories=clearance
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.spec.secretName`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`,description="Expiry of the stored token, RFC 3339 UTC"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClearanceCredential struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ClearanceCredentialSpec `json:"spec"`
	// +optional
	Status ClearanceCredentialStatus `json:"status,omitempty"`
}

// ClearanceCredentialList is a list of ClearanceCredentials.
// +kubebuilder:object:root=true
type ClearanceCredentialList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClearanceCredential `json:"items"`
}
