package faults

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// newNamespace creates a namespace on the apiserver behind cl. envtest runs no
// namespace controller, so the namespace's credentials are deleted when the
// spec ends: no manager started later keeps reconciling them.
func newNamespace(ctx context.Context, cl client.Client) string {
	GinkgoHelper()
	ns := "f-" + rand.String(8)
	Expect(cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	DeferCleanup(func(ctx context.Context) {
		_ = cl.DeleteAllOf(ctx, &clearancev1alpha1.ClearanceCredential{}, client.InNamespace(ns))
	})
	return ns
}

// newEmulator starts an STS emulator for one spec: faults injected there touch
// nothing else.
func newEmulator(opts ...clearancetest.Option) *clearancetest.Server {
	GinkgoHelper()
	srv, err := clearancetest.NewServer(opts...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(srv.Close)
	return srv
}

func newConnectionFile(srv *clearancetest.Server, opts ...clearancetest.ConnectionFileOption) *clearancetest.ConnectionFile {
	GinkgoHelper()
	cf, err := srv.NewConnectionFile(opts...)
	Expect(err).NotTo(HaveOccurred())
	return cf
}

func createConnectionSecret(ctx context.Context, cl client.Client, ns, name string, data []byte) *corev1.Secret {
	GinkgoHelper()
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Data:       map[string][]byte{clearancev1alpha1.DefaultConnectionSecretKey: data},
	}
	Expect(cl.Create(ctx, s)).To(Succeed())
	return s
}

// newCredential builds a credential; createCredential creates it for the
// in-process manager (with its label).
func newCredential(ns, name, source, target string, mutate ...func(*clearancev1alpha1.ClearanceCredential)) *clearancev1alpha1.ClearanceCredential {
	c := &clearancev1alpha1.ClearanceCredential{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: clearancev1alpha1.ClearanceCredentialSpec{
			ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: source},
			SecretName:          target,
		},
	}
	for _, m := range mutate {
		m(c)
	}
	return c
}

func createCredential(ctx context.Context, ns, name, source, target string, mutate ...func(*clearancev1alpha1.ClearanceCredential)) *clearancev1alpha1.ClearanceCredential {
	GinkgoHelper()
	c := newCredential(ns, name, source, target, mutate...)
	c.Labels = map[string]string{inProcLabel: inProcValue}
	Expect(k8sClient.Create(ctx, c)).To(Succeed())
	return c
}

func withRenewBefore(d time.Duration) func(*clearancev1alpha1.ClearanceCredential) {
	return func(c *clearancev1alpha1.ClearanceCredential) { c.Spec.RenewBefore = &metav1.Duration{Duration: d} }
}

func getCredential(ctx context.Context, cl client.Client, ns, name string) *clearancev1alpha1.ClearanceCredential {
	GinkgoHelper()
	c := &clearancev1alpha1.ClearanceCredential{}
	Expect(cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, c)).To(Succeed())
	return c
}

func getSecret(ctx context.Context, cl client.Client, ns, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s)
	return s, err
}

// tokenIn returns the token stored in a target Secret ("" when it is missing).
func tokenIn(ctx context.Context, cl client.Client, ns, name string) string {
	s, err := getSecret(ctx, cl, ns, name)
	if err != nil {
		return ""
	}
	return string(s.Data[clearancev1alpha1.SecretKeyToken])
}

// conditionOf returns the credential's condition of that type, or an empty one.
func conditionOf(ctx context.Context, cl client.Client, ns, name, condType string) metav1.Condition {
	c := &clearancev1alpha1.ClearanceCredential{}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, c); err != nil {
		return metav1.Condition{Message: "get failed: " + err.Error()}
	}
	if cond := meta.FindStatusCondition(c.Status.Conditions, condType); cond != nil {
		return *cond
	}
	return metav1.Condition{}
}

func condition(ctx context.Context, ns, name, condType string) metav1.Condition {
	return conditionOf(ctx, k8sClient, ns, name, condType)
}

// haveCondition matches a condition's status and reason.
func haveCondition(status metav1.ConditionStatus, reason string) OmegaMatcher {
	return And(HaveField("Status", Equal(status)), HaveField("Reason", Equal(reason)))
}

// eventuallyCondition waits until the credential's condition matches.
func eventuallyCondition(ctx context.Context, cl client.Client, ns, name, condType string, timeout time.Duration, m OmegaMatcher) metav1.Condition {
	GinkgoHelper()
	var got metav1.Condition
	Eventually(func() metav1.Condition {
		got = conditionOf(ctx, cl, ns, name, condType)
		return got
	}).WithTimeout(timeout).WithPolling(100*time.Millisecond).Should(m, "%s/%s condition %s", ns, name, condType)
	return got
}

// eventuallyReady waits for Ready=True and a token in the target Secret, and returns the token.
func eventuallyReady(ctx context.Context, cl client.Client, ns, name, target string, timeout time.Duration) string {
	GinkgoHelper()
	eventuallyCondition(ctx, cl, ns, name, clearancev1alpha1.ConditionReady, timeout, HaveField("Status", metav1.ConditionTrue))
	var token string
	Eventually(func() string {
		token = tokenIn(ctx, cl, ns, target)
		return token
	}).WithTimeout(10 * time.Second).ShouldNot(BeEmpty())
	return token
}

// successes counts the tokens the emulator issued to a client (mutated
// responses are faults, not successes).
func successes(srv *clearancetest.Server, clientID string) int64 {
	return srv.Stats().Client(clientID, clearancetest.OutcomeSuccess)
}

// requests counts all token requests of a client, whatever their outcome.
func requests(srv *clearancetest.Server, clientID string) int64 {
	var n int64
	for _, v := range srv.Stats().Clients[clientID] {
		n += v
	}
	return n
}

// credentialEvents lists the events about a credential.
func credentialEvents(ctx context.Context, cl client.Client, ns, name string) []eventsv1.Event {
	GinkgoHelper()
	list := &eventsv1.EventList{}
	Expect(cl.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	var events []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Regarding.Kind == "ClearanceCredential" {
			events = append(events, e)
		}
	}
	return events
}

// eventReasons lists the reasons of the events about a credential.
func eventReasons(ctx context.Context, cl client.Client, ns, name string) []string {
	GinkgoHelper()
	var reasons []string
	for _, e := range credentialEvents(ctx, cl, ns, name) {
		reasons = append(reasons, e.Reason)
	}
	return reasons
}

// reconciles counts the reconciles of credentials in ns that a log shows
// (controller-runtime logs "Reconciling" for each at V(5)).
func reconciles(logs, ns string) int {
	n := 0
	needle := `"namespace": "` + ns + `"`
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "\tReconciling\t") && strings.Contains(line, needle) {
			n++
		}
	}
	return n
}

// expectNoPanic checks a log for recovered or fatal panics.
func expectNoPanic(logs string) {
	GinkgoHelper()
	Expect(logs).NotTo(ContainSubstring("Observed a panic"))
	Expect(logs).NotTo(ContainSubstring("panic:"))
}

// bodyDumpLine matches the log lines in which client-go's REST client dumps a
// request or response body (it does so at V(8) through the logger that
// controller-runtime puts into the reconcile context), in the console and in
// the JSON encoding.
var bodyDumpLine = regexp.MustCompile(`\t(Request|Response) Body\t|"msg":"(Request|Response) Body"`)

// splitBodyDumps separates client-go's body dumps from the rest of a log.
func splitBodyDumps(logs string) (rest, dumps string) {
	var r, d strings.Builder
	for _, line := range strings.Split(logs, "\n") {
		if bodyDumpLine.MatchString(line) {
			d.WriteString(line + "\n")
		} else {
			r.WriteString(line + "\n")
		}
	}
	return r.String(), d.String()
}

// checkedNeedles collects the secrets of every expectNoSecretMaterial call,
// so a final spec can search whole logs for all of them.
var checkedNeedles []string

// expectNoSecretInBodyDumps is the part of the secrecy check that the
// per-case checks leave out: the request and response bodies client-go logs
// at the highest verbosity, searched for every secret checked so far.
func expectNoSecretInBodyDumps(logs string) {
	GinkgoHelper()
	_, dumps := splitBodyDumps(logs)
	found := testutil.FindSecretMaterial(map[string]string{"request/response bodies in the logs": dumps}, checkedNeedles)
	if len(found) > 5 {
		found = append(found[:5], fmt.Sprintf("... and %d more", len(found)-5))
	}
	Expect(found).To(BeEmpty(), "the manager logs Secret bodies (connection file, token) at the highest verbosity")
}

// expectNoSecretMaterial is the secrecy check every case ends with. It looks
// at everything the operator publishes about namespace ns: the status of each
// credential, every Event, the metadata (labels, annotations) of every
// Secret, the given logs, and the label values of every metric in this
// process's registry. It fails when any of them holds a token (those stored
// in the namespace's managed Secrets and the extra ones given), anything
// shaped like a JWT (an assertion or a token), the APIKey or a private-key
// member of one of the connection files, or the start of a file, verbatim,
// base64-encoded or inside a hex dump.
func expectNoSecretMaterial(ctx context.Context, cl client.Client, ns, logs string, files [][]byte, tokens ...string) {
	GinkgoHelper()
	var needles []string
	secrets := &corev1.SecretList{}
	Expect(cl.List(ctx, secrets, client.InNamespace(ns))).To(Succeed())
	for _, s := range secrets.Items {
		if s.Labels[clearancev1alpha1.ManagedByLabel] == clearancev1alpha1.ManagedByValue {
			tokens = append(tokens, string(s.Data[clearancev1alpha1.SecretKeyToken]))
		}
	}
	for _, f := range files {
		needles = append(needles, testutil.SecretMaterial(f)...)
	}
	needles = append(needles, testutil.SecretMaterial(nil, tokens...)...)
	checkedNeedles = append(checkedNeedles, needles...)

	// client-go's body dumps are left to expectNoSecretInBodyDumps, which
	// one spec per container runs, so that a leak through them fails there,
	// clearly named, rather than in every case.
	logs, _ = splitBodyDumps(logs)
	sources := map[string]string{"logs": logs}
	creds := &clearancev1alpha1.ClearanceCredentialList{}
	Expect(cl.List(ctx, creds, client.InNamespace(ns))).To(Succeed())
	for _, c := range creds.Items {
		sources["status of "+c.Name] = fmt.Sprintf("%+v", c.Status)
	}
	events := &eventsv1.EventList{}
	Expect(cl.List(ctx, events, client.InNamespace(ns))).To(Succeed())
	for _, e := range events.Items {
		sources["event "+e.Name] = e.Reason + " " + e.Note + " " + e.Action
	}
	for _, s := range secrets.Items {
		sources["metadata of Secret "+s.Name] = fmt.Sprintf("%v %v", s.Labels, s.Annotations)
	}
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	var labelValues []string
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labelValues = append(labelValues, l.GetValue())
			}
		}
	}
	sources["metric labels"] = strings.Join(labelValues, "\n")
	Expect(testutil.FindSecretMaterial(sources, needles)).To(BeEmpty(), "secret material published")
}

// secretWatch polls a target Secret and records what a pod reading it would
// have seen: every distinct token, and every moment the Secret held no usable
// token (missing, emptied, or past its expiresAt).
type secretWatch struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	tokens     []string
	firstSeen  []time.Time // when each of tokens was first observed
	violations []string
	seen       int
}

func watchSecret(cl client.Client, ns, name string) *secretWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &secretWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
			s, err := getSecret(gctx, cl, ns, name)
			gcancel()
			now := time.Now()
			w.mu.Lock()
			switch {
			case ctx.Err() != nil:
			case apierrors.IsNotFound(err):
				w.violations = append(w.violations, now.Format(time.RFC3339Nano)+": Secret missing")
			case err != nil:
				// The apiserver is unreachable: nothing to observe.
			default:
				w.seen++
				token := string(s.Data[clearancev1alpha1.SecretKeyToken])
				exp, perr := time.Parse(time.RFC3339, string(s.Data[clearancev1alpha1.SecretKeyExpiresAt]))
				switch {
				case token == "":
					w.violations = append(w.violations, now.Format(time.RFC3339Nano)+": no token")
				case perr != nil:
					w.violations = append(w.violations, now.Format(time.RFC3339Nano)+": unparsable expiresAt")
				case !now.Before(exp):
					w.violations = append(w.violations, fmt.Sprintf("%s: token expired at %s", now.Format(time.RFC3339Nano), exp.Format(time.RFC3339)))
				}
				if token != "" && (len(w.tokens) == 0 || w.tokens[len(w.tokens)-1] != token) {
					w.tokens = append(w.tokens, token)
					w.firstSeen = append(w.firstSeen, now)
				}
			}
			w.mu.Unlock()
		}
	}()
	DeferCleanup(w.stop)
	return w
}

// waitForTokens waits until the watch has seen at least n distinct tokens
// (a change seen by a direct read may not have been polled yet).
func (w *secretWatch) waitForTokens(n int) {
	GinkgoHelper()
	Eventually(func() int {
		tokens, _, _ := w.result()
		return len(tokens)
	}).WithTimeout(5*time.Second).Should(BeNumerically(">=", n), "tokens seen by the watch")
}

// stop ends the polling (idempotent).
func (w *secretWatch) stop() {
	w.cancel()
	<-w.done
}

// tokensSeenBefore returns the distinct tokens first observed before t, in
// order: what a pod could have read up to that moment.
func (w *secretWatch) tokensSeenBefore(t time.Time) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var tokens []string
	for i, token := range w.tokens {
		if w.firstSeen[i].Before(t) {
			tokens = append(tokens, token)
		}
	}
	return tokens
}

// result returns the distinct tokens seen in order, the violations, and how
// many observations were made.
func (w *secretWatch) result() (tokens, violations []string, seen int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.tokens...), append([]string(nil), w.violations...), w.seen
}
