package kubectlclearance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/tokeninfo"
)

type statusOptions struct {
	*Options
	allNamespaces bool
	selector      string
	output        string
}

func newStatusCommand(o *Options) *cobra.Command {
	s := &statusOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show a ClearanceCredential's conditions, token schedule, target Secret and events",
		Long: "With NAME: the credential's conditions, token expiry and next renewal, STS endpoint and key id, the last\n" +
			"failure and the next attempt, the target Secret's keys, the token's decoded claims and short hash (never the\n" +
			"token), and recent events. Without NAME (or with -A or -l): one line per credential.",
		Example: "  kubectl clearance status my-credential -n apps\n" +
			"  kubectl clearance status -A\n" +
			"  kubectl clearance status -l team=video -o yaml",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.run(cmd.Context(), args)
		},
	}
	cmd.Flags().BoolVarP(&s.allNamespaces, "all-namespaces", "A", false, "List the credentials of all namespaces.")
	cmd.Flags().StringVarP(&s.selector, "selector", "l", "", "Label selector of the credentials to list.")
	cmd.Flags().StringVarP(&s.output, "output", "o", "", "Output format: json or yaml (default: text).")
	return cmd
}

func (s *statusOptions) run(ctx context.Context, args []string) error {
	switch s.output {
	case "", "json", "yaml":
	default:
		return fmt.Errorf("--output must be json or yaml, not %q", s.output)
	}
	if len(args) == 1 && (s.allNamespaces || s.selector != "") {
		return fmt.Errorf("a NAME cannot be combined with -A or -l")
	}
	c, err := s.NewClient()
	if err != nil {
		return err
	}
	ns, err := s.namespace()
	if err != nil {
		return err
	}
	now := s.Now()
	if len(args) == 1 {
		cred, err := getCredential(ctx, c, ns, args[0])
		if err != nil {
			return err
		}
		r := credentialReport(cred, now)
		describe(ctx, c, cred, r, now)
		if s.output != "" {
			return s.encode(r)
		}
		printReport(s.Streams.Out, r)
		return nil
	}

	if s.allNamespaces {
		ns = ""
	}
	creds, err := listCredentials(ctx, c, ns, s.selector)
	if err != nil {
		return err
	}
	reports := make([]*Report, 0, len(creds))
	for i := range creds {
		reports = append(reports, credentialReport(creds[i], now))
	}
	if s.output != "" {
		return s.encode(map[string]any{"items": reports})
	}
	if len(reports) == 0 {
		where := "namespace " + ns
		if ns == "" {
			where = "any namespace"
		}
		_, _ = fmt.Fprintf(s.Streams.ErrOut, "No ClearanceCredentials found in %s.\n", where)
		return nil
	}
	printTable(s.Streams.Out, reports, s.allNamespaces)
	return nil
}

func (s *statusOptions) encode(v any) error {
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	if s.output == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
	} else {
		b = append(b, '\n')
	}
	_, err = s.Streams.Out.Write(b)
	return err
}

// relative says how far t is from now: "in 39m" or "3m12s ago".
func relative(t, now time.Time) string {
	d := t.Sub(now)
	if d >= 0 {
		return "in " + duration.HumanDuration(d)
	}
	return duration.HumanDuration(-d) + " ago"
}

func formatInstant(i *Instant) string {
	if i == nil {
		return "<none>"
	}
	return fmt.Sprintf("%s (%s)", i.Time.Format(time.RFC3339), i.Relative)
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// printTable prints one line per credential.
func printTable(out io.Writer, reports []*Report, withNamespace bool) {
	w := printers.GetNewTabWriter(out)
	defer func() { _ = w.Flush() }()
	header := "NAME\tREADY\tREASON\tSECRET\tEXPIRES\tNEXT RENEWAL\tFAILURES"
	if withNamespace {
		header = "NAMESPACE\t" + header
	}
	_, _ = fmt.Fprintln(w, header)
	for _, r := range reports {
		ready, reason := "Unknown", ""
		if c := readyCondition(r); c != nil {
			ready, reason = string(c.Status), c.Reason
		}
		expires, renewal := "<none>", "<none>"
		if r.ExpiresAt != nil {
			expires = r.ExpiresAt.Relative
		}
		switch {
		case r.RenewalTime != nil:
			renewal = r.RenewalTime.Relative
		case r.NextAttempt != nil:
			renewal = "retry " + r.NextAttempt.Relative
		case r.Suspended:
			renewal = "suspended"
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%d", r.Name, ready, orNone(reason), r.SecretName, expires, renewal, r.FailedAttempts)
		if withNamespace {
			row = r.Namespace + "\t" + row
		}
		_, _ = fmt.Fprintln(w, row)
	}
}

// printReport prints one credential for a person.
func printReport(out io.Writer, r *Report) {
	p := func(format string, args ...any) { _, _ = fmt.Fprintf(out, format+"\n", args...) }
	p("Name:          %s", r.Name)
	p("Namespace:     %s", r.Namespace)
	p("Kind:          %s", r.Kind)
	p("Target Secret: %s", r.SecretName)
	if r.Suspended {
		p("Suspended:     true (spec.suspend: no token is minted)")
	}

	p("Conditions:")
	if len(r.Conditions) == 0 {
		p("  <none> (the operator has not reconciled this credential yet)")
	} else {
		w := printers.GetNewTabWriter(out)
		_, _ = fmt.Fprintln(w, "  TYPE\tSTATUS\tREASON\tSINCE\tMESSAGE")
		for _, c := range r.Conditions {
			_, _ = fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, conditionAge(c), c.Message)
		}
		_ = w.Flush()
	}

	p("Token:")
	p("  Expires:       %s", formatInstant(r.ExpiresAt))
	p("  Next renewal:  %s", formatInstant(r.RenewalTime))
	p("  STS endpoint:  %s", orNone(r.TokenEndpoint))
	p("  Key id:        %s", orNone(r.KeyID))
	if r.FailedAttempts > 0 || r.LastFailureTime != nil {
		p("Failures:")
		p("  Failed attempts: %d", r.FailedAttempts)
		p("  Last failure:    %s", formatInstant(r.LastFailureTime))
		p("  Next attempt:    %s", formatInstant(r.NextAttempt))
	}

	if t := r.Target; t != nil {
		p("Target Secret %s:", r.SecretName)
		if t.Error != "" {
			p("  cannot read it: %s", t.Error)
		} else {
			p("  Keys:          %s", strings.Join(t.Keys, ", "))
			for _, k := range []string{clearancev1alpha1.SecretKeyExpiresAt, clearancev1alpha1.SecretKeyTokenType, clearancev1alpha1.SecretKeyClientID, clearancev1alpha1.SecretKeyTenantID} {
				if v, ok := t.Values[k]; ok {
					p("  %-14s %s", k+":", v)
				}
			}
			if t.TokenBytes > 0 {
				p("  Token:         %d bytes, sha256 %s... (not printed)", t.TokenBytes, t.TokenSHA256)
			} else {
				p("  Token:         <none>")
			}
			if len(t.Claims) > 0 {
				p("  Claims (decoded, not verified):")
				p("    %s", tokeninfo.Join(t.Claims, ": ", "\n    "))
			}
			if t.RefreshRequestedAt != "" {
				p("  Answers refresh request: %s", t.RefreshRequestedAt)
			}
		}
	}

	if r.Events != nil {
		p("Events:")
		if len(r.Events) == 0 {
			p("  <none>")
			return
		}
		w := printers.GetNewTabWriter(out)
		_, _ = fmt.Fprintln(w, "  TYPE\tREASON\tAGE\tFROM\tMESSAGE")
		for _, e := range r.Events {
			age := e.Age
			if e.Count > 1 {
				age = fmt.Sprintf("%s (x%d)", age, e.Count)
			}
			_, _ = fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, age, e.Reporter, e.Message)
		}
		_ = w.Flush()
	}
}

func conditionAge(c metav1.Condition) string {
	if c.LastTransitionTime.IsZero() {
		return "<unknown>"
	}
	return c.LastTransitionTime.UTC().Format(time.RFC3339)
}
