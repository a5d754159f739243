package kubectlclearance

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// credential is what the commands need of one credential, whatever its kind.
// Today that is the namespaced ClearanceCredential. A cluster-scoped kind
// adds a from<Kind> function filling TargetNamespace from its spec, and a
// branch in getCredential and listCredentials; status, renew and the report
// work on this view only.
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

// getCredential reads one credential.
func getCredential(ctx context.Context, c client.Client, ns, name string) (credential, error) {
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
	return out, nil
}
