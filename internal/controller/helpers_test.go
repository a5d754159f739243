package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

func newNamespace(ctx context.Context) string {
	ns := "t-" + rand.String(8)
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	return ns
}

// newEmulator starts an STS emulator for one test, so faults injected there
// cannot touch other tests' credentials.
func newEmulator(opts ...clearancetest.Option) *clearancetest.Server {
	srv, err := clearancetest.NewServer(opts...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(srv.Close)
	return srv
}

func newConnectionFile(srv *clearancetest.Server, opts ...clearancetest.ConnectionFileOption) *clearancetest.ConnectionFile {
	cf, err := srv.NewConnectionFile(opts...)
	Expect(err).NotTo(HaveOccurred())
	return cf
}

func createConnectionSecret(ctx context.Context, ns, name string, data []byte) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Data:       map[string][]byte{clearancev1alpha1.DefaultConnectionSecretKey: data},
	}
	Expect(k8sClient.Create(ctx, s)).To(Succeed())
	return s
}

func createCredential(ctx context.Context, ns, name, source, target string, mutate ...func(*clearancev1alpha1.ClearanceCredential)) *clearancev1alpha1.ClearanceCredential {
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
	Expect(k8sClient.Create(ctx, c)).To(Succeed())
	return c
}

func getCredential(ctx context.Context, ns, name string) *clearancev1alpha1.ClearanceCredential {
	c := &clearancev1alpha1.ClearanceCredential{}
	Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, c)).To(Succeed())
	return c
}

func getSecret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s)
	return s, err
}

// condition returns the credential's condition of that type, or an empty one.
func condition(ctx context.Context, ns, name, condType string) metav1.Condition {
	c := getCredential(ctx, ns, name)
	if cond := meta.FindStatusCondition(c.Status.Conditions, condType); cond != nil {
		return *cond
	}
	return metav1.Condition{}
}

// haveCondition matches a condition's status and reason.
func haveCondition(status metav1.ConditionStatus, reason string) OmegaMatcher {
	return And(
		HaveField("Status", Equal(status)),
		HaveField("Reason", Equal(reason)),
	)
}

// eventuallyReady waits for Ready=True and returns the token in the target Secret.
func eventuallyReady(ctx context.Context, ns, name, target string) string {
	Eventually(func() metav1.Condition { return condition(ctx, ns, name, clearancev1alpha1.ConditionReady) }).
		WithTimeout(20 * time.Second).Should(HaveField("Status", metav1.ConditionTrue))
	var token string
	Eventually(func() error {
		s, err := getSecret(ctx, ns, target)
		if err != nil {
			return err
		}
		token = string(s.Data[clearancev1alpha1.SecretKeyToken])
		if token == "" {
			return fmt.Errorf("no token yet")
		}
		return nil
	}).WithTimeout(10 * time.Second).Should(Succeed())
	return token
}

// successes counts the tokens the emulator issued to a client.
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

// eventReasons lists the reasons of the events about a credential.
func eventReasons(ctx context.Context, ns, name string) []string {
	list := &eventsv1.EventList{}
	Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Regarding.Kind == "ClearanceCredential" {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

// expectNoSecretMaterial checks that nothing the operator publishes (status,
// events, logs) carries the token or any part of the connection file that is
// secret: the private key members, the APIKey, or the file itself.
func expectNoSecretMaterial(ctx context.Context, ns string, cf *clearancetest.ConnectionFile, tokens ...string) {
	GinkgoHelper()
	var secrets []string
	for _, t := range tokens {
		if t != "" {
			secrets = append(secrets, t)
		}
	}
	var file map[string]any
	Expect(json.Unmarshal(cf.Data, &file)).To(Succeed())
	if k, ok := file["APIKey"].(string); ok && k != "" {
		secrets = append(secrets, k)
	}
	if jwk, ok := file["ServicePrincipalKey"].(map[string]any); ok {
		for _, member := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if v, ok := jwk[member].(string); ok && len(v) > 16 {
				secrets = append(secrets, v[:16])
			}
		}
	}
	secrets = append(secrets, strings.TrimSpace(string(cf.Data))[:40])

	var published []string
	creds := &clearancev1alpha1.ClearanceCredentialList{}
	Expect(k8sClient.List(ctx, creds, client.InNamespace(ns))).To(Succeed())
	for _, c := range creds.Items {
		b, err := json.Marshal(c.Status)
		Expect(err).NotTo(HaveOccurred())
		published = append(published, string(b))
	}
	evs := &eventsv1.EventList{}
	Expect(k8sClient.List(ctx, evs, client.InNamespace(ns))).To(Succeed())
	for _, e := range evs.Items {
		published = append(published, e.Note, e.Reason)
	}
	published = append(published, logSink.String())
	for _, p := range published {
		for _, s := range secrets {
			Expect(strings.Contains(p, s)).To(BeFalse(), "secret material published")
		}
	}
}

// statusPatchCounter wraps the reconciler's client and counts the status
// patches it sends, per credential.
type statusPatchCounter struct {
	client.Client
	mu     sync.Mutex
	counts map[types.NamespacedName]int
}

func countStatusPatches(c client.Client) *statusPatchCounter {
	return &statusPatchCounter{Client: c, counts: map[types.NamespacedName]int{}}
}

func (c *statusPatchCounter) Status() client.SubResourceWriter {
	return countingStatusWriter{SubResourceWriter: c.Client.Status(), counter: c}
}

func (c *statusPatchCounter) of(ns, name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[types.NamespacedName{Namespace: ns, Name: name}]
}

type countingStatusWriter struct {
	client.SubResourceWriter
	counter *statusPatchCounter
}

func (w countingStatusWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	w.counter.mu.Lock()
	w.counter.counts[client.ObjectKeyFromObject(obj)]++
	w.counter.mu.Unlock()
	return w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}
