// Package kubectlclearance implements the kubectl-clearance plugin: `kubectl
// clearance status`, `renew` and `check` for ClearanceCredentials. It reads
// and shows the status, the target Secret and the events the operator
// writes, never a token, an assertion or any content of a connection file:
// a token is shown as its decoded claims and a short hash only.
//
// The commands work on a kind-neutral view of a credential (kinds.go): a
// cluster-scoped kind is added there, next to ClearanceCredential, without
// touching status, renew or the report.
package kubectlclearance

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// Scheme knows the core kinds and ClearanceCredential.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(clearancev1alpha1.AddToScheme(Scheme))
}

// Options are what every subcommand shares: the standard kubectl flags, the
// streams, and the client and clock (replaced in tests).
type Options struct {
	Streams     genericiooptions.IOStreams
	ConfigFlags *genericclioptions.ConfigFlags

	// NewClient returns the API client; by default one for ConfigFlags.
	NewClient func() (client.Client, error)
	// Now is the clock for relative times and refresh requests.
	Now func() time.Time
	// PollInterval is how often renew --wait looks again.
	PollInterval time.Duration
}

// NewOptions returns Options reading the kubeconfig like kubectl does.
func NewOptions(streams genericiooptions.IOStreams) *Options {
	o := &Options{
		Streams:      streams,
		ConfigFlags:  genericclioptions.NewConfigFlags(true),
		Now:          time.Now,
		PollInterval: 500 * time.Millisecond,
	}
	o.NewClient = func() (client.Client, error) {
		cfg, err := o.ConfigFlags.ToRESTConfig()
		if err != nil {
			return nil, err
		}
		return client.New(cfg, client.Options{Scheme: Scheme})
	}
	return o
}

// namespace is the --namespace flag, else the kubeconfig context's namespace.
func (o *Options) namespace() (string, error) {
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

// ExitError ends the command with Code after the command printed its own
// message (a failed check prints the error and hint itself).
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// NewCommand returns the kubectl-clearance root command.
func NewCommand(o *Options) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-clearance",
		Short: "Inspect, renew and check Genetec Clearance credentials managed by clearance-operator",
		Long: "kubectl clearance shows the state of ClearanceCredentials (ccred), asks the operator for an immediate\n" +
			"renewal and checks connection files. It never prints a token, an assertion or connection file content.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations: map[string]string{
			// kubectl shows "kubectl clearance" in the plugin's usage lines.
			cobra.CommandDisplayNameAnnotation: "kubectl clearance",
		},
	}
	// kubectl completes plugins through kubectl_complete-<name> scripts, not
	// a completion subcommand.
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetIn(o.Streams.In)
	root.SetOut(o.Streams.Out)
	root.SetErr(o.Streams.ErrOut)
	o.ConfigFlags.AddFlags(root.PersistentFlags())
	root.AddCommand(newStatusCommand(o), newRenewCommand(o), newCheckCommand(o))
	return root
}

// Execute runs the plugin with args and returns the process exit status.
func Execute(o *Options, args []string) int {
	cmd := NewCommand(o)
	cmd.SetArgs(args)
	err := cmd.Execute()
	var exit *ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.Code
	default:
		_, _ = fmt.Fprintf(o.Streams.ErrOut, "error: %v\n", err)
		return 1
	}
}
