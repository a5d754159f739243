//go:build faults

package faults

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// hungSTS accepts TCP connections on loopback and never answers. It counts
// the connections and the most that were open at once.
type hungSTS struct {
	ln                net.Listener
	accepted, open    atomic.Int32
	mu                sync.Mutex
	maxOpen           int32
	conns             []net.Conn
	connectionsClosed sync.WaitGroup
}

func newHungSTS() *hungSTS {
	GinkgoHelper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	h := &hungSTS{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.accepted.Add(1)
			open := h.open.Add(1)
			h.mu.Lock()
			h.maxOpen = max(h.maxOpen, open)
			h.conns = append(h.conns, c)
			h.mu.Unlock()
			h.connectionsClosed.Add(1)
			go func() {
				defer h.connectionsClosed.Done()
				// Read until the client gives up; never write.
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						h.open.Add(-1)
						return
					}
				}
			}()
		}
	}()
	DeferCleanup(h.close)
	return h
}

func (h *hungSTS) url() string { return "http://" + h.ln.Addr().String() }

func (h *hungSTS) mostOpen() int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.maxOpen
}

func (h *hungSTS) close() {
	_ = h.ln.Close()
	h.mu.Lock()
	for _, c := range h.conns {
		_ = c.Close()
	}
	h.mu.Unlock()
	h.connectionsClosed.Wait()
}

// connectionSecretFor creates a connection Secret whose file lists addrs as
// its STS addresses, signed with a key srv knows.
func connectionSecretFor(ctx context.Context, ns, name string, srv *clearancetest.Server, addrs ...string) *clearancetest.ConnectionFile {
	GinkgoHelper()
	cf := newConnectionFile(srv, clearancetest.WithSTSAddresses(addrs...))
	createConnectionSecret(ctx, k8sClient, ns, name, cf.Data)
	return cf
}

var _ = Describe("Tenant isolation (manager processes)", Ordered, func() {
	var kubeconfig string
	BeforeAll(func() { kubeconfig = writeKubeconfig(cfg) })

	It("32 credentials of a namespace whose STS never answers do not delay another namespace's renewals (3 minutes)", func(ctx context.Context) {
		const (
			hungCredentials = 32
			healthy         = 4
			tokenTTL        = 15 * time.Second
			observe         = 3 * time.Minute
			// The manager's default: a quarter of its 16 workers.
			mintsPerNamespace = 4
		)
		nsA, nsB := newNamespace(ctx, k8sClient), newNamespace(ctx, k8sClient)
		hung := newHungSTS()
		srv := newEmulator(clearancetest.WithTokenTTL(tokenTTL))
		var addrs []string
		for i := range 20 {
			addrs = append(addrs, fmt.Sprintf("%s/connect%d", hung.url(), i))
		}
		connectionSecretFor(ctx, nsA, "conn", srv, addrs...)
		cfB := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, nsB, "conn", cfB.Data)
		proc := startManagerProcess(ctx, kubeconfig, nsA+","+nsB, nil, "--max-concurrent-reconciles=16")

		By("namespace A: credentials whose every STS address hangs")
		startA := time.Now()
		for i := range hungCredentials {
			createProcessCredential(ctx, k8sClient, nsA, "hung-"+strconv.Itoa(i), "conn", "token-"+strconv.Itoa(i))
		}
		Eventually(hung.accepted.Load).WithTimeout(20*time.Second).Should(BeNumerically(">=", mintsPerNamespace), "A's mints are under way and hang")

		By("namespace B: short-lived tokens, renewed every ~10 s")
		watches := make([]*secretWatch, healthy)
		for i := range healthy {
			name := "cred-" + strconv.Itoa(i)
			createProcessCredential(ctx, k8sClient, nsB, name, "conn", "token-"+strconv.Itoa(i))
			eventuallyReady(ctx, k8sClient, nsB, name, "token-"+strconv.Itoa(i), 20*time.Second)
			watches[i] = watchSecret(k8sClient, nsB, "token-"+strconv.Itoa(i))
		}
		time.Sleep(observe)

		for i, w := range watches {
			w.stop()
			tokens, violations, seen := w.result()
			GinkgoWriter.Printf("B/token-%d: %d tokens in %s, %d reads\n", i, len(tokens), observe, seen)
			Expect(violations).To(BeEmpty(), "B/token-%d was never missing or expired", i)
			// One renewal per 8.5–10 s (renewBefore a third, 10% jitter).
			Expect(len(tokens)).To(BeNumerically(">=", int(observe/(10*time.Second))), "B/token-%d renewed on schedule", i)
		}
		for i := range hungCredentials {
			c := conditionOf(ctx, k8sClient, nsA, "hung-"+strconv.Itoa(i), clearancev1alpha1.ConditionReady)
			Expect(c.Status).NotTo(Equal(metav1.ConditionTrue), "A/hung-%d has no token", i)
		}
		// Each of A's mint slots holds one attempt at a time, and an attempt
		// lasts the 10 s attempt timeout. The listener sees a timed-out
		// attempt's connection close a moment after the next one opens, so
		// one more may look open at once.
		attempts := int(time.Since(startA)/(10*time.Second)) + 1
		GinkgoWriter.Printf("hung STS: %d connections in %s, at most %d open at once\n", hung.accepted.Load(), time.Since(startA).Round(time.Second), hung.mostOpen())
		Expect(hung.mostOpen()).To(BeNumerically("<=", mintsPerNamespace+1), "A never held more than its share of the workers")
		Expect(hung.accepted.Load()).To(BeNumerically("<=", mintsPerNamespace*attempts), "A's attempts went through its slots one at a time")
		expectAlive(proc)
		processLogs = append(processLogs, proc)
	})

	It("500 Secrets labelled managed-by with 512 KiB values raise the manager's RSS by less than 10 MiB", func(ctx context.Context) {
		const (
			foreign   = 500
			valueSize = 512 << 10
		)
		ns := newNamespace(ctx, k8sClient)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		proc := startManagerProcess(ctx, kubeconfig, ns, nil)
		createProcessCredential(ctx, k8sClient, ns, "cred", "conn", "token")
		eventuallyReady(ctx, k8sClient, ns, "cred", "token", 20*time.Second)
		DeferCleanup(func(ctx context.Context) {
			Expect(k8sClient.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns), client.MatchingLabels{"foreign": "yes"})).To(Succeed())
		})
		value := make([]byte, valueSize)
		_, _ = rand.Read(value)
		createForeign := func(from, to int) {
			GinkgoHelper()
			var wg sync.WaitGroup
			errs := make(chan error, to-from)
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer GinkgoRecover()
					defer wg.Done()
					for i := from + w; i < to; i += 4 {
						errs <- k8sClient.Create(ctx, &corev1.Secret{
							ObjectMeta: metav1.ObjectMeta{
								Name: "foreign-" + strconv.Itoa(i), Namespace: ns,
								Labels:      map[string]string{clearancev1alpha1.ManagedByLabel: clearancev1alpha1.ManagedByValue, "foreign": "yes"},
								Annotations: map[string]string{"clearance.dev/issued-at": fmt.Sprintf("%x", value[:8<<10])},
							},
							Data: map[string][]byte{
								clearancev1alpha1.SecretKeyExpiresAt: value,
								clearancev1alpha1.SecretKeyTokenType: value[:16<<10],
							},
						})
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				Expect(err).NotTo(HaveOccurred())
			}
		}

		// The first few bring the heap to the size the garbage collector lets
		// it reach under this kind of load (each watch event decodes a large
		// object, then drops it); what follows shows what the Secrets cost.
		By("warming up with a tenth of the Secrets")
		createForeign(0, foreign/10)
		time.Sleep(5 * time.Second)
		base, err := testutil.ReadProcMemory(proc.pid())
		Expect(err).NotTo(HaveOccurred())

		By("a tenant creating Secrets the managed-Secret cache selects")
		createForeign(foreign/10, foreign/10+foreign)

		By("the manager keeps working: a new credential becomes Ready")
		cf2 := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, ns, "conn-2", cf2.Data)
		createProcessCredential(ctx, k8sClient, ns, "cred-2", "conn-2", "token-2")
		eventuallyReady(ctx, k8sClient, ns, "cred-2", "token-2", 30*time.Second)
		time.Sleep(10 * time.Second)
		after, err := testutil.ReadProcMemory(proc.pid())
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("manager RSS %d KiB before, %d KiB after %d more labelled Secrets with %d KiB values (peak %d KiB)\n",
			base.RSS>>10, after.RSS>>10, foreign, valueSize>>10, after.HWM>>10)
		Expect(after.RSS).To(BeNumerically("<", base.RSS+10<<20), "the foreign Secrets' values are not held")
		expectAlive(proc)
		processLogs = append(processLogs, proc)
	})

	It("refuses forbidden STS destinations by default without sending a packet", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		srv := newEmulator()
		listener := newHungSTS()
		_, port, err := net.SplitHostPort(listener.ln.Addr().String())
		Expect(err).NotTo(HaveOccurred())
		// The shipped policy: the allow flags of the suite's managers reset.
		proc := startManagerProcess(ctx, kubeconfig, ns, nil, "--sts-allow-http=false", "--sts-allow-cidrs=")
		cases := []struct{ name, address, problem string }{
			{"loopback", "https://127.0.0.1:" + port + "/connect", "loopback"},
			{"ipv6-loopback", "https://[::1]:" + port + "/connect", "loopback"},
			{"metadata", "https://169.254.169.254/connect", "link-local"},
			{"private", "https://10.20.30.40/connect", "private"},
			{"plain-http", "http://sts.clearance.invalid/connect", "clear text"},
			{"name-resolving-to-loopback", "https://localhost:" + port + "/connect", "resolves to a loopback"},
		}
		for _, c := range cases {
			connectionSecretFor(ctx, ns, "conn-"+c.name, srv, c.address)
			createProcessCredential(ctx, k8sClient, ns, c.name, "conn-"+c.name, "token-"+c.name)
		}
		for _, c := range cases {
			ready := eventuallyCondition(ctx, k8sClient, ns, c.name, clearancev1alpha1.ConditionReady, 20*time.Second,
				haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonDestinationNotAllowed))
			Expect(ready.Message).To(ContainSubstring(c.problem), c.name)
			Expect(conditionOf(ctx, k8sClient, ns, c.name, clearancev1alpha1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
		}
		Consistently(listener.accepted.Load).WithTimeout(2*time.Second).Should(BeZero(), "nothing reached the listener")
		Expect(srv.Stats().TokenRequests).To(BeZero())
		expectAlive(proc)
		processLogs = append(processLogs, proc)
	})

	It("tells a tenant the class of a failed address, never its certificate or response text", func(ctx context.Context) {
		const bodyMarker = "internal-service-banner-7d3f"
		ns := newNamespace(ctx, k8sClient)
		srv := newEmulator()
		closed, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		closedAddr := closed.Addr().String()
		Expect(closed.Close()).To(Succeed())
		untrusted := httptest.NewTLSServer(http.NotFoundHandler())
		DeferCleanup(untrusted.Close)
		notFound := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = fmt.Fprintf(w, `{"error":"not_found","error_description":%q}`, bodyMarker)
		}))
		DeferCleanup(notFound.Close)
		proc := startManagerProcess(ctx, kubeconfig, ns, nil)
		cases := []struct{ name, address, class string }{
			{"closed-port", "http://" + closedAddr + "/connect", "unreachable"},
			{"tls-error", untrusted.URL + "/connect", "TLS failure"},
			{"http-404", notFound.URL + "/connect", "token endpoint not found at this address (not_found)"},
		}
		for _, c := range cases {
			connectionSecretFor(ctx, ns, "conn-"+c.name, srv, c.address)
			createProcessCredential(ctx, k8sClient, ns, c.name, "conn-"+c.name, "token-"+c.name)
		}
		for _, c := range cases {
			ready := eventuallyCondition(ctx, k8sClient, ns, c.name, clearancev1alpha1.ConditionReady, 20*time.Second,
				haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonSTSUnavailable))
			Expect(ready.Message).To(ContainSubstring(c.class), c.name)
			messages := ready.Message
			for _, e := range credentialEvents(ctx, k8sClient, ns, c.name) {
				messages += "\n" + e.Note
			}
			for _, leak := range []string{"refused", "x509", "certificate", "authority", bodyMarker} {
				Expect(messages).NotTo(ContainSubstring(leak), "%s: status and events name the class only", c.name)
			}
		}
		Expect(proc.log()).To(ContainSubstring("connection refused"), "the detail goes to the manager's log")
		expectAlive(proc)
		processLogs = append(processLogs, proc)
	})

	It("100 refresh annotations in 10 s cause at most one mint per --min-forced-mint-interval", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		proc := startManagerProcess(ctx, kubeconfig, ns, nil, "--min-forced-mint-interval=30s")
		createProcessCredential(ctx, k8sClient, ns, "cred", "conn", "token")
		eventuallyReady(ctx, k8sClient, ns, "cred", "token", 20*time.Second)
		firstMint := time.Now()
		Expect(successes(srv, cf.ClientID())).To(BeEquivalentTo(1))

		By("a tenant asking for a new token ten times a second")
		last := ""
		for i := range 100 {
			last = fmt.Sprintf("2026-12-07T00:00:%02d.%dZ", i/10, i%10)
			Eventually(func() error {
				c := getCredential(ctx, k8sClient, ns, "cred")
				c.Annotations = map[string]string{clearancev1alpha1.RefreshRequestedAtAnnotation: last}
				return k8sClient.Update(ctx, c)
			}).Should(Succeed())
			time.Sleep(100 * time.Millisecond)
		}
		Expect(time.Since(firstMint)).To(BeNumerically("<", 30*time.Second), "the storm fitted in the interval")
		Expect(requests(srv, cf.ClientID())).To(BeEquivalentTo(1), "no mint inside the interval")
		Expect(conditionOf(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionReconciling).Reason).To(Equal(clearancev1alpha1.ReasonMintDeferred))
		Expect(conditionOf(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))

		By("once the interval has passed, one mint covers the latest request")
		Eventually(func() int64 { return successes(srv, cf.ClientID()) }).WithTimeout(45 * time.Second).Should(BeEquivalentTo(2))
		Consistently(func() int64 { return requests(srv, cf.ClientID()) }).WithTimeout(5 * time.Second).Should(BeEquivalentTo(2))
		s, err := getSecret(ctx, k8sClient, ns, "token")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Annotations).To(HaveKeyWithValue(clearancev1alpha1.RefreshRequestedAtAnnotation, last))
		expectAlive(proc)
		processLogs = append(processLogs, proc)
	})

	It("a Retry-After of a day does not let the stored token expire", func(ctx context.Context) {
		const tokenTTL = 30 * time.Second
		ns := newNamespace(ctx, k8sClient)
		srv := newEmulator(clearancetest.WithTokenTTL(tokenTTL))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		proc := startManagerProcess(ctx, kubeconfig, ns, nil)
		createProcessCredential(ctx, k8sClient, ns, "cred", "conn", "token")
		eventuallyReady(ctx, k8sClient, ns, "cred", "token", 20*time.Second)
		watch := watchSecret(k8sClient, ns, "token")
		Expect(srv.InjectFault(clearancetest.FaultRateLimited(24 * time.Hour).Times(1))).To(Succeed())

		By("the renewal is refused with Retry-After: 86400, then retried before the expiry")
		eventuallyCondition(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionDegraded, tokenTTL,
			haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonRateLimited))
		Eventually(func() int64 { return successes(srv, cf.ClientID()) }).WithTimeout(tokenTTL).Should(BeEquivalentTo(2))
		watch.waitForTokens(2)
		watch.stop()
		_, violations, _ := watch.result()
		Expect(violations).To(BeEmpty(), "the token never expired")
		expectAlive(proc)
		processLogs = append(processLogs, proc)
	})
})
