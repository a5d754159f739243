package kubectlclearance

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/conncheck"
)

type checkOptions struct {
	*Options
	file     string
	secret   string
	key      string
	audience string
	encoding string
	timeout  time.Duration
	// The operator's egress flags, so a check reaches what the operator
	// would and nothing else.
	allowCIDRs string
	allowHTTP  bool
	caBundle   string
}

func newCheckCommand(o *Options) *cobra.Command {
	ck := &checkOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "check (--connection-file FILE | --secret NAME [--key KEY]) [--audience AUD] [--encoding form|json]",
		Short: "Mint one token from a connection file to check it, as the operator would",
		Long: "check parses a JSON Connection File, from a local file or from a connection Secret in the cluster, and\n" +
			"requests one token with the operator's own code. It prints the client id, key id, STS addresses and\n" +
			"endpoint, the token's expiry, decoded claims and short hash, or the classified error with a hint. It never\n" +
			"prints the token or the file's content. Exit status: 0 minted, 1 failed, 2 usage error.\n" +
			"With --secret the token request is made from this machine, not from the operator's pod.",
		Example: "  kubectl clearance check --connection-file ./connection.json\n" +
			"  kubectl clearance check --secret clearance-connection -n apps --encoding json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return ck.run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&ck.file, "connection-file", "", "Path of a JSON Connection File.")
	cmd.Flags().StringVar(&ck.secret, "secret", "", "Name of a connection Secret in the namespace.")
	cmd.Flags().StringVar(&ck.key, "key", clearancev1alpha1.DefaultConnectionSecretKey, "With --secret: the data key holding the connection file.")
	cmd.Flags().StringVar(&ck.audience, "audience", "", "Optional aud claim of the assertion (spec.audience).")
	cmd.Flags().StringVar(&ck.encoding, "encoding", "form", "Token request body encoding, form or json (spec.tokenRequestEncoding).")
	cmd.Flags().DurationVar(&ck.timeout, "timeout", 30*time.Second, "Overall timeout of the token request.")
	cmd.Flags().StringVar(&ck.allowCIDRs, "sts-allow-cidrs", "", "Comma-separated CIDRs that may be dialled although not public, as the operator's flag of that name.")
	cmd.Flags().BoolVar(&ck.allowHTTP, "sts-allow-http", false, "Accept plain http:// STS addresses, as the operator's flag of that name.")
	cmd.Flags().StringVar(&ck.caBundle, "sts-ca-bundle", "", "PEM file of CA certificates trusted for the STS instead of the system roots.")
	return cmd
}

func (ck *checkOptions) run(ctx context.Context) error {
	enc, err := conncheck.ParseEncoding(ck.encoding)
	if err != nil {
		return usageError(ck.Options, err)
	}
	switch {
	case (ck.file == "") == (ck.secret == ""):
		return usageError(ck.Options, fmt.Errorf("give exactly one of --connection-file and --secret"))
	case ck.timeout <= 0:
		return usageError(ck.Options, fmt.Errorf("--timeout must be positive"))
	}

	var data []byte
	if ck.file != "" {
		if data, err = conncheck.ReadFile(ck.file); err != nil {
			return fmt.Errorf("cannot read the connection file: %w", err)
		}
	} else {
		if data, err = ck.secretData(ctx); err != nil {
			return err
		}
		if len(data) > clearance.MaxConnectionFileSize {
			return fmt.Errorf("key %q of Secret %q holds %d bytes: more than a connection file can be", ck.key, ck.secret, len(data))
		}
	}
	egress, err := conncheck.EgressOptions(ck.allowCIDRs, ck.allowHTTP, ck.caBundle)
	if err != nil {
		return usageError(ck.Options, err)
	}
	code := conncheck.Run(ctx, data, conncheck.Options{Audience: ck.audience, Encoding: enc, Timeout: ck.timeout, Egress: egress},
		ck.Streams.Out, ck.Streams.ErrOut)
	if code != conncheck.ExitOK {
		return &ExitError{Code: code}
	}
	return nil
}

// secretData reads the connection file out of a Secret in the namespace.
func (ck *checkOptions) secretData(ctx context.Context) ([]byte, error) {
	c, err := ck.NewClient()
	if err != nil {
		return nil, err
	}
	ns, err := ck.namespace()
	if err != nil {
		return nil, err
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: ck.secret}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("secret %q not found in namespace %q", ck.secret, ns)
		}
		return nil, err
	}
	data, ok := secret.Data[ck.key]
	if !ok {
		// Key names only: the values are the credential itself.
		keys := make([]string, 0, len(secret.Data))
		for k := range secret.Data {
			keys = append(keys, k)
		}
		return nil, fmt.Errorf("secret %s/%s has no key %q (it has %q); name the key with --key", ns, ck.secret, ck.key, keys)
	}
	return data, nil
}

// usageError prints err and ends with the usage exit status, as mint does.
func usageError(o *Options, err error) error {
	_, _ = fmt.Fprintf(o.Streams.ErrOut, "error: %v\n", err)
	return &ExitError{Code: conncheck.ExitUsage}
}
