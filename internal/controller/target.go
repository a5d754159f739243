package controller

import (
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/utils/ptr"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
)

// Annotations the operator keeps on the target Secret. They record the schedule
// and the inputs the token was minted from (as hashes, never the data), so that
// decisions survive restarts and leader changes without re-minting.
const (
	annotationPrefix         = "clearance.dev/"
	annotationIssuedAt       = annotationPrefix + "issued-at"
	annotationRenewalTime    = annotationPrefix + "renewal-time"
	annotationConnectionHash = annotationPrefix + "connection-hash"
	// annotationConnectionVersion is the connection Secret's resourceVersion
	// when the token was minted.
	annotationConnectionVersion = annotationPrefix + "connection-version"
	annotationSpecHash          = annotationPrefix + "spec-hash"
	annotationTokenHash         = annotationPrefix + "token-hash"
	annotationRefresh           = annotationPrefix + "refresh-requested-at"
	annotationTokenEndpoint     = annotationPrefix + "token-endpoint"
	annotationKeyID             = annotationPrefix + "key-id"
	annotationTemplateHash      = annotationPrefix + "template-hash"
)

// dataTokenState is the data key slimTargetSecret puts on the copies the
// operator holds, in place of the token itself. The colon makes it an
// invalid Secret data key: the apiserver never returns it, so a Secret
// carrying it was slimmed here and its verdict can be trusted.
const dataTokenState = "cache:token-state"

// Values of annotationTokenState.
const (
	tokenStateIntact  = "intact"  // token, expiresAt and tokenType present and matching the token hash
	tokenStateEdited  = "edited"  // all present, but not what the operator wrote
	tokenStateMissing = "missing" // a key is missing or the token is empty
)

// FieldOwner is the server-side apply field manager for the Secrets the operator writes.
const FieldOwner = "clearance-operator"

// mintedToken is a token with the inputs it was minted from and its schedule.
type mintedToken struct {
	token             *clearance.Token
	connection        *clearance.ConnectionFile
	connectionHash    string
	connectionVersion string
	specHash          string
	refreshRequest    string
	renewAt           time.Time
}

// tokenDataHash covers the data keys a pod reads, so edits are noticed.
func tokenDataHash(token, expiresAt, tokenType string) string {
	return shortHash(token, expiresAt, tokenType)
}

// slimTargetSecret turns a target Secret read from the apiserver into the
// form the operator holds (the managed-Secret cache applies it as a
// transform, readTarget to the Secrets it GETs): the token and the copied
// connection-file fields are dropped, and a verdict on the token, computed
// here from the full data, takes their place, as do the annotations only that
// verdict needed. The cache then holds no token. It mutates s, and is
// idempotent, as client-go requires of a transform (an object may pass twice).
func slimTargetSecret(s *corev1.Secret) *corev1.Secret {
	if _, slimmed := s.Data[dataTokenState]; slimmed {
		return s
	}
	if credentialController(s) == nil {
		// Anyone may label a Secret managed-by: of one no credential
		// controls, the operator needs to know only that it exists.
		*s = corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion,
		}, Data: map[string][]byte{dataTokenState: []byte(tokenStateMissing)}}
		return s
	}
	token, hasToken := s.Data[clearancev1alpha1.SecretKeyToken]
	expires, hasExpires := s.Data[clearancev1alpha1.SecretKeyExpiresAt]
	tokenType, hasType := s.Data[clearancev1alpha1.SecretKeyTokenType]
	state := tokenStateMissing
	if hasToken && hasExpires && hasType && len(token) > 0 {
		state = tokenStateEdited
		if s.Annotations[annotationTokenHash] == tokenDataHash(string(token), string(expires), string(tokenType)) {
			state = tokenStateIntact
		}
	}
	s.Data = map[string][]byte{dataTokenState: []byte(state)}
	// Longer values are not what the operator wrote; dropping them makes
	// the token "edited", as the verdict above already says.
	if hasExpires && len(expires) <= maxKeptValue {
		s.Data[clearancev1alpha1.SecretKeyExpiresAt] = expires
	}
	if hasType && len(tokenType) <= maxKeptValue {
		s.Data[clearancev1alpha1.SecretKeyTokenType] = tokenType
	}
	// Of the metadata, only the operator's own bookkeeping is needed, and
	// only the controller reference: the rest is the tenant's to fill.
	kept := map[string]string{}
	for _, k := range keptAnnotations {
		if v, ok := s.Annotations[k]; ok && len(v) <= maxKeptAnnotation {
			kept[k] = v
		}
	}
	s.Annotations = kept
	s.Labels = nil
	s.OwnerReferences = []metav1.OwnerReference{*credentialController(s)}
	s.ManagedFields = nil
	return s
}

// keptAnnotations are the annotations the operator reads from the target
// Secrets it holds.
var keptAnnotations = []string{
	annotationIssuedAt, annotationRenewalTime, annotationConnectionHash, annotationConnectionVersion, annotationSpecHash,
	annotationRefresh, annotationTokenEndpoint, annotationKeyID, annotationTemplateHash,
}

// maxKeptValue bounds the expiresAt and tokenType values held per target
// Secret (an RFC 3339 time and "Bearer").
const maxKeptValue = 64

// maxKeptAnnotation bounds each kept annotation: hashes, times, an STS
// endpoint (its address is at most clearance.MaxAddressLength bytes), a key
// id, a refresh annotation's value.
const maxKeptAnnotation = 1024

// slimTargetSecretTransform is slimTargetSecret as a cache transform.
func slimTargetSecretTransform(obj any) (any, error) {
	if s, ok := obj.(*corev1.Secret); ok {
		return slimTargetSecret(s), nil
	}
	return obj, nil
}

// storedTokenFrom reads the stored state from a target Secret in the form
// slimTargetSecret leaves it; nil for no Secret.
func storedTokenFrom(s *corev1.Secret) *StoredToken {
	if s == nil {
		return nil
	}
	state := string(s.Data[dataTokenState])
	st := &StoredToken{
		HasToken:       state == tokenStateIntact || state == tokenStateEdited,
		Intact:         state == tokenStateIntact,
		ConnectionHash: s.Annotations[annotationConnectionHash],
		SpecHash:       s.Annotations[annotationSpecHash],
		RefreshRequest: s.Annotations[annotationRefresh],

		ConnectionVersion: s.Annotations[annotationConnectionVersion],
		Endpoint:          s.Annotations[annotationTokenEndpoint],
		KeyID:             s.Annotations[annotationKeyID],
	}
	// The expiry in the data is what pods read, so it is the one that counts.
	st.ExpiresAt = parseTime(string(s.Data[clearancev1alpha1.SecretKeyExpiresAt]))
	st.IssuedAt = parseTime(s.Annotations[annotationIssuedAt])
	st.RenewAt = parseTime(s.Annotations[annotationRenewalTime])
	if st.ExpiresAt.IsZero() {
		st.Intact = false
	}
	return st
}

func parseTime(v string) time.Time {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}
	}
	return t
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// targetContent is what the target Secret holds for a minted token, with
// the rendered data templates (rendered). Only non-secret extras are copied
// from the connection file: never the private key or the APIKey.
func targetContent(m *mintedToken, rendered map[string][]byte) (data map[string][]byte, annotations map[string]string) {
	expiresAt := formatTime(m.token.ExpiresAt)
	data = map[string][]byte{
		clearancev1alpha1.SecretKeyToken:     []byte(m.token.AccessToken),
		clearancev1alpha1.SecretKeyExpiresAt: []byte(expiresAt),
		clearancev1alpha1.SecretKeyTokenType: []byte(m.token.TokenType),
		clearancev1alpha1.SecretKeyTenantID:  []byte(m.connection.TenantID),
		clearancev1alpha1.SecretKeyClientID:  []byte(m.connection.ClientID()),
	}
	for member, addr := range m.connection.FirstAddresses {
		data[clearancev1alpha1.AddressDataKey(member)] = []byte(addr)
	}
	for k, v := range rendered {
		if _, taken := data[k]; !taken { // the render refuses these already
			data[k] = v
		}
	}
	annotations = map[string]string{
		clearancev1alpha1.ExpiresAtAnnotation: expiresAt,
		annotationIssuedAt:                    formatTime(m.token.IssuedAt),
		annotationRenewalTime:                 formatTime(m.renewAt),
		annotationConnectionHash:              m.connectionHash,
		annotationConnectionVersion:           m.connectionVersion,
		annotationSpecHash:                    m.specHash,
		annotationTokenHash:                   tokenDataHash(m.token.AccessToken, expiresAt, m.token.TokenType),
		annotationTokenEndpoint:               m.token.Endpoint,
		annotationKeyID:                       m.token.KeyID,
	}
	if m.refreshRequest != "" {
		annotations[annotationRefresh] = m.refreshRequest
	}
	return data, annotations
}

// targetSecret is the apply configuration of the target Secret for a token.
// Always type Opaque and always controlled by the credential: nothing in the
// spec can change either. uid is the Secret the operator found (see
// applySecret).
func targetSecret(cred *clearancev1alpha1.ClearanceCredential, m *mintedToken, rendered map[string][]byte, uid types.UID) *corev1ac.SecretApplyConfiguration {
	data, annotations := targetContent(m, rendered)
	return applySecret(cred, data, annotations, uid)
}

// newTargetSecret is the same Secret as targetSecret, as an object to create.
func newTargetSecret(cred *clearancev1alpha1.ClearanceCredential, m *mintedToken, rendered map[string][]byte) *corev1.Secret {
	data, annotations := targetContent(m, rendered)
	return newOwnedSecret(ownerOf(cred), cred.Namespace, cred.Spec.SecretName, data, annotations)
}

// secretOwner is the credential, of either kind, that target Secrets belong to.
type secretOwner struct {
	kind     string
	name     string
	uid      types.UID
	template *clearancev1alpha1.SecretTemplate
}

func ownerOf(cred *clearancev1alpha1.ClearanceCredential) secretOwner {
	return secretOwner{kind: "ClearanceCredential", name: cred.Name, uid: cred.UID, template: cred.Spec.SecretTemplate}
}

// newOwnedSecret is a target Secret of owner with this content, as an object to create.
func newOwnedSecret(owner secretOwner, namespace, name string, data map[string][]byte, annotations map[string]string) *corev1.Secret {
	labels := ownedMetadata(owner, annotations)
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace,
			Labels: labels, Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: clearancev1alpha1.GroupVersion.String(), Kind: owner.kind, Name: owner.name, UID: owner.uid,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
}

// storedMinted rebuilds the token and its inputs from a full target Secret
// (read from the apiserver, not the slimmed form the operator holds) and
// the connection file it was minted from, to write it again under a changed
// template without a new token.
func storedMinted(stored *corev1.Secret, conn *clearance.ConnectionFile) *mintedToken {
	return &mintedToken{
		token: &clearance.Token{
			AccessToken: string(stored.Data[clearancev1alpha1.SecretKeyToken]),
			TokenType:   string(stored.Data[clearancev1alpha1.SecretKeyTokenType]),
			ExpiresAt:   parseTime(string(stored.Data[clearancev1alpha1.SecretKeyExpiresAt])),
		},
		connection: conn,
	}
}

// reapplySecret re-applies a stored token with the current template, for
// template changes that need no new token: the operator's data keys as
// stored (the address keys from the connection file the token was minted
// from) and the data templates rendered again. Keys a template no longer
// names are dropped by the apply. stored is the full Secret.
func reapplySecret(cred *clearancev1alpha1.ClearanceCredential, stored *corev1.Secret, conn *clearance.ConnectionFile, rendered map[string][]byte) *corev1ac.SecretApplyConfiguration {
	data, annotations := reappliedContent(stored, conn, rendered)
	return applySecret(cred, data, annotations, stored.UID)
}

// reappliedContent is the data and bookkeeping annotations reapplySecret writes.
func reappliedContent(stored *corev1.Secret, conn *clearance.ConnectionFile, rendered map[string][]byte) (data map[string][]byte, annotations map[string]string) {
	annotations = map[string]string{}
	for k, v := range stored.Annotations {
		if strings.HasPrefix(k, annotationPrefix) {
			annotations[k] = v
		}
	}
	data = map[string][]byte{}
	for _, k := range fixedDataKeys {
		if v, ok := stored.Data[k]; ok {
			data[k] = v
		}
	}
	for member, addr := range conn.FirstAddresses {
		data[clearancev1alpha1.AddressDataKey(member)] = []byte(addr)
	}
	for k, v := range rendered {
		if _, taken := data[k]; !taken {
			data[k] = v
		}
	}
	return data, annotations
}

// templateHash identifies the template's labels, annotations and data
// templates, so the operator can tell whether a stored Secret carries them
// without holding them ("" for no template). A template without data hashes
// as it did before data templates existed.
func templateHash(cred *clearancev1alpha1.ClearanceCredential) string {
	return templateHashOf(cred.Spec.SecretTemplate)
}

// templateHashOf is templateHash of a secretTemplate.
func templateHashOf(t *clearancev1alpha1.SecretTemplate) string {
	if t == nil || len(t.Labels)+len(t.Annotations)+len(t.Data) == 0 {
		return ""
	}
	parts := []string{"labels"}
	for _, k := range slices.Sorted(maps.Keys(t.Labels)) {
		parts = append(parts, k, t.Labels[k])
	}
	parts = append(parts, "annotations")
	for _, k := range slices.Sorted(maps.Keys(t.Annotations)) {
		parts = append(parts, k, t.Annotations[k])
	}
	if len(t.Data) > 0 {
		parts = append(parts, "data")
		for _, k := range slices.Sorted(maps.Keys(t.Data)) {
			parts = append(parts, k, t.Data[k])
		}
	}
	return shortHash(parts...)
}

// ownedMetadata returns the labels of a target Secret of owner and adds the template's
// annotations, and its hash, to the operator's own.
func ownedMetadata(owner secretOwner, annotations map[string]string) (labels map[string]string) {
	labels = map[string]string{}
	delete(annotations, annotationTemplateHash)
	if h := templateHashOf(owner.template); h != "" {
		annotations[annotationTemplateHash] = h
	}
	if t := owner.template; t != nil {
		maps.Copy(labels, t.Labels)
		for k, v := range t.Annotations {
			// The clearance.dev/ prefix is the operator's bookkeeping: a template
			// value there could fake a schedule or an input and cause re-mints.
			if !strings.HasPrefix(k, annotationPrefix) {
				annotations[k] = v
			}
		}
	}
	// Set last: a template cannot take the Secret out of the operator's cache.
	labels[clearancev1alpha1.ManagedByLabel] = clearancev1alpha1.ManagedByValue
	return labels
}

// applySecret builds the apply configuration. A non-empty uid is a
// precondition: the apply fails instead of writing into a Secret that was
// deleted and re-created (by anyone) since the operator found it ours.
func applySecret(cred *clearancev1alpha1.ClearanceCredential, data map[string][]byte, annotations map[string]string, uid types.UID) *corev1ac.SecretApplyConfiguration {
	return applyOwnedSecret(ownerOf(cred), cred.Namespace, cred.Spec.SecretName, data, annotations, uid)
}

// applyOwnedSecret is applySecret for a target Secret of owner.
func applyOwnedSecret(owner secretOwner, namespace, name string, data map[string][]byte, annotations map[string]string, uid types.UID) *corev1ac.SecretApplyConfiguration {
	labels := ownedMetadata(owner, annotations)
	ac := corev1ac.Secret(name, namespace)
	if uid != "" {
		ac = ac.WithUID(uid)
	}
	return ac.
		WithType(corev1.SecretTypeOpaque).
		WithLabels(labels).
		WithAnnotations(annotations).
		WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(clearancev1alpha1.GroupVersion.String()).
			WithKind(owner.kind).
			WithName(owner.name).
			WithUID(owner.uid).
			WithController(true).
			WithBlockOwnerDeletion(true)).
		WithData(data)
}

// templateApplied reports whether the stored Secret was written with the
// current template.
func templateApplied(cred *clearancev1alpha1.ClearanceCredential, s *corev1.Secret) bool {
	return s.Annotations[annotationTemplateHash] == templateHash(cred)
}

// controlledBy reports whether obj's controller reference points at cred.
func controlledBy(obj metav1.Object, cred *clearancev1alpha1.ClearanceCredential) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == cred.UID
}
