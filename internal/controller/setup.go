package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// ManagedSecretsCacheOptions restricts the manager's Secret cache to the
// Secrets this operator writes, so unrelated Secrets (and their data) are
// never held in memory, holds those without their tokens (see
// slimTargetSecret), and strips managedFields from everything cached.
func ManagedSecretsCacheOptions(opts cache.Options) cache.Options {
	if opts.ByObject == nil {
		opts.ByObject = map[client.Object]cache.ByObject{}
	}
	opts.ByObject[&corev1.Secret{}] = cache.ByObject{
		Label:     labels.SelectorFromSet(labels.Set{clearancev1alpha1.ManagedByLabel: clearancev1alpha1.ManagedByValue}),
		Transform: slimTargetSecretTransform,
	}
	opts.DefaultTransform = cache.TransformStripManagedFields()
	return opts
}

// CacheNamespaces restricts a cache to namespaces (nil for all), for the
// manager's cache and the Secret metadata cache alike.
func CacheNamespaces(namespaces []string) map[string]cache.Config {
	if len(namespaces) == 0 {
		return nil
	}
	configs := map[string]cache.Config{}
	for _, ns := range namespaces {
		configs[ns] = cache.Config{}
	}
	return configs
}

// newSecretMetadataCache returns a cache that watches the metadata of the
// Secrets the operator does not manage (the managed ones are in the manager's
// cache already, and their writes would be watched twice) and keeps just
// namespace, name and resourceVersion of each: enough to learn that a
// connection Secret changed (or that a conflicting target Secret went away)
// without holding Secret data, labels or annotations.
func newSecretMetadataCache(cfg *rest.Config, opts cache.Options) (cache.Cache, error) {
	notManaged, err := labels.NewRequirement(clearancev1alpha1.ManagedByLabel, selection.NotEquals, []string{clearancev1alpha1.ManagedByValue})
	if err != nil {
		return nil, err
	}
	opts.ByObject = nil
	opts.DefaultLabelSelector = labels.NewSelector().Add(*notManaged)
	opts.DefaultTransform = func(obj any) (any, error) {
		md, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return obj, nil
		}
		out := &metav1.PartialObjectMetadata{
			TypeMeta:   md.TypeMeta,
			ObjectMeta: metav1.ObjectMeta{Namespace: md.Namespace, Name: md.Name, ResourceVersion: md.ResourceVersion},
		}
		// Keep just the fact that a credential controls it (see notOwnTargetWrite).
		if ref := credentialController(md); ref != nil {
			out.OwnerReferences = []metav1.OwnerReference{*ref}
		}
		return out, nil
	}
	return cache.New(cfg, opts)
}

// Options configure the controller; zero values get the defaults named.
type Options struct {
	// Minter requests tokens from the STS.
	Minter Minter
	// Clock tells the time; nil is the real clock.
	Clock clock.PassiveClock
	// Namespaces restricts the Secret metadata watch as the manager's cache
	// is restricted; empty watches all namespaces.
	Namespaces []string
	// MaxConcurrentReconciles is the number of workers (1 when 0).
	MaxConcurrentReconciles int
	// RenewalSpread is the share of the time to renewal over which the
	// renewal of a token minted for anything but a due renewal is spread
	// (DefaultRenewalSpread in the manager); 0 keeps the 10% jitter.
	RenewalSpread float64
	// MinForcedMintInterval is the least time between a token request and a
	// mint a user forces (refresh annotation, connection, spec or token
	// edits) while the stored token is valid; 0 sets no minimum.
	MinForcedMintInterval time.Duration
	// MaxConcurrentMintsPerNamespace bounds the token requests of one
	// namespace in flight at once (see mintSlots); 0 sets no bound.
	MaxConcurrentMintsPerNamespace int
	// ClusterResourceNamespace is where ClusterClearanceCredentials read
	// their connection Secrets; empty serves no ClusterClearanceCredentials.
	ClusterResourceNamespace string
}

// withDefaults fills in the zero values.
func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	o.MaxConcurrentReconciles = max(1, o.MaxConcurrentReconciles)
	return o
}

// Setup builds the controllers with their Secret metadata cache and event
// recorder and registers them with mgr: the ClearanceCredential controller,
// and the ClusterClearanceCredential controller when
// opts.ClusterResourceNamespace is set. The manager's cache must have been
// created with ManagedSecretsCacheOptions.
func Setup(mgr ctrl.Manager, opts Options) error {
	opts = opts.withDefaults()
	watched := opts.Namespaces
	if len(watched) > 0 && opts.ClusterResourceNamespace != "" {
		// Cluster credentials read their connection Secrets there.
		watched = append(slices.Clip(watched), opts.ClusterResourceNamespace)
	}
	cacheOpts := cache.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), DefaultNamespaces: CacheNamespaces(watched)}
	secretMetadata, err := newSecretMetadataCache(mgr.GetConfig(), cacheOpts)
	if err != nil {
		return fmt.Errorf("creating the Secret metadata cache: %w", err)
	}
	if err := mgr.Add(secretMetadata); err != nil {
		return err
	}
	r := newReconciler(mgr.GetClient(), mgr.GetAPIReader(), secretMetadata, mgr.GetEventRecorder(FieldOwner), opts)
	credentialMetrics.setReader(mgr.GetCache())

	secretMD := &metav1.PartialObjectMetadata{}
	secretMD.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))

	if opts.ClusterResourceNamespace != "" {
		if err := setupCluster(mgr, secretMetadata, opts); err != nil {
			return err
		}
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("clearancecredential").
		// Our own status patches change neither generation nor annotations, so
		// they do not come back as reconciles.
		For(&clearancev1alpha1.ClearanceCredential{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		// Restores a deleted or edited target Secret promptly.
		Owns(&corev1.Secret{}, builder.WithPredicates(notOwnTokenWrite())).
		// A managed Secret going away frees its name for a credential that
		// was waiting on it (TargetConflict).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.requestsForSecret(types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()})
		}), builder.WithPredicates(deletesOnly())).
		// Connection Secret changes, and conflicting target Secrets going away.
		WatchesRawSource(source.Kind(secretMetadata, secretMD,
			handler.TypedEnqueueRequestsFromMapFunc(r.credentialsForSecret),
			predicate.TypedResourceVersionChangedPredicate[*metav1.PartialObjectMetadata]{},
			notOwnTargetWrite())).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(r)
}

// setupCluster registers the ClusterClearanceCredential controller.
func setupCluster(mgr ctrl.Manager, secretMetadata cache.Cache, opts Options) error {
	r := newClusterReconciler(mgr.GetClient(), mgr.GetAPIReader(), secretMetadata, mgr.GetEventRecorder(FieldOwner), opts)
	clusterCredentialMetrics.setReader(mgr.GetCache())
	secretMD := &metav1.PartialObjectMetadata{}
	secretMD.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return ctrl.NewControllerManagedBy(mgr).
		Named("clusterclearancecredential").
		For(&clearancev1alpha1.ClusterClearanceCredential{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		// Restores a deleted or edited target Secret (from the others, without a mint).
		Owns(&corev1.Secret{}, builder.WithPredicates(notOwnTokenWrite())).
		// A namespace created, labelled or unlabelled may change any credential's selection.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.allCredentials), builder.WithPredicates(namespaceSelectionChanges())).
		// A Secret of another credential going away frees the name in its namespace.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.credentialsForSecret(ctx, o.GetNamespace(), o.GetName())
		}), builder.WithPredicates(deletesOnly())).
		// Connection Secret changes in the cluster resource namespace, and
		// conflicting target Secrets changing or going away.
		WatchesRawSource(source.Kind(secretMetadata, secretMD,
			handler.TypedEnqueueRequestsFromMapFunc(func(ctx context.Context, s *metav1.PartialObjectMetadata) []reconcile.Request {
				return r.credentialsForSecret(ctx, s.Namespace, s.Name)
			}),
			predicate.TypedResourceVersionChangedPredicate[*metav1.PartialObjectMetadata]{},
			notOwnTargetWrite())).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, opts.MaxConcurrentReconciles/4)}).
		Complete(r)
}

// allCredentials lists every cluster credential; there are few.
func (r *ClusterClearanceCredentialReconciler) allCredentials(ctx context.Context, _ client.Object) []reconcile.Request {
	list := &clearancev1alpha1.ClusterClearanceCredentialList{}
	if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "listing ClusterClearanceCredentials")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
	}
	return reqs
}

// credentialsForSecret maps a Secret to the cluster credentials reading it
// as their connection Secret or naming it as their target.
func (r *ClusterClearanceCredentialReconciler) credentialsForSecret(ctx context.Context, namespace, name string) []reconcile.Request {
	list := &clearancev1alpha1.ClusterClearanceCredentialList{}
	if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "listing ClusterClearanceCredentials")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		spec := &list.Items[i].Spec
		if spec.SecretName == name || (namespace == r.opts.ClusterResourceNamespace && spec.ConnectionSecretRef.Name == name) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
		}
	}
	return reqs
}

// namespaceSelectionChanges passes namespace events that can change a
// selection: creation, deletion, a label change, the start of termination.
func namespaceSelectionChanges() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return true },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()) ||
				e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero()
		},
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// credentialsForSecret maps a Secret to the credentials reading it as their
// connection Secret or naming it as their target.
func (r *ClearanceCredentialReconciler) credentialsForSecret(_ context.Context, s *metav1.PartialObjectMetadata) []reconcile.Request {
	return r.requestsForSecret(types.NamespacedName{Namespace: s.Namespace, Name: s.Name})
}

func (r *ClearanceCredentialReconciler) requestsForSecret(secret types.NamespacedName) []reconcile.Request {
	creds := r.secretUsers.of(secret)
	reqs := make([]reconcile.Request, 0, len(creds))
	for _, c := range creds {
		reqs = append(reqs, reconcile.Request{NamespacedName: c})
	}
	return reqs
}

// notOwnTargetWrite drops create and update events of Secrets a credential
// controls: the Owns watch already brings their owner back, and a second,
// racing reconcile would only find the managed cache a step behind and pay a
// GET for it. Deletes still pass, so a credential waiting on a conflicting
// target that another credential owned notices when it goes away.
func notOwnTargetWrite() predicate.TypedPredicate[*metav1.PartialObjectMetadata] {
	controlled := func(o *metav1.PartialObjectMetadata) bool { return metav1.GetControllerOf(o) != nil }
	return predicate.TypedFuncs[*metav1.PartialObjectMetadata]{
		CreateFunc:  func(e event.TypedCreateEvent[*metav1.PartialObjectMetadata]) bool { return !controlled(e.Object) },
		UpdateFunc:  func(e event.TypedUpdateEvent[*metav1.PartialObjectMetadata]) bool { return !controlled(e.ObjectNew) },
		DeleteFunc:  func(event.TypedDeleteEvent[*metav1.PartialObjectMetadata]) bool { return true },
		GenericFunc: func(event.TypedGenericEvent[*metav1.PartialObjectMetadata]) bool { return true },
	}
}

// credentialController returns the controller reference of obj when a
// ClearanceCredential or a ClusterClearanceCredential (of any version of our
// group) controls it, else nil.
func credentialController(obj metav1.Object) *metav1.OwnerReference {
	ref := metav1.GetControllerOf(obj)
	if ref == nil || (ref.Kind != "ClearanceCredential" && ref.Kind != clusterKind) || !strings.HasPrefix(ref.APIVersion, clearancev1alpha1.GroupVersion.Group+"/") {
		return nil
	}
	return ref
}

// notOwnTokenWrite drops the create or update event of a target Secret that
// brings nothing but a new intact token: this controller's own write, which
// the reconcile that made it has already reported. Anything else passes: a
// delete, an edited or missing token, changed metadata with the same token.
func notOwnTokenWrite() predicate.Predicate {
	newToken := func(old, cur client.Object) bool {
		s, ok := cur.(*corev1.Secret)
		if !ok || credentialController(s) == nil || string(s.Data[dataTokenState]) != tokenStateIntact {
			return false
		}
		if old == nil {
			return true
		}
		prev, ok := old.(*corev1.Secret)
		return ok && prev.Annotations[annotationIssuedAt] != s.Annotations[annotationIssuedAt]
	}
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return !newToken(nil, e.Object) },
		UpdateFunc:  func(e event.UpdateEvent) bool { return !newToken(e.ObjectOld, e.ObjectNew) },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(event.GenericEvent) bool { return true },
	}
}

// deletesOnly passes delete events only.
func deletesOnly() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}
