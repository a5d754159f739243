package kubectlclearance

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// credential is what the commands need of one credential, whatever its kind:
// the namespaced ClearanceCredential, or the cluster-scoped
// ClusterClearanceCredential (named "cccred/NAME" or
// "clusterclearancecredential/NAME"; listed with -A), whose one token is in
// many namespaces: TargetNamespace is the first of them. Status, renew and
// the report work on this view only.
type credential struct {
	// Kind is the API kind, e.g. "ClearanceCredential".
	Kind string
	// Object is the API object, for patches and for finding its events.
	Object client.Object
	// TargetNamespace and SecretName locate the target Secret.
	TargetNamespace string
	SecretName      string
	Suspend         bool
	Status          clearancev1alpha1.ClearanceCredentialStatus
}

func fromClearanceCredential(c *clearancev1alpha1.ClearanceCredential) credential {
	return credential{
		Kind: "ClearanceCredential", Object: c,
		TargetNamespace: c.Namespace, SecretName: c.Spec.SecretName,
		Suspend: c.Spec.Suspend, Status: c.Status,
	}
}

// ref names the credential as kubectl does in its messages: "kind ns/name".
func (c credential) ref() string {
	name := c.Object.GetName()
	if ns := c.Object.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return strings.ToLower(c.Kind) + " " + name
}

// clusterKindPrefixes name the cluster kind in a NAME argument.
var clusterKindPrefixes = []string{"cccred/", "clusterclearancecredential/", "clusterclearancecredentials/"}

func fromClusterClearanceCredential(cc *clearancev1alpha1.ClusterClearanceCredential) credential {
	target := ""
	if len(cc.Spec.Namespaces) > 0 {
		target = slices.Min(cc.Spec.Namespaces)
	}
	return credential{
		Kind: "ClusterClearanceCredential", Object: cc,
		TargetNamespace: target, SecretName: cc.Spec.SecretName,
		Suspend: cc.Spec.Suspend, Status: cc.Status.ClearanceCredentialStatus,
	}
}

// getClusterCredential reads one cluster credential; without namespaces
// named in its spec, its target is in the first namespace its selector matches.
func getClusterCredential(ctx context.Context, c client.Client, name string) (credential, error) {
	cc := &clearancev1alpha1.ClusterClearanceCredential{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, cc); err != nil {
		return credential{}, err
	}
	cred := fromClusterClearanceCredential(cc)
	if cred.TargetNamespace == "" && cc.Spec.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(cc.Spec.NamespaceSelector)
		if err != nil {
			return cred, nil
		}
		list := &corev1.NamespaceList{}
		if err := c.List(ctx, list, client.MatchingLabelsSelector{Selector: sel}); err == nil && len(list.Items) > 0 {
			names := make([]string, 0, len(list.Items))
			for _, ns := range list.Items {
				names = append(names, ns.Name)
			}
			cred.TargetNamespace = slices.Min(names)
		}
	}
	return cred, nil
}

// getCredential reads one credential.
func getCredential(ctx context.Context, c client.Client, ns, name string) (credential, error) {
	for _, prefix := range clusterKindPrefixes {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			return getClusterCredential(ctx, c, rest)
		}
	}
	cred := &clearancev1alpha1.ClearanceCredential{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cred); err != nil {
		return credential{}, err
	}
	return fromClearanceCredential(cred), nil
}

// listCredentials lists the credentials of ns ("" for all) matching selector.
func listCredentials(ctx context.Context, c client.Client, ns, selector string) ([]credential, error) {
	opts := []client.ListOption{client.InNamespace(ns)}
	if selector != "" {
		sel, err := labels.Parse(selector)
		if err != nil {
			return nil, fmt.Errorf("invalid selector %q: %w", selector, err)
		}
		opts = append(opts, client.MatchingLabelsSelector{Selector: sel})
	}
	list := &clearancev1alpha1.ClearanceCredentialList{}
	if err := c.List(ctx, list, opts...); err != nil {
		return nil, err
	}
	out := make([]credential, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, fromClearanceCredential(&list.Items[i]))
	}
	if ns != "" {
		return out, nil
	}
	// All namespaces: the cluster credentials too.
	clusterList := &clearancev1alpha1.ClusterClearanceCredentialList{}
	if err := c.List(ctx, clusterList, opts[1:]...); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsForbidden(err) {
			return out, nil // an operator without the cluster kind, or a user who may not list it
		}
		return nil, err
	}
	for i := range clusterList.Items {
		out = append(out, fromClusterClearanceCredential(&clusterList.Items[i]))
	}
	return out, nil
}
