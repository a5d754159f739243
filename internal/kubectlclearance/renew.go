package kubectlclearance

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/tokeninfo"
)

type renewOptions struct {
	*Options
	all           bool
	allNamespaces bool
	selector      string
	wait          bool
	timeout       time.Duration
}

func newRenewCommand(o *Options) *cobra.Command {
	r := &renewOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "renew (NAME... | -l SELECTOR | --all) [-A] [--wait]",
		Short: "Ask the operator to mint a new token now",
		Long: "renew sets the " + clearancev1alpha1.RefreshRequestedAtAnnotation + " annotation to the current time; the\n" +
			"operator mints a new token at once and records the request it answered on the target Secret. With --wait\n" +
			"the command returns once every new token is written, and fails when one is not written within --timeout.",
		Example: "  kubectl clearance renew my-credential --wait\n" +
			"  kubectl clearance renew -l team=video\n" +
			"  kubectl clearance renew --all -A",
		RunE: func(cmd *cobra.Command, args []string) error {
			return r.run(cmd.Context(), args)
		},
	}
	cmd.Flags().BoolVar(&r.all, "all", false, "Renew every credential of the namespace (of all namespaces with -A).")
	cmd.Flags().BoolVarP(&r.allNamespaces, "all-namespaces", "A", false, "With -l or --all: in all namespaces.")
	cmd.Flags().StringVarP(&r.selector, "selector", "l", "", "Label selector of the credentials to renew.")
	cmd.Flags().BoolVar(&r.wait, "wait", false, "Wait until the new tokens are written.")
	cmd.Flags().DurationVar(&r.timeout, "timeout", 2*time.Minute, "How long --wait waits.")
	return cmd
}

func (r *renewOptions) run(ctx context.Context, names []string) error {
	bySelection := r.all || r.selector != ""
	switch {
	case len(names) > 0 && bySelection:
		return fmt.Errorf("name credentials, or select them with -l or --all, not both")
	case len(names) == 0 && !bySelection:
		return fmt.Errorf("name the credentials to renew, or select them with -l or --all")
	case r.allNamespaces && !bySelection:
		return fmt.Errorf("-A needs -l or --all")
	case r.timeout <= 0:
		return fmt.Errorf("--timeout must be positive")
	}
	c, err := r.NewClient()
	if err != nil {
		return err
	}
	ns, err := r.namespace()
	if err != nil {
		return err
	}

	var creds []credential
	if bySelection {
		if r.allNamespaces {
			ns = ""
		}
		if creds, err = listCredentials(ctx, c, ns, r.selector); err != nil {
			return err
		}
		if len(creds) == 0 {
			return fmt.Errorf("no ClearanceCredential matched")
		}
	} else {
		for _, name := range names {
			cred, err := getCredential(ctx, c, ns, name)
			if err != nil {
				return err
			}
			creds = append(creds, cred)
		}
	}

	// One value for the whole run; it only has to differ from the previous
	// request, and nanoseconds make two runs in one second differ.
	requested := r.Now().UTC().Format(time.RFC3339Nano)
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{clearancev1alpha1.RefreshRequestedAtAnnotation: requested},
	}})
	if err != nil {
		return err
	}
	var waiting []credential
	for _, cred := range creds {
		if err := c.Patch(ctx, cred.Object, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("requesting the renewal of %s: %w", cred.ref(), err)
		}
		if cred.Suspend {
			_, _ = fmt.Fprintf(r.Streams.Out, "%s: renewal requested, but it is suspended: no token is minted until spec.suspend is false\n", cred.ref())
			continue
		}
		_, _ = fmt.Fprintf(r.Streams.Out, "%s: renewal requested\n", cred.ref())
		waiting = append(waiting, cred)
	}
	if !r.wait {
		return nil
	}
	return r.waitForTokens(ctx, c, waiting, requested)
}

// waitForTokens waits until each credential's target Secret records that it
// answers the refresh request, which the operator writes with the new token.
func (r *renewOptions) waitForTokens(ctx context.Context, c client.Client, creds []credential, requested string) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	tick := time.NewTicker(r.PollInterval)
	defer tick.Stop()
	pending := map[types.NamespacedName]string{} // key -> why it is not done yet
	refs := map[types.NamespacedName]string{}
	keys := make([]types.NamespacedName, 0, len(creds))
	for _, cred := range creds {
		k := client.ObjectKeyFromObject(cred.Object)
		keys = append(keys, k)
		pending[k], refs[k] = waitingForOperator, cred.ref()
	}
	for len(pending) > 0 {
		for _, k := range keys {
			if _, ok := pending[k]; !ok {
				continue
			}
			done, why, err := r.renewed(ctx, c, k, requested)
			switch {
			case err != nil:
				// A failed read (near the deadline the client's rate
				// limiter refuses to wait) says nothing new about the
				// credential: keep what the last good read said.
				if pending[k] == waitingForOperator {
					pending[k] = err.Error()
				}
			case done != "":
				delete(pending, k)
				_, _ = fmt.Fprintf(r.Streams.Out, "%s: new token written, %s\n", refs[k], done)
			default:
				pending[k] = why
			}
		}
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			for _, k := range keys {
				if why, ok := pending[k]; ok {
					_, _ = fmt.Fprintf(r.Streams.ErrOut, "%s: no new token after %s: %s\n", refs[k], r.timeout, why)
				}
			}
			return fmt.Errorf("timed out waiting for %d of %d renewals (kubectl clearance status NAME shows why)", len(pending), len(keys))
		case <-tick.C:
		}
	}
	return nil
}

// waitingForOperator is why a credential is not done while its conditions
// say nothing more.
const waitingForOperator = "waiting for the operator"

// renewed reports what the new token is ("expires at ..."), or why the
// credential is not done yet, or the error of a failed read.
func (r *renewOptions) renewed(ctx context.Context, c client.Client, k types.NamespacedName, requested string) (done, why string, err error) {
	name := k.Name
	if k.Namespace == "" { // a cluster credential
		name = clusterKindPrefixes[0] + name
	}
	cred, err := getCredential(ctx, c, k.Namespace, name)
	if err != nil {
		return "", "", err
	}
	why = waitingForOperator
	for _, t := range []string{clearancev1alpha1.ConditionStalled, clearancev1alpha1.ConditionDegraded, clearancev1alpha1.ConditionReady} {
		cond := meta.FindStatusCondition(cred.Status.Conditions, t)
		if cond != nil && (t == clearancev1alpha1.ConditionReady) == (cond.Status != "True") {
			why = fmt.Sprintf("%s=%s (%s): %s", cond.Type, cond.Status, cond.Reason, cond.Message)
			break
		}
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: cred.TargetNamespace, Name: cred.SecretName}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return "", why, nil // no token yet
		}
		return "", "", err
	}
	if secret.Annotations[clearancev1alpha1.RefreshRequestedAtAnnotation] != requested {
		return "", why, nil
	}
	return fmt.Sprintf("expires at %s, sha256 %s...", secret.Data[clearancev1alpha1.SecretKeyExpiresAt],
		tokeninfo.Fingerprint(secret.Data[clearancev1alpha1.SecretKeyToken])), "", nil
}
