// Package controller holds the ClearanceCredential controller: it mints
// Clearance access tokens into target Secrets and renews them ahead of expiry.
package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
)

// Minter is the part of the STS client the controller uses.
type Minter interface {
	LoadConnectionFile(data []byte) (*clearance.ConnectionFile, error)
	Mint(ctx context.Context, req clearance.MintRequest) (*clearance.Token, error)
}

// Event reasons.
const (
	EventMinted         = "Minted"
	EventRenewed        = "Renewed"
	EventMintFailed     = "MintFailed"
	EventTargetConflict = "TargetConflict"
)

// secretWriteTimeout bounds a Secret write that runs detached from the
// reconcile context, so a shutdown lets an in-flight write finish.
const secretWriteTimeout = 20 * time.Second

// statusConflictRetry is how soon a reconcile whose status write lost to a
// newer version of the credential runs again, from the newer version.
const statusConflictRetry = 100 * time.Millisecond

// ClearanceCredentialReconciler keeps a valid Clearance access token in the
// target Secret of every ClearanceCredential. Setup builds and registers it.
type ClearanceCredentialReconciler struct {
	// Client reads ClearanceCredentials and managed Secrets from the cache and writes.
	client.Client
	// apiReader reads from the apiserver directly: connection Secrets (never
	// cached) and target Secrets the cache cannot vouch for.
	apiReader client.Reader
	// secretMetadata serves the resourceVersion of Secrets the operator does
	// not manage, to notice connection Secret changes without their data.
	secretMetadata client.Reader
	recorder       events.EventRecorder
	opts           Options
	// regarding, when set, names the object events are about (see
	// ClusterClearanceCredentialReconciler); else the credential itself.
	regarding func(*clearancev1alpha1.ClearanceCredential) runtime.Object

	mintSlots   *mintSlots
	secretUsers *secretUsers
	unwritten   *unwrittenTokens
}

// newReconciler returns a reconciler reading and writing through c; the
// options' defaults must already be filled in (see Options.withDefaults).
func newReconciler(c client.Client, apiReader, secretMetadata client.Reader, recorder events.EventRecorder, opts Options) *ClearanceCredentialReconciler {
	return &ClearanceCredentialReconciler{
		Client: c, apiReader: apiReader, secretMetadata: secretMetadata, recorder: recorder, opts: opts,
		mintSlots:   newMintSlots(opts.MaxConcurrentMintsPerNamespace),
		secretUsers: newSecretUsers(),
		unwritten:   newUnwrittenTokens(),
	}
}

// +kubebuilder:rbac:groups=clearance.dev,resources=clearancecredentials,verbs=get;list;watch
// +kubebuilder:rbac:groups=clearance.dev,resources=clearancecredentials/status,verbs=get;patch
// +kubebuilder:rbac:groups=clearance.dev,resources=clearancecredentials/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile gets the credential, runs the steps, turns what they found into
// the status and the next look (outcome), and writes the status once.
func (r *ClearanceCredentialReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cred := &clearancev1alpha1.ClearanceCredential{}
	if err := r.Get(ctx, req.NamespacedName, cred); err != nil {
		if apierrors.IsNotFound(err) {
			r.secretUsers.forget(req.NamespacedName)
			r.unwritten.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	r.secretUsers.set(req.NamespacedName, cred.Spec.ConnectionSecretRef.Name, cred.Spec.SecretName)
	if !cred.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}

	now := r.opts.Clock.Now()
	found, stepErr := r.runSteps(ctx, cred, now)
	status, requeue := outcome(cred, found, now, r.opts.MinForcedMintInterval)
	if err := r.writeStatus(ctx, cred, status); err != nil {
		if apierrors.IsConflict(err) {
			// Computed from an older copy; what was written (a token, with
			// its schedule) is on the target Secret, so the next run finds it.
			return ctrl.Result{RequeueAfter: statusConflictRetry}, stepErr
		}
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("patching status: %w", err)
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, stepErr
}

// runSteps runs the steps in order; each returns what it found, and the
// first that settles the outcome ends the run.
func (r *ClearanceCredentialReconciler) runSteps(ctx context.Context, cred *clearancev1alpha1.ClearanceCredential, now time.Time) (findings, error) {
	var (
		f   findings
		src connectionSource
		err error
	)
	key := client.ObjectKeyFromObject(cred)
	if f.target, err = r.readTarget(ctx, cred); err != nil || f.target.conflict {
		return f, err
	}
	if f.suspended = cred.Spec.Suspend; f.suspended {
		return f, nil
	}
	// A template the user must fix is found before anything is read or
	// requested, like a connection Secret the user must fix.
	if _, err := parseDataTemplates(templateData(cred.Spec.SecretTemplate)); err != nil {
		f.problem = templateProblem(err)
		return f, nil
	}
	if src, f.problem, err = r.readSource(ctx, cred, f.target.stored); err != nil || f.problem != nil {
		return f, err
	}
	if f.decision = r.decide(cred, src, f.target.stored, now); !f.decision.Mint() {
		err = r.keepStored(ctx, cred, src, &f)
		return f, err
	}
	if f.decision.Deferred(now) {
		return f, nil
	}

	refresh := cred.Annotations[clearancev1alpha1.RefreshRequestedAtAnnotation]
	minted := r.unwritten.take(key, src.hash, specHash(cred), refresh, now)
	if minted == nil {
		f.inputs = failedInputs(src.version, specHash(cred), refresh)
		if f.backoffUntil = backoffUntil(&cred.Status, f.inputs, now); !f.backoffUntil.IsZero() {
			return f, nil
		}
		if f.target.fromCache {
			// A mint is the one costly step that is not idempotent: a cached
			// target that lags behind our last write would have it repeated,
			// so the decision to mint is confirmed against the apiserver.
			if f.target, err = r.readTargetLive(ctx, cred); err != nil || f.target.conflict {
				return f, err
			}
			if f.decision = r.decide(cred, src, f.target.stored, now); !f.decision.Mint() {
				err = r.keepStored(ctx, cred, src, &f)
				return f, err
			}
			if f.decision.Deferred(now) {
				return f, nil
			}
		}
		if minted, err = r.mint(ctx, cred, src, &f, now); minted == nil || err != nil {
			return f, err
		}
	}
	rendered, err := renderDataTemplates(cred.Spec.SecretTemplate, templateValuesFor(minted.token, minted.connection))
	if err != nil {
		// Tried before the request with a placeholder token; what fails
		// only with the real one (its size) keeps it for the fixed template.
		r.unwritten.keep(key, minted)
		f.problem = templateProblem(err)
		return f, nil
	}
	if err := r.writeTarget(ctx, cred, f.target, minted, rendered); err != nil {
		r.unwritten.keep(key, minted)
		f.writeFailed = true
		return f, err
	}
	r.reportWrite(ctx, cred, f.decision, minted)
	f.written = minted
	return f, nil
}

// keepStored is the step for a stored token that needs no successor: a token
// kept from a failed write is dropped, and a changed template is applied (one
// that cannot render is the problem found).
func (r *ClearanceCredentialReconciler) keepStored(ctx context.Context, cred *clearancev1alpha1.ClearanceCredential, src connectionSource, f *findings) error {
	r.unwritten.forget(client.ObjectKeyFromObject(cred))
	log.FromContext(ctx).V(1).Info("stored token is current", "expiresAt", f.target.stored.ExpiresAt, "renewAt", f.decision.RenewAt)
	var err error
	f.problem, err = r.applyTemplate(ctx, cred, src, f.target)
	return err
}

// targetFound is what readTarget learnt about the target Secret.
type targetFound struct {
	// secret is the target in the slim form the cache holds; nil when absent.
	secret *corev1.Secret
	stored *StoredToken
	// conflict: a Secret this credential does not control holds the name.
	conflict bool
	// fromCache: read from the cache, which may lag behind our last write.
	fromCache bool
}

// readTarget finds the target Secret. The cache holds only managed Secrets.
// A miss that the metadata-only cache of the other Secrets does not know
// either is taken as "absent": the write then creates it, and a create cannot
// overwrite a Secret that appeared meanwhile (see writeTarget). Such a miss
// is still a cached answer once a token was requested for the credential:
// the cache may not have seen the Secret that request wrote yet. Any other
// miss (a foreign or unlabelled Secret of that name) is confirmed with one
// direct GET.
func (r *ClearanceCredentialReconciler) readTarget(ctx context.Context, cred *clearancev1alpha1.ClearanceCredential) (targetFound, error) {
	key := types.NamespacedName{Namespace: cred.Namespace, Name: cred.Spec.SecretName}
	secret := &corev1.Secret{}
	err := r.Get(ctx, key, secret)
	switch {
	case apierrors.IsNotFound(err):
		if _, mdErr := r.secretMetadataOf(ctx, key); apierrors.IsNotFound(mdErr) {
			return targetFound{fromCache: cred.Status.LastRequestTime != nil}, nil
		}
		return r.readTargetLive(ctx, cred)
	case err != nil:
		return targetFound{}, fmt.Errorf("reading target Secret: %w", err)
	}
	found := r.checkTarget(ctx, cred, secret)
	found.fromCache = true
	return found, nil
}

// readTargetLive reads the target Secret from the apiserver.
func (r *ClearanceCredentialReconciler) readTargetLive(ctx context.Context, cred *clearancev1alpha1.ClearanceCredential) (targetFound, error) {
	secret := &corev1.Secret{}
	err := r.apiReader.Get(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: cred.Spec.SecretName}, secret)
	if apierrors.IsNotFound(err) {
		return targetFound{}, nil
	}
	if err != nil {
		return targetFound{}, fmt.Errorf("reading target Secret: %w", err)
	}
	return r.checkTarget(ctx, cred, slimTargetSecret(secret)), nil
}

// checkTarget reads the stored token from a target Secret, or reports the
// conflict when the credential does not control it. A conflict leaves the
// Secret untouched; the Secret watches bring the credential back when it
// goes away.
func (r *ClearanceCredentialReconciler) checkTarget(ctx context.Context, cred *clearancev1alpha1.ClearanceCredential, secret *corev1.Secret) targetFound {
	if controlledBy(secret, cred) {
		return targetFound{secret: secret, stored: storedTokenFrom(secret)}
	}
	if !conflictOnRecord(cred) {
		r.event(cred, corev1.EventTypeWarning, EventTargetConflict, "WriteSecret", conflictMessage(cred))
		log.FromContext(ctx).Info("target Secret is not controlled by this credential; left untouched", "secret", cred.Spec.SecretName)
	}
	return targetFound{conflict: true}
}

// conflictOnRecord reports whether the status already reports a foreign
// Secret under the target name.
func conflictOnRecord(cred *clearancev1alpha1.ClearanceCredential) bool {
	c := meta.FindStatusCondition(cred.Status.Conditions, clearancev1alpha1.ConditionStalled)
	return c != nil && c.Status == metav1.ConditionTrue && c.Reason == clearancev1alpha1.ReasonTargetConflict
}

// secretMetadataOf reads a Secret's metadata from the metadata-only cache.
func (r *ClearanceCredentialReconciler) secretMetadataOf(ctx context.Context, key types.NamespacedName) (*metav1.PartialObjectMetadata, error) {
	md := &metav1.PartialObjectMetadata{}
	md.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return md, r.secretMetadata.Get(ctx, key, md)
}

// connectionSource is the connection file as readSource found it.
type connectionSource struct {
	// version is the connection Secret's resourceVersion ("" when unknown).
	version string
	// hash identifies the file's content.
	hash string
	// file is the parsed file when this reconcile read it, else nil.
	file *clearance.ConnectionFile
}

// readSource learns the connection file's content hash. While the
// metadata-only cache shows the version the stored token was minted from,
// the stored hash stands and nothing is read; otherwise the Secret is read
// (connection Secrets are never cached) and parsed, and the parse serves
// this reconcile's mint.
func (r *ClearanceCredentialReconciler) readSource(ctx context.Context, cred *clearancev1alpha1.ClearanceCredential, stored *StoredToken) (connectionSource, *sourceProblem, error) {
	ref := connectionRef(cred)
	key := types.NamespacedName{Namespace: cred.Namespace, Name: ref.Name}
	var seen string
	if md, err := r.secretMetadataOf(ctx, key); err == nil {
		seen = md.ResourceVersion
		if stored != nil && stored.ConnectionVersion == seen && stored.ConnectionHash != "" {
			return connectionSource{version: seen, hash: stored.ConnectionHash}, nil, nil
		}
	}
	return r.loadSource(ctx, cred, seen)
}

// loadSource reads the connection Secret with one GET and parses it.
func (r *ClearanceCredentialReconciler) loadSource(ctx context.Context, cred *clearancev1alpha1.ClearanceCredential, seen string) (connectionSource, *sourceProblem, error) {
	ref := connectionRef(cred)
	secret, err := r.readConnectionSecret(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: ref.Name}, seen)
	if apierrors.IsNotFound(err) {
		return connectionSource{}, &sourceProblem{clearancev1alpha1.ReasonConnectionSecretNotFound,
			fmt.Sprintf("connection Secret %q not found in namespace %q; the token is renewed once it exists", ref.Name, cred.Namespace)}, nil
	}
	if err != nil {
		return connectionSource{}, nil, fmt.Errorf("reading connection Secret: %w", err)
	}
	data, ok := secret.Data[ref.Key]
	if !ok {
		return connectionSource{}, &sourceProblem{clearancev1alpha1.ReasonConnectionSecretNotFound,
			fmt.Sprintf("connection Secret %q has no key %q", ref.Name, ref.Key)}, nil
	}
	file, err := r.opts.Minter.LoadConnectionFile(data)
	if err != nil {
		// The parser's messages name the field and the problem, never the content.
		return connectionSource{}, &sourceProblem{clearancev1alpha1.ReasonConnectionInvalid,
			fmt.Sprintf("connection Secret %q key %q: %v", ref.Name, ref.Key, err)}, nil
	}
	return connectionSource{version: secret.ResourceVersion, hash: shortHash(string(data)), file: file}, nil, nil
}

// readConnectionSecret GETs a connection Secret from the apiserver. When the
// metadata-only watch has seen a resourceVersion of it, the GET asks for data
// not older than that one, which the apiserver serves from its watch cache
// instead of a quorum read from etcd: as fresh as what brought us here, and a
// later change comes back through the same watch. A watch cache that has not
// caught up with it (another apiserver, briefly) falls back to a quorum read.
func (r *ClearanceCredentialReconciler) readConnectionSecret(ctx context.Context, key types.NamespacedName, seen string) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	if seen != "" {
		err := r.apiReader.Get(ctx, key, secret, &client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: seen}})
		if !apierrors.IsTimeout(err) { // "Too large resource version" is a timeout
			return secret, err
		}
		secret = &corev1.Secret{}
	}
	return secret, r.apiReader.Get(ctx, key, secret)
}

// connectionRef is spec.connectionSecretRef with its default key.
func connectionRef(cred *clearancev1alpha1.ClearanceCredential) clearancev1alpha1.SecretKeyRef {
	ref := cred.Spec.ConnectionSecretRef
	if ref.Key == "" {
		ref.Key = clearancev1alpha1.DefaultConnectionSecretKey
	}
	return ref
}

// specHash covers the spec fields that change what is minted; other fields
// (renewBefore, secretTemplate, suspend) apply without a new token.
func specHash(cred *clearancev1alpha1.ClearanceCredential) string {
	ref := connectionRef(cred)
	enc := string(cred.Spec.TokenRequestEncoding)
	if enc == "" {
		enc = string(clearancev1alpha1.TokenRequestEncodingForm)
	}
	return shortHash(ref.Name, ref.Key, cred.Spec.Audience, enc)
}

// decide applies the mint policy to the stored token and the current inputs.
func (r *ClearanceCredentialReconciler) decide(cred *clearancev1alpha1.ClearanceCredential, src connectionSource, stored *StoredToken, now time.Time) MintDecision {
	// The stored token's issue time stands in for a request whose status
	// write was lost.
	var lastRequest time.Time
	if t := cred.Status.LastRequestTime; t != nil {
		lastRequest = t.Time
	}
	if stored != nil && stored.IssuedAt.After(lastRequest) {
		lastRequest = stored.IssuedAt
	}
	return DecideMint(MintInput{
		Now:               now,
		Stored:            stored,
		ConnectionHash:    src.hash,
		SpecHash:          specHash(cred),
		RefreshRequest:    cred.Annotations[clearancev1alpha1.RefreshRequestedAtAnnotation],
		LastRequest:       lastRequest,
		MinForcedInterval: r.opts.MinForcedMintInterval,
	})
}

// applyTemplate writes a changed secretTemplate onto the stored Secret
// without a new token, rendering the data templates again from the stored
// token. The operator holds target Secrets without their data, so this rare
// path reads the full Secret once, and the connection file (its address
// lists) unless this reconcile has read it already. A template that cannot
// render is returned as the problem, and nothing is written.
func (r *ClearanceCredentialReconciler) applyTemplate(ctx context.Context, cred *clearancev1alpha1.ClearanceCredential, src connectionSource, target targetFound) (*sourceProblem, error) {
	if target.secret == nil || templateApplied(cred, target.secret) {
		return nil, nil
	}
	if src.file == nil {
		var problem *sourceProblem
		var err error
		if src, problem, err = r.loadSource(ctx, cred, src.version); err != nil || problem != nil {
			return problem, err
		}
	}
	full := &corev1.Secret{}
	if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(target.secret), full); err != nil {
		return nil, fmt.Errorf("reading target Secret: %w", err)
	}
	if !controlledBy(full, cred) {
		return nil, fmt.Errorf("target Secret %q changed owner while its metadata was being updated", full.Name)
	}
	stored := storedMinted(full, src.file)
	rendered, err := renderDataTemplates(cred.Spec.SecretTemplate, templateValuesFor(stored.token, stored.connection))
	if err != nil {
		return templateProblem(err), nil
	}
	if err := r.apply(ctx, reapplySecret(cred, full, src.file, rendered)); err != nil {
		return nil, fmt.Errorf("updating the target Secret's template: %w", err)
	}
	return nil, nil
}

// mint makes one token request (the STS client fails over between
// addresses). It returns the token, or nil with what happened in f.
func (r *ClearanceCredentialReconciler) mint(ctx context.Context, cred *clearancev1alpha1.ClearanceCredential, src connectionSource, f *findings, now time.Time) (*mintedToken, error) {
	if !r.mintSlots.acquire(ctx, cred.Namespace, mintSlotWait) {
		// Other mints of this namespace are in flight (its STS may hang):
		// give the worker back to the other namespaces.
		f.slotWait = mintSlotRetry + time.Duration(objectJitter(cred.UID, now.String())*float64(mintSlotRetry))
		log.FromContext(ctx).V(1).Info("namespace at its concurrent mint limit; retrying later", "limit", r.opts.MaxConcurrentMintsPerNamespace)
		return nil, nil
	}
	defer r.mintSlots.release(cred.Namespace)
	if src.file == nil {
		// The stored hash stood in for the file until now; a mint needs it.
		var err error
		if src, f.problem, err = r.loadSource(ctx, cred, src.version); err != nil || f.problem != nil {
			return nil, err
		}
		f.inputs = failedInputs(src.version, specHash(cred), cred.Annotations[clearancev1alpha1.RefreshRequestedAtAnnotation])
	}
	// The templates are tried with the connection file and a placeholder
	// token, so one that cannot render costs no token request.
	if _, err := renderDataTemplates(cred.Spec.SecretTemplate, templateValuesFor(placeholderToken, src.file)); err != nil {
		f.problem = templateProblem(err)
		return nil, nil
	}
	logger := log.FromContext(ctx)
	logger.V(1).Info("requesting a token", "reason", f.decision.Reason)
	f.requested = true
	enc := clearance.EncodingForm
	if cred.Spec.TokenRequestEncoding == clearancev1alpha1.TokenRequestEncodingJSON {
		enc = clearance.EncodingJSON
	}
	start := time.Now()
	token, err := r.opts.Minter.Mint(ctx, clearance.MintRequest{Connection: src.file, Audience: cred.Spec.Audience, Encoding: enc})
	tokenRequestDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		var expiresAt *time.Time
		if stored := f.target.stored; stored.validAt(now) {
			expiresAt = &stored.ExpiresAt
		}
		attempt := cred.Status.FailedAttempts + 1
		failure := classifyMintFailure(err, attempt, objectJitter(cred.UID, fmt.Sprint(attempt)), now, expiresAt)
		tokenRequests.WithLabelValues(failure.outcome).Inc()
		logger.Info("token request failed", "reason", failure.reason, "failedAttempts", attempt,
			"retryIn", failure.wait.Round(time.Millisecond).String(), "error", capMessage(failure.message), "detail", capMessage(clearance.Detail(err)))
		r.event(cred, corev1.EventTypeWarning, EventMintFailed, "Mint", failure.reason+": "+failure.message)
		f.failure = &failure
		return nil, nil
	}
	tokenRequests.WithLabelValues(outcomeSuccess).Inc()

	var renewBefore *time.Duration
	if rb := cred.Spec.RenewBefore; rb != nil {
		renewBefore = &rb.Duration
	}
	jitter := objectJitter(cred.UID, formatTime(token.IssuedAt))
	renewAt := ScheduleRenewal(token.IssuedAt, token.ExpiresAt, renewBefore, jitter, RenewalSpreadFor(f.decision.Reason, r.opts.RenewalSpread))
	return &mintedToken{
		token: token, connection: src.file, connectionHash: src.hash, connectionVersion: src.version,
		specHash: specHash(cred), refreshRequest: cred.Annotations[clearancev1alpha1.RefreshRequestedAtAnnotation],
		renewAt: renewAt,
	}, nil
}

// writeTarget stores the token: a create when no target is known to exist
// (cheaper for the apiserver than an apply that creates, and it fails on any
// existing Secret, so it can never take over a foreign one), else
// server-side apply with the found Secret's UID as precondition.
func (r *ClearanceCredentialReconciler) writeTarget(ctx context.Context, cred *clearancev1alpha1.ClearanceCredential, target targetFound, m *mintedToken, rendered map[string][]byte) error {
	if target.secret != nil {
		return r.apply(ctx, targetSecret(cred, m, rendered, target.secret.UID))
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), secretWriteTimeout)
	defer cancel()
	err := r.Create(wctx, newTargetSecret(cred, m, rendered), client.FieldOwner(FieldOwner))
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	// It appeared since it was read: write into it only if it is ours.
	found, err := r.readTargetLive(ctx, cred)
	switch {
	case err != nil:
		return err
	case found.conflict:
		return fmt.Errorf("target Secret %q was created by someone else meanwhile", cred.Spec.SecretName)
	}
	return r.apply(ctx, targetSecret(cred, m, rendered, found.secret.UID))
}

// reportWrite records a stored token in an event and the log.
func (r *ClearanceCredentialReconciler) reportWrite(ctx context.Context, cred *clearancev1alpha1.ClearanceCredential, d MintDecision, m *mintedToken) {
	event, verb := EventRenewed, "renewed"
	if d.Reason == MintTargetMissing || d.Reason == MintTokenMissing {
		event, verb = EventMinted, "minted"
	}
	r.event(cred, corev1.EventTypeNormal, event, "WriteSecret", fmt.Sprintf("token %s (%s) by %s into Secret %q; expires at %s, renewal at %s",
		verb, d.Reason, m.token.Endpoint, cred.Spec.SecretName, formatTime(m.token.ExpiresAt), formatTime(m.renewAt)))
	log.FromContext(ctx).Info("token written", "event", event, "reason", d.Reason, "endpoint", m.token.Endpoint,
		"expiresAt", m.token.ExpiresAt, "renewAt", m.renewAt)
}

func (r *ClearanceCredentialReconciler) apply(ctx context.Context, obj *corev1ac.SecretApplyConfiguration) error {
	// Detached from cancellation so a shutdown lets an in-flight write finish.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), secretWriteTimeout)
	defer cancel()
	return r.Apply(wctx, obj, client.FieldOwner(FieldOwner), client.ForceOwnership)
}

// writeStatus patches the status when it changed. The patch replaces the
// whole status, which only this controller writes, and carries the
// resourceVersion it was computed from, so a status computed from an older
// copy fails with a conflict instead of replacing a newer one.
func (r *ClearanceCredentialReconciler) writeStatus(ctx context.Context, cred *clearancev1alpha1.ClearanceCredential, status clearancev1alpha1.ClearanceCredentialStatus) error {
	if equality.Semantic.DeepEqual(cred.Status, status) {
		return nil
	}
	return patchStatus(ctx, r.Client, cred, status)
}

// patchStatus replaces obj's status with one JSON patch that fails with a
// conflict unless obj is still at the resourceVersion it was read at.
func patchStatus(ctx context.Context, c client.Client, obj client.Object, status any) error {
	// "add" replaces an existing member and creates a missing one (RFC 6902
	// section 4.1); "replace" would fail on a credential without a status.
	data, err := json.Marshal([]jsonPatchOperation{
		{Op: "replace", Path: "/metadata/resourceVersion", Value: obj.GetResourceVersion()},
		{Op: "add", Path: "/status", Value: status},
	})
	if err != nil {
		return err
	}
	return c.Status().Patch(ctx, obj, client.RawPatch(types.JSONPatchType, data))
}

// jsonPatchOperation is one operation of a JSON patch (RFC 6902).
type jsonPatchOperation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// event records an event with a capped note.
func (r *ClearanceCredentialReconciler) event(cred *clearancev1alpha1.ClearanceCredential, eventType, reason, action, note string) {
	var obj runtime.Object = cred
	if r.regarding != nil {
		obj = r.regarding(cred)
	}
	r.recorder.Eventf(obj, nil, eventType, reason, action, "%s", capMessage(note))
}
