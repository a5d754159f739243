package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
	"github.com/clearance-operator/clearance-operator/internal/tokeninfo"
)

// renewalTimeAnnotation is where the controller records, on the token Secret
// and in the same write as the token, when it will renew. Reading it there
// (rather than status.renewalTime, patched a moment later) keeps the printed
// schedule consistent with the printed token.
const renewalTimeAnnotation = "clearance.dev/renewal-time"

// printer writes the plain, timestamped lines a person reads.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func newPrinter(w io.Writer) *printer { return &printer{w: w} }

// say prints one line prefixed with the local time of day.
func (p *printer) say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = fmt.Fprintf(p.w, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// detail prints an indented continuation line of the previous say.
func (p *printer) detail(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = fmt.Fprintf(p.w, "         %s\n", fmt.Sprintf(format, args...))
}

// watcher remembers what was last printed, so that only changes are printed.
type watcher struct {
	conditions map[string]string // condition type -> "status/reason"
	ready      bool
	stalled    bool
	hasToken   bool
	tokenHash  string
	renewals   int
	lastErr    string
	// cluster is the last printed state of the sample cluster credential.
	cluster      string
	clusterReady bool
}

// watch polls the sample credential and its Secret every second, printing
// changes, until interrupted (or, with RUN_LOCAL_ONCE, until Ready with a
// token). It returns the exit status.
func (s *session) watch(ctx context.Context) int {
	s.out.say("waiting for ClearanceCredential %s/%s to become Ready (up to %s)", sampleNamespace, sampleCredential, s.opts.timeout)
	deadline := time.NewTimer(s.opts.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()

	w := &watcher{conditions: map[string]string{}}
	shownCommands := false
	for {
		w.observe(ctx, s)
		if s.opts.cluster {
			w.observeCluster(ctx, s)
		}
		if w.ready && w.hasToken && (!s.opts.cluster || w.clusterReady) {
			if !shownCommands {
				shownCommands = true
				s.printCommands()
			}
			if s.opts.once {
				s.out.say("RUN_LOCAL_ONCE is set: the credential is Ready and its Secret holds a token; stopping")
				return 0
			}
		}
		if s.opts.once && w.stalled {
			s.out.say("error: ClearanceCredential %s/%s is Stalled (see above): it needs a change to make progress; giving up", sampleNamespace, sampleCredential)
			s.printManagerLogTail()
			return 1
		}

		select {
		case <-ctx.Done():
			s.out.say("interrupted; stopping")
			if s.opts.once {
				return 1
			}
			return 0
		case <-s.manager.Done():
			s.out.say("error: the manager exited unexpectedly (%v)", s.manager.ExitErr())
			s.printManagerLogTail()
			return 1
		case <-deadline.C:
			if w.ready && w.hasToken {
				continue
			}
			if s.opts.once {
				s.out.say("error: timed out after %s: ClearanceCredential %s/%s is not Ready with a token", s.opts.timeout, sampleNamespace, sampleCredential)
				s.printManagerLogTail()
				return 1
			}
			s.out.say("still not Ready after %s; the conditions above and the manager log (%s) say why", s.opts.timeout, filepath.Join(s.tmp, "manager.log"))
		case <-tick.C:
		}
	}
}

// observe reads the credential and its token Secret once and prints what changed.
func (w *watcher) observe(ctx context.Context, s *session) {
	cred := &clearancev1alpha1.ClearanceCredential{}
	if err := s.client.Get(ctx, types.NamespacedName{Namespace: sampleNamespace, Name: sampleCredential}, cred); err != nil {
		w.failed(ctx, s, "reading the ClearanceCredential", err)
		return
	}
	w.printConditions(s, cred)

	secret := &corev1.Secret{}
	err := s.client.Get(ctx, types.NamespacedName{Namespace: sampleNamespace, Name: cred.Spec.SecretName}, secret)
	if apierrors.IsNotFound(err) {
		w.lastErr, w.hasToken = "", false
		return
	}
	if err != nil {
		w.failed(ctx, s, "reading the token Secret", err)
		return
	}
	w.lastErr = ""
	token := secret.Data[clearancev1alpha1.SecretKeyToken]
	w.hasToken = len(token) > 0
	if !w.hasToken {
		return
	}
	hash := tokeninfo.Fingerprint(token)
	if hash == w.tokenHash {
		return
	}
	if w.tokenHash == "" {
		s.out.say("token written to Secret %s/%s", secret.Namespace, secret.Name)
	} else {
		w.renewals++
		s.out.say("token renewed in Secret %s/%s (renewal %d)", secret.Namespace, secret.Name, w.renewals)
	}
	w.tokenHash = hash
	lines := describeTokenSecret(secret, hash, time.Now())
	if w.renewals == 0 {
		// The extras come from the connection file and do not change on renewal.
		lines = append(lines, describeExtras(secret)...)
	}
	for _, line := range lines {
		s.out.detail("%s", line)
	}
}

// observeCluster reads the sample cluster credential and prints its state
// when it changes: Ready, and how many selected namespaces hold its token.
func (w *watcher) observeCluster(ctx context.Context, s *session) {
	cc := &clearancev1alpha1.ClusterClearanceCredential{}
	if err := s.client.Get(ctx, types.NamespacedName{Name: sampleClusterCredential}, cc); err != nil {
		w.failed(ctx, s, "reading the ClusterClearanceCredential", err)
		return
	}
	ready := meta.FindStatusCondition(cc.Status.Conditions, clearancev1alpha1.ConditionReady)
	if ready == nil {
		return
	}
	expires := ""
	if cc.Status.ExpiresAt != nil {
		expires = ", token expires at " + cc.Status.ExpiresAt.UTC().Format(time.RFC3339)
	}
	state := fmt.Sprintf("ClusterClearanceCredential %s: Ready=%s (%s); %d of %d selected namespaces hold its token in Secret %s%s",
		cc.Name, ready.Status, ready.Reason, cc.Status.WrittenNamespaces, cc.Status.SelectedNamespaces, cc.Spec.SecretName, expires)
	w.clusterReady = ready.Status == metav1.ConditionTrue && cc.Status.SelectedNamespaces > 0 &&
		cc.Status.WrittenNamespaces == cc.Status.SelectedNamespaces
	if state != w.cluster {
		w.cluster = state
		s.out.say("%s", state)
	}
}

// failed prints a read error once (not every second) while it persists.
func (w *watcher) failed(ctx context.Context, s *session, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	msg := what + ": " + err.Error()
	if msg != w.lastErr {
		w.lastErr = msg
		s.out.say("%s (retrying every %s)", msg, pollInterval)
	}
}

// printConditions prints Ready, Stalled and Degraded when their status or
// reason changes.
func (w *watcher) printConditions(s *session, cred *clearancev1alpha1.ClearanceCredential) {
	name := cred.Namespace + "/" + cred.Name
	for _, t := range []string{clearancev1alpha1.ConditionReady, clearancev1alpha1.ConditionStalled, clearancev1alpha1.ConditionDegraded} {
		c := meta.FindStatusCondition(cred.Status.Conditions, t)
		key := ""
		if c != nil {
			key = string(c.Status) + "/" + c.Reason
		}
		prev := w.conditions[t]
		if key == prev {
			continue
		}
		w.conditions[t] = key
		isTrue := c != nil && c.Status == metav1.ConditionTrue
		switch t {
		case clearancev1alpha1.ConditionReady:
			w.ready = isTrue
			switch {
			case isTrue:
				s.out.say("ClearanceCredential %s is Ready (%s): %s", name, c.Reason, c.Message)
			case c != nil:
				s.out.say("ClearanceCredential %s is not Ready (%s): %s", name, c.Reason, c.Message)
			}
		default:
			if t == clearancev1alpha1.ConditionStalled {
				w.stalled = isTrue
			}
			switch {
			case isTrue:
				s.out.say("ClearanceCredential %s is %s (%s): %s", name, t, c.Reason, c.Message)
			case strings.HasPrefix(prev, string(metav1.ConditionTrue)+"/"):
				s.out.say("ClearanceCredential %s is no longer %s", name, t)
			}
		}
	}
}

// describeTokenSecret summarises the token Secret without its token: expiry,
// schedule, decoded claims, a short fingerprint and the non-secret extras.
func describeTokenSecret(secret *corev1.Secret, hash string, now time.Time) []string {
	var lines []string
	if t, err := time.Parse(time.RFC3339, string(secret.Data[clearancev1alpha1.SecretKeyExpiresAt])); err == nil {
		lines = append(lines, fmt.Sprintf("expires at %s (in %s)", t.UTC().Format(time.RFC3339), t.Sub(now).Round(time.Second)))
	}
	if t, err := time.Parse(time.RFC3339, secret.Annotations[renewalTimeAnnotation]); err == nil {
		lines = append(lines, fmt.Sprintf("next renewal at %s (in %s)", t.UTC().Format(time.RFC3339), t.Sub(now).Round(time.Second)))
	}
	token := secret.Data[clearancev1alpha1.SecretKeyToken]
	if claims := tokeninfo.Claims(string(token)); len(claims) > 0 {
		lines = append(lines, "claims (decoded, not verified): "+tokeninfo.Join(claims, "=", " "))
	}
	lines = append(lines, fmt.Sprintf("token: %d bytes, sha256 %s... (the token itself is not printed)", len(token), hash))

	return lines
}

// describeExtras lists the token Secret's other data keys: the values of the
// documented non-secret ones (token type, tenant, client id), the names of
// the service address keys, and only the size of anything else.
func describeExtras(secret *corev1.Secret) []string {
	var keys []string
	for k := range secret.Data {
		if k != clearancev1alpha1.SecretKeyToken && k != clearancev1alpha1.SecretKeyExpiresAt {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var values, addresses []string
	for _, k := range keys {
		switch {
		case k == clearancev1alpha1.SecretKeyTokenType || k == clearancev1alpha1.SecretKeyTenantID || k == clearancev1alpha1.SecretKeyClientID:
			values = append(values, k+"="+string(secret.Data[k]))
		case strings.HasSuffix(k, "Address"):
			addresses = append(addresses, k)
		default:
			values = append(values, fmt.Sprintf("%s=<%d bytes>", k, len(secret.Data[k])))
		}
	}
	var lines []string
	if len(values) > 0 {
		lines = append(lines, "other keys: "+strings.Join(values, " "))
	}
	if len(addresses) > 0 {
		lines = append(lines, "service addresses from the connection file: "+strings.Join(addresses, ", "))
	}
	return lines
}

// printCommands prints what to try while the session runs.
func (s *session) printCommands() {
	kubectl := "kubectl"
	if abs, err := filepath.Abs(filepath.Join(s.assets, "kubectl")); err == nil {
		if _, err := os.Stat(abs); err == nil {
			kubectl = abs
		}
	}
	s.out.say("try, in another terminal:")
	s.out.detail("KUBECONFIG=%s %s get ccred -A", s.kubeconfig, kubectl)
	s.out.detail("KUBECONFIG=%s %s describe ccred -n %s %s", s.kubeconfig, kubectl, sampleNamespace, sampleCredential)
	// The kubectl plugin, built by `make plugin`; bin/ is where it lands.
	s.out.detail("make plugin && KUBECONFIG=%s %s status -n %s %s", s.kubeconfig,
		filepath.Join(testutil.RepoRoot(), "bin", "kubectl-clearance"), sampleNamespace, sampleCredential)
	if s.opts.cluster {
		s.out.detail("KUBECONFIG=%s %s get cccred", s.kubeconfig, kubectl)
		s.out.detail("KUBECONFIG=%s %s get secret -A --field-selector metadata.name=%s", s.kubeconfig, kubectl, sampleClusterSecret)
	}
	if s.connFile != "" {
		s.out.detail("go -C %s run . mint --connection-file %s", testutil.RepoRoot(), s.connFile)
	}
	if !s.opts.once {
		s.out.say("renewals are printed here as they happen; Ctrl-C stops everything and removes %s", s.tmp)
	}
}
