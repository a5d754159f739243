package v1alpha1

// Condition types. Ready, Reconciling and Stalled follow the kstatus conventions
// so generic tooling (kubectl wait, Flux, Argo CD health checks) understands them;
// Degraded carries a renewal failure while the stored token is still valid.
const (
	// ConditionReady is True while the target Secret holds a valid token.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the operator is working towards a new token.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when progress needs a change by the user (spec, connection file or STS-side key).
	ConditionStalled = "Stalled"
	// ConditionDegraded is True when renewal is failing but the stored token is still valid.
	ConditionDegraded = "Degraded"
)

// Condition reasons a user can act on.
const (
	// ReasonTokenValid: the target Secret holds a valid token.
	ReasonTokenValid = "TokenValid"
	// ReasonConnectionSecretNotFound: the connection Secret or its key does not exist.
	ReasonConnectionSecretNotFound = "ConnectionSecretNotFound"
	// ReasonConnectionInvalid: the connection file cannot be used (syntax, key, addresses).
	ReasonConnectionInvalid = "ConnectionInvalid"
	// ReasonCredentialRejected: the STS rejected the credential (RFC 6749 error code in the message).
	ReasonCredentialRejected = "CredentialRejected"
	// ReasonRateLimited: the STS asked us to slow down (HTTP 429).
	ReasonRateLimited = "RateLimited"
	// ReasonSTSUnavailable: the STS could not be reached or answered with a server error or a bad response.
	ReasonSTSUnavailable = "STSUnavailable"
	// ReasonTokenExpired: renewal is failing and the stored token has expired.
	ReasonTokenExpired = "TokenExpired"
	// ReasonTargetConflict: the target Secret exists and is not controlled by this credential.
	ReasonTargetConflict = "TargetConflict"
	// ReasonTargetWriteFailed: the token was minted but could not be written yet; it is kept in memory and retried.
	ReasonTargetWriteFailed = "TargetWriteFailed"
	// ReasonSuspended: spec.suspend is true.
	ReasonSuspended = "Suspended"
	// ReasonRenewBeforeTooLong: spec.renewBefore is not shorter than the token lifetime; renewing at half the lifetime instead.
	ReasonRenewBeforeTooLong = "RenewBeforeTooLong"
	// ReasonDestinationNotAllowed: an STS address is not allowed by the operator's egress policy
	// (plain http, or a loopback, link-local or private destination); nothing was sent to it.
	ReasonDestinationNotAllowed = "DestinationNotAllowed"
	// ReasonNoNamespacesSelected: a ClusterClearanceCredential selects no namespace (the operator
	// watches); nothing is minted until one is selected.
	ReasonNoNamespacesSelected = "NoNamespacesSelected"
	// ReasonTemplateInvalid: spec.secretTemplate.data cannot be rendered; the message names the key and the
	// problem. Nothing is written and no token is requested until the template is fixed.
	ReasonTemplateInvalid = "TemplateInvalid"
	// ReasonMintDeferred: a new token was asked for (refresh annotation, connection or spec change, edited token)
	// within the minimum interval between such mints; the valid stored token stays until the interval has passed.
	ReasonMintDeferred = "MintDeferred"
)
