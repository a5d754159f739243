package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// clusterKind is the API kind of the cluster-scoped credential.
const clusterKind = "ClusterClearanceCredential"

// maxConcurrentTargetWrites bounds the Secret writes of one cluster
// credential in flight at once: a renewal for a thousand namespaces is a
// thousand writes, which in sequence would take seconds, and all at once
// would crowd out every other credential's calls to the apiserver.
const maxConcurrentTargetWrites = 8

// ClusterClearanceCredentialReconciler keeps one token, minted once per
// renewal, in the target Secret of every namespace a
// ClusterClearanceCredential selects. The token steps (connection file,
// mint policy, token request, backoff) are the ClearanceCredential's: they
// run on the cluster credential seen as a ClearanceCredential of the cluster
// resource namespace (asCredential), with its status. What differs is the
// target: a set of Secrets, whose newest intact copy stands for the stored
// token.
type ClusterClearanceCredentialReconciler struct {
	client.Client
	apiReader      client.Reader
	secretMetadata client.Reader
	recorder       events.EventRecorder
	opts           Options
	// steps runs the shared token steps; its events are about the cluster credential.
	steps *ClearanceCredentialReconciler
}

func newClusterReconciler(c client.Client, apiReader, secretMetadata client.Reader, recorder events.EventRecorder, opts Options) *ClusterClearanceCredentialReconciler {
	steps := newReconciler(c, apiReader, secretMetadata, recorder, opts)
	steps.regarding = func(cred *clearancev1alpha1.ClearanceCredential) runtime.Object { return clusterRef(cred) }
	return &ClusterClearanceCredentialReconciler{
		Client: c, apiReader: apiReader, secretMetadata: secretMetadata, recorder: recorder, opts: opts, steps: steps,
	}
}

// clusterRef is the cluster credential a view made by asCredential stands for, for events.
func clusterRef(cred *clearancev1alpha1.ClearanceCredential) *clearancev1alpha1.ClusterClearanceCredential {
	return &clearancev1alpha1.ClusterClearanceCredential{ObjectMeta: metav1.ObjectMeta{
		Name: cred.Name, UID: cred.UID, ResourceVersion: cred.ResourceVersion,
	}}
}

// asCredential is the cluster credential as the ClearanceCredential token
// steps see it: the same connection reference, token request and status, in
// the cluster resource namespace, where its connection Secret is read. It is
// a view, never written.
func asCredential(cc *clearancev1alpha1.ClusterClearanceCredential, namespace string) *clearancev1alpha1.ClearanceCredential {
	return &clearancev1alpha1.ClearanceCredential{
		ObjectMeta: metav1.ObjectMeta{
			Name: cc.Name, Namespace: namespace, UID: cc.UID, Generation: cc.Generation,
			ResourceVersion: cc.ResourceVersion, Annotations: cc.Annotations,
		},
		Spec: clearancev1alpha1.ClearanceCredentialSpec{
			ConnectionSecretRef: cc.Spec.ConnectionSecretRef, SecretName: cc.Spec.SecretName,
			Audience: cc.Spec.Audience, RenewBefore: cc.Spec.RenewBefore,
			TokenRequestEncoding: cc.Spec.TokenRequestEncoding, Suspend: cc.Spec.Suspend,
			SecretTemplate: cc.Spec.SecretTemplate,
		},
		Status: cc.Status.ClearanceCredentialStatus,
	}
}

func clusterOwner(cc *clearancev1alpha1.ClusterClearanceCredential) secretOwner {
	return secretOwner{kind: clusterKind, name: cc.Name, uid: cc.UID, template: cc.Spec.SecretTemplate}
}

// +kubebuilder:rbac:groups=clearance.dev,resources=clusterclearancecredentials,verbs=get;list;watch
// +kubebuilder:rbac:groups=clearance.dev,resources=clusterclearancecredentials/status,verbs=get;patch
// +kubebuilder:rbac:groups=clearance.dev,resources=clusterclearancecredentials/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=delete

// Reconcile gets the cluster credential, runs the steps, turns what they
// found into the status and the next look (clusterOutcome), and writes the
// status once.
func (r *ClusterClearanceCredentialReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cc := &clearancev1alpha1.ClusterClearanceCredential{}
	if err := r.Get(ctx, req.NamespacedName, cc); err != nil {
		if apierrors.IsNotFound(err) {
			r.steps.unwritten.forget(r.unwrittenKey(req.Name))
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !cc.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // the garbage collector deletes the Secrets it controls
	}
	now := r.opts.Clock.Now()
	found, stepErr := r.runSteps(ctx, cc, now)
	status, requeue := clusterOutcome(cc, found, now, r.opts.MinForcedMintInterval)
	r.reportConflicts(ctx, cc, found.conflicts)
	if !equality.Semantic.DeepEqual(cc.Status, status) {
		if err := patchStatus(ctx, r.Client, cc, status); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{RequeueAfter: statusConflictRetry}, stepErr
			}
			if !apierrors.IsNotFound(err) {
				return ctrl.Result{}, fmt.Errorf("patching status: %w", err)
			}
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, stepErr
}

// unwrittenKey keys a cluster credential's unwritten token; the steps'
// store is this reconciler's own, so it cannot meet a ClearanceCredential.
func (r *ClusterClearanceCredentialReconciler) unwrittenKey(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: r.opts.ClusterResourceNamespace, Name: name}
}

// clusterFindings is what the steps of one reconcile of a cluster
// credential found: the token steps' findings, with the reference Secret as
// their target, and how far the token reached.
type clusterFindings struct {
	findings
	// selected are the selected namespaces, sorted.
	selected []string
	// noSelection explains why nothing is selected when that is the user's doing.
	selectorProblem string
	// conflicts are the selected namespaces whose Secret of that name this
	// credential does not control, sorted.
	conflicts []string
	// current counts the selected namespaces holding the current token after this run.
	current int
}

// runSteps syncs the set of Secrets with the selected namespaces, then runs
// the token steps; a token, new or stored, goes to every selected namespace
// that lacks it.
func (r *ClusterClearanceCredentialReconciler) runSteps(ctx context.Context, cc *clearancev1alpha1.ClusterClearanceCredential, now time.Time) (clusterFindings, error) {
	var (
		f   clusterFindings
		src connectionSource
		err error
	)
	cred := asCredential(cc, r.opts.ClusterResourceNamespace)
	if f.selected, f.selectorProblem, err = r.selectNamespaces(ctx, cc); err != nil || f.selectorProblem != "" {
		return f, err
	}
	targets, err := r.readTargets(ctx, cc, f.selected)
	if err != nil {
		return f, err
	}
	f.conflicts = targets.conflicts
	f.target = targets.reference
	f.current = targets.currentCount()
	if f.suspended = cc.Spec.Suspend; f.suspended {
		return f, nil
	}
	if err := r.deleteStrays(ctx, targets.strays); err != nil {
		return f, err
	}
	if len(targets.bySelected) == 0 {
		return f, nil // nothing selected, or every selected namespace conflicts: nothing to mint for
	}
	if _, err := parseDataTemplates(templateData(cc.Spec.SecretTemplate)); err != nil {
		f.problem = templateProblem(err)
		return f, nil
	}
	if src, f.problem, err = r.steps.readSource(ctx, cred, f.target.stored); err != nil || f.problem != nil {
		return f, err
	}
	if f.decision = r.steps.decide(cred, src, f.target.stored, now); !f.decision.Mint() || f.decision.Deferred(now) {
		// The stored token stays: copy it where it is missing or stale.
		f.problem, err = r.spreadStored(ctx, cc, src, &targets, &f)
		return f, err
	}

	key := r.unwrittenKey(cc.Name)
	refresh := cc.Annotations[clearancev1alpha1.RefreshRequestedAtAnnotation]
	minted := r.steps.unwritten.take(key, src.hash, specHash(cred), refresh, now)
	if minted == nil {
		f.inputs = failedInputs(src.version, specHash(cred), refresh)
		if f.backoffUntil = backoffUntil(&cc.Status.ClearanceCredentialStatus, f.inputs, now); !f.backoffUntil.IsZero() {
			// While requests fail, a still valid stored token reaches new namespaces.
			_, err = r.spreadStored(ctx, cc, src, &targets, &f)
			return f, err
		}
		if f.target.fromCache {
			// As for a ClearanceCredential: a mint is confirmed against the apiserver.
			if f.target, err = r.readLive(ctx, cc, targets.referenceKey(cc.Spec.SecretName)); err != nil {
				return f, err
			}
			if targets.reference.secret == nil {
				targets.reference = f.target // the cache had none: copy the live one
			}
			if f.decision = r.steps.decide(cred, src, f.target.stored, now); !f.decision.Mint() || f.decision.Deferred(now) {
				f.problem, err = r.spreadStored(ctx, cc, src, &targets, &f)
				return f, err
			}
		}
		if minted, err = r.steps.mint(ctx, cred, src, &f.findings, now); minted == nil || err != nil {
			if err == nil && f.failure != nil {
				_, err = r.spreadStored(ctx, cc, src, &targets, &f)
			}
			return f, err
		}
	}
	rendered, err := renderDataTemplates(cc.Spec.SecretTemplate, templateValuesFor(minted.token, minted.connection))
	if err != nil {
		r.steps.unwritten.keep(key, minted)
		f.problem = templateProblem(err)
		return f, nil
	}
	data, annotations := targetContent(minted, rendered)
	written, err := r.writeAll(ctx, cc, &targets, targets.selected(), data, annotations)
	f.current = written
	if written == 0 && err != nil {
		r.steps.unwritten.keep(key, minted)
		f.writeFailed = true
		return f, err
	}
	// Namespaces whose write failed get the token from the others on the retry.
	r.reportWrite(ctx, cc, f.decision, minted, written)
	f.written = minted
	return f, err
}

// selectNamespaces lists the namespaces the spec selects, of those the
// operator watches, leaving out terminating ones (nothing can be created in
// them).
func (r *ClusterClearanceCredentialReconciler) selectNamespaces(ctx context.Context, cc *clearancev1alpha1.ClusterClearanceCredential) ([]string, string, error) {
	selector := labels.Nothing()
	if s := cc.Spec.NamespaceSelector; s != nil {
		var err error
		if selector, err = metav1.LabelSelectorAsSelector(s); err != nil {
			return nil, fmt.Sprintf("spec.namespaceSelector: %v", err), nil
		}
	}
	list := &corev1.NamespaceList{}
	if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, "", fmt.Errorf("listing namespaces: %w", err)
	}
	var out []string
	for i := range list.Items {
		ns := &list.Items[i]
		if !ns.DeletionTimestamp.IsZero() || !r.watched(ns.Name) {
			continue
		}
		if slices.Contains(cc.Spec.Namespaces, ns.Name) || selector.Matches(labels.Set(ns.Labels)) {
			out = append(out, ns.Name)
		}
	}
	slices.Sort(out)
	return out, "", nil
}

// watched reports whether the operator manages Secrets in namespace: all of
// them, or those of --namespaces.
func (r *ClusterClearanceCredentialReconciler) watched(namespace string) bool {
	return len(r.opts.Namespaces) == 0 || slices.Contains(r.opts.Namespaces, namespace)
}

// clusterTargets is the state of a cluster credential's Secrets, from the cache.
type clusterTargets struct {
	// bySelected is, per selected namespace, the slim Secret this credential
	// controls there (nil: none, or a conflict).
	bySelected map[string]*corev1.Secret
	// conflicts are the selected namespaces where another holds the name, sorted.
	conflicts []string
	// strays are the Secrets this credential controls that it should not:
	// in namespaces no longer selected, or under a former secretName.
	strays []*corev1.Secret
	// reference stands for the stored token: the newest intact Secret among
	// the selected namespaces (or any of them when none is intact).
	reference targetFound
	// templateHash is the current template's hash.
	templateHash string
}

// selected lists the selected namespaces that do not conflict.
func (t *clusterTargets) selected() []string {
	return slices.Sorted(maps.Keys(t.bySelected))
}

// current reports whether a slim Secret holds the reference token with the current template.
func (t *clusterTargets) current(s *corev1.Secret) bool {
	ref := t.reference.secret
	return s != nil && ref != nil && string(s.Data[dataTokenState]) == tokenStateIntact &&
		string(ref.Data[dataTokenState]) == tokenStateIntact &&
		s.Annotations[annotationIssuedAt] == ref.Annotations[annotationIssuedAt] &&
		string(s.Data[clearancev1alpha1.SecretKeyExpiresAt]) == string(ref.Data[clearancev1alpha1.SecretKeyExpiresAt]) &&
		s.Annotations[annotationTemplateHash] == t.templateHash
}

func (t *clusterTargets) currentCount() int {
	n := 0
	for _, s := range t.bySelected {
		if t.current(s) {
			n++
		}
	}
	return n
}

// readTargets reads the credential's Secrets from the cache: the managed
// cache holds every Secret any credential controls (without their tokens),
// the metadata cache every other Secret's name. A name held in the metadata
// cache is a conflict without a GET: a write would fail on it anyway, and
// its going away brings the credential back through the metadata watch.
func (r *ClusterClearanceCredentialReconciler) readTargets(ctx context.Context, cc *clearancev1alpha1.ClusterClearanceCredential, selected []string) (clusterTargets, error) {
	t := clusterTargets{bySelected: map[string]*corev1.Secret{}, templateHash: templateHashOf(cc.Spec.SecretTemplate)}
	managed := &corev1.SecretList{}
	if err := r.List(ctx, managed, client.UnsafeDisableDeepCopy); err != nil {
		return t, fmt.Errorf("listing target Secrets: %w", err)
	}
	held := map[string]*corev1.Secret{} // namespace -> managed Secret named secretName
	for i := range managed.Items {
		s := &managed.Items[i]
		ours := metav1.GetControllerOf(s) != nil && metav1.GetControllerOf(s).UID == cc.UID
		switch {
		case s.Name == cc.Spec.SecretName:
			held[s.Namespace] = s
			if ours && !slices.Contains(selected, s.Namespace) {
				t.strays = append(t.strays, s)
			}
		case ours:
			t.strays = append(t.strays, s)
		}
	}
	for _, ns := range selected {
		s, ok := held[ns]
		switch {
		case ok && metav1.GetControllerOf(s) != nil && metav1.GetControllerOf(s).UID == cc.UID:
			t.bySelected[ns] = s.DeepCopy()
		case ok:
			t.conflicts = append(t.conflicts, ns)
		default:
			if _, err := r.steps.secretMetadataOf(ctx, types.NamespacedName{Namespace: ns, Name: cc.Spec.SecretName}); err == nil {
				t.conflicts = append(t.conflicts, ns)
			} else {
				t.bySelected[ns] = nil
			}
		}
	}
	t.reference = pickReference(t.bySelected)
	if t.reference.secret == nil && cc.Status.LastRequestTime != nil {
		// As for a ClearanceCredential: after a token request, finding no
		// Secret may be the cache lagging behind our own writes.
		t.reference.fromCache = true
	}
	return t, nil
}

// referenceKey names the Secret a mint is confirmed against: the
// reference, or, when the cache holds none, the first selected namespace's.
func (t *clusterTargets) referenceKey(secretName string) types.NamespacedName {
	if ref := t.reference.secret; ref != nil {
		return client.ObjectKeyFromObject(ref)
	}
	return types.NamespacedName{Namespace: t.selected()[0], Name: secretName}
}

// pickReference returns the Secret that stands for the stored token: the
// intact one issued last, else any (its token is missing or edited, which
// calls for a mint); none when no selected namespace has one.
func pickReference(secrets map[string]*corev1.Secret) targetFound {
	var best *corev1.Secret
	for _, ns := range slices.Sorted(maps.Keys(secrets)) {
		s := secrets[ns]
		if s == nil {
			continue
		}
		intact := string(s.Data[dataTokenState]) == tokenStateIntact
		switch {
		case best == nil:
			best = s
		case intact && string(best.Data[dataTokenState]) != tokenStateIntact:
			best = s
		case intact && s.Annotations[annotationIssuedAt] > best.Annotations[annotationIssuedAt]:
			best = s // RFC 3339 UTC times sort as strings
		}
	}
	if best == nil {
		return targetFound{}
	}
	return targetFound{secret: best, stored: storedTokenFrom(best), fromCache: true}
}

// readLive reads the reference Secret from the apiserver.
func (r *ClusterClearanceCredentialReconciler) readLive(ctx context.Context, cc *clearancev1alpha1.ClusterClearanceCredential, key types.NamespacedName) (targetFound, error) {
	full, err := r.getControlled(ctx, cc, key)
	if err != nil || full == nil {
		return targetFound{}, err
	}
	slim := slimTargetSecret(full)
	return targetFound{secret: slim, stored: storedTokenFrom(slim)}, nil
}

// getControlled GETs a Secret from the apiserver; nil when it is gone or
// no longer controlled by cc.
func (r *ClusterClearanceCredentialReconciler) getControlled(ctx context.Context, cc *clearancev1alpha1.ClusterClearanceCredential, key types.NamespacedName) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	if err := r.apiReader.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading target Secret: %w", err)
	}
	if ref := metav1.GetControllerOf(s); ref == nil || ref.UID != cc.UID {
		return nil, nil
	}
	return s, nil
}

// spreadStored writes the stored token to every selected namespace whose
// Secret lacks it or carries an older template, without a token request:
// the token is read once, with a GET of the reference Secret (the cache
// holds none). A changed template is rendered again from it, which needs
// the connection file's addresses.
func (r *ClusterClearanceCredentialReconciler) spreadStored(ctx context.Context, cc *clearancev1alpha1.ClusterClearanceCredential, src connectionSource, t *clusterTargets, f *clusterFindings) (*sourceProblem, error) {
	var stale []string
	for _, ns := range t.selected() {
		if !t.current(t.bySelected[ns]) {
			stale = append(stale, ns)
		}
	}
	ref := t.reference.secret
	if len(stale) == 0 && (ref == nil || ref.Annotations[annotationTemplateHash] == t.templateHash) {
		return nil, nil
	}
	if ref == nil || !t.reference.stored.Intact || !t.reference.stored.validAt(r.opts.Clock.Now()) {
		return nil, nil // nothing valid to spread
	}
	full, err := r.getControlled(ctx, cc, client.ObjectKeyFromObject(ref))
	if err != nil || full == nil {
		return nil, err
	}
	if string(slimTargetSecret(full.DeepCopy()).Data[dataTokenState]) != tokenStateIntact {
		return nil, fmt.Errorf("the token in Secret %s/%s changed while it was being copied", full.Namespace, full.Name)
	}
	annotations := map[string]string{}
	for k, v := range full.Annotations {
		if strings.HasPrefix(k, annotationPrefix) {
			annotations[k] = v
		}
	}
	data := full.Data
	if full.Annotations[annotationTemplateHash] != t.templateHash {
		// Every copy carries the old template.
		if src.file == nil {
			var problem *sourceProblem
			if src, problem, err = r.steps.loadSource(ctx, asCredential(cc, r.opts.ClusterResourceNamespace), src.version); err != nil || problem != nil {
				return problem, err
			}
		}
		stored := storedMinted(full, src.file)
		rendered, err := renderDataTemplates(cc.Spec.SecretTemplate, templateValuesFor(stored.token, src.file))
		if err != nil {
			return templateProblem(err), nil
		}
		data, annotations = reappliedContent(full, src.file, rendered)
		stale = t.selected()
	}
	written, err := r.writeAll(ctx, cc, t, stale, data, annotations)
	f.current += written
	return nil, err
}

// writeAll writes the token's data and bookkeeping annotations into the
// target Secret of each namespace, a few at a time, and returns how many
// were written. A namespace where a Secret appeared meanwhile that this
// credential does not control becomes a conflict; the others go on.
func (r *ClusterClearanceCredentialReconciler) writeAll(ctx context.Context, cc *clearancev1alpha1.ClusterClearanceCredential, t *clusterTargets, namespaces []string, data map[string][]byte, annotations map[string]string) (int, error) {
	owner := clusterOwner(cc)
	var (
		mu        sync.Mutex
		written   int
		conflicts []string
		errs      []error
		wg        sync.WaitGroup
		slots     = make(chan struct{}, maxConcurrentTargetWrites)
	)
	for _, ns := range namespaces {
		existing := t.bySelected[ns]
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			conflict, err := r.writeOne(ctx, cc, owner, ns, existing, data, maps.Clone(annotations))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("namespace %s: %w", ns, err))
			case conflict:
				conflicts = append(conflicts, ns)
			default:
				written++
			}
		})
	}
	wg.Wait()
	for _, ns := range conflicts {
		delete(t.bySelected, ns)
	}
	t.conflicts = slices.Sorted(slices.Values(append(t.conflicts, conflicts...)))
	if len(errs) > 0 {
		return written, fmt.Errorf("writing %d of %d target Secrets failed, first: %w", len(errs), len(namespaces), errs[0])
	}
	return written, nil
}

// writeOne writes one namespace's target Secret: a create when none is
// known (which cannot take over a Secret that appeared meanwhile), else a
// server-side apply with the found Secret's UID as precondition.
func (r *ClusterClearanceCredentialReconciler) writeOne(ctx context.Context, cc *clearancev1alpha1.ClusterClearanceCredential, owner secretOwner, ns string, existing *corev1.Secret, data map[string][]byte, annotations map[string]string) (conflict bool, err error) {
	name := cc.Spec.SecretName
	if existing != nil {
		return false, r.steps.apply(ctx, applyOwnedSecret(owner, ns, name, data, annotations, existing.UID))
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), secretWriteTimeout)
	defer cancel()
	err = r.Create(wctx, newOwnedSecret(owner, ns, name, data, annotations), client.FieldOwner(FieldOwner))
	if !apierrors.IsAlreadyExists(err) {
		return false, err
	}
	full, err := r.getControlled(ctx, cc, types.NamespacedName{Namespace: ns, Name: name})
	if err != nil || full == nil {
		return full == nil && err == nil, err
	}
	return false, r.steps.apply(ctx, applyOwnedSecret(owner, ns, name, data, annotations, full.UID))
}

// deleteStrays deletes Secrets the credential controls but no longer
// selects, each only while it is the one the credential controls.
func (r *ClusterClearanceCredentialReconciler) deleteStrays(ctx context.Context, strays []*corev1.Secret) error {
	for _, s := range strays {
		err := r.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name}},
			client.Preconditions{UID: &s.UID})
		switch {
		case err == nil:
			log.FromContext(ctx).Info("deleted the target Secret of a namespace no longer selected", "namespace", s.Namespace, "secret", s.Name)
		case !apierrors.IsNotFound(err) && !apierrors.IsConflict(err):
			return fmt.Errorf("deleting Secret %s/%s of a namespace no longer selected: %w", s.Namespace, s.Name, err)
		}
	}
	return nil
}

// reportWrite records a stored token in an event and the log.
func (r *ClusterClearanceCredentialReconciler) reportWrite(ctx context.Context, cc *clearancev1alpha1.ClusterClearanceCredential, d MintDecision, m *mintedToken, written int) {
	event, verb := EventRenewed, "renewed"
	if d.Reason == MintTargetMissing || d.Reason == MintTokenMissing {
		event, verb = EventMinted, "minted"
	}
	r.event(cc, corev1.EventTypeNormal, event, "WriteSecret", fmt.Sprintf("token %s (%s) by %s into Secret %q of %d namespaces; expires at %s, renewal at %s",
		verb, d.Reason, m.token.Endpoint, cc.Spec.SecretName, written, formatTime(m.token.ExpiresAt), formatTime(m.renewAt)))
	log.FromContext(ctx).Info("token written", "event", event, "reason", d.Reason, "endpoint", m.token.Endpoint,
		"namespaces", written, "expiresAt", m.token.ExpiresAt, "renewAt", m.renewAt)
}

// reportConflicts records an event for namespaces that newly conflict.
func (r *ClusterClearanceCredentialReconciler) reportConflicts(ctx context.Context, cc *clearancev1alpha1.ClusterClearanceCredential, conflicts []string) {
	var added []string
	for _, ns := range conflicts {
		if !slices.Contains(cc.Status.ConflictingNamespaces, ns) {
			added = append(added, ns)
		}
	}
	if len(added) == 0 || (len(cc.Status.ConflictingNamespaces) == clearancev1alpha1.MaxListedConflicts && len(conflicts) >= clearancev1alpha1.MaxListedConflicts) {
		return
	}
	r.event(cc, corev1.EventTypeWarning, EventTargetConflict, "WriteSecret", clusterConflictMessage(cc.Spec.SecretName, added, len(added)))
	log.FromContext(ctx).Info("target Secret is not controlled by this credential in some namespaces; left untouched", "secret", cc.Spec.SecretName, "namespaces", len(added))
}

func (r *ClusterClearanceCredentialReconciler) event(cc *clearancev1alpha1.ClusterClearanceCredential, eventType, reason, action, note string) {
	r.recorder.Eventf(cc, nil, eventType, reason, action, "%s", capMessage(note))
}

// clusterConflictMessage explains the namespaces where another holds the target name.
func clusterConflictMessage(secretName string, namespaces []string, total int) string {
	listed := namespaces[:min(len(namespaces), clearancev1alpha1.MaxListedConflicts)]
	more := ""
	if total > len(listed) {
		more = fmt.Sprintf(" and %d more", total-len(listed))
	}
	return fmt.Sprintf("Secret %q exists and is not controlled by this ClusterClearanceCredential in namespaces %s%s; it is left untouched there. Delete it or choose another spec.secretName",
		secretName, strings.Join(listed, ", "), more)
}
