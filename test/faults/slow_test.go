//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
	"github.com/clearance-operator/clearance-operator/internal/controller"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// processLogs collects every manager process, for the final log check.
var processLogs []*managerProcess

// rejectedWindow is how long the rejected credentials are watched for
// hammering; they are created first and checked last, so the rest of the
// slow suite runs inside the window.
const rejectedWindow = 3 * time.Minute

// readySample is one observation of a credential's conditions.
type readySample struct {
	at       time.Time
	ready    metav1.Condition
	degraded metav1.Condition
}

// sampleConditions records Ready and Degraded every 200 ms until stopped.
func sampleConditions(cl client.Client, ns, name string) func() []readySample {
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu      sync.Mutex
		samples []readySample
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			c := &clearancev1alpha1.ClearanceCredential{}
			if err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, c); err == nil {
				s := readySample{at: time.Now()}
				for _, cond := range c.Status.Conditions {
					switch cond.Type {
					case clearancev1alpha1.ConditionReady:
						s.ready = cond
					case clearancev1alpha1.ConditionDegraded:
						s.degraded = cond
					}
				}
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	stop := func() []readySample {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return append([]readySample(nil), samples...)
	}
	DeferCleanup(func() { stop() })
	return stop
}

// replaceKey swaps the private key of a connection file for another valid
// 2048-bit key, keeping its ids: the STS then sees a bad signature.
func replaceKey(data []byte) []byte {
	GinkgoHelper()
	other, err := clearancetest.NewServer()
	Expect(err).NotTo(HaveOccurred())
	defer other.Close()
	donor := newConnectionFile(other)
	var donorDoc map[string]any
	Expect(json.Unmarshal(donor.Data, &donorDoc)).To(Succeed())
	return editFile(data, func(d map[string]any) {
		jwk, donorJWK := jwkOf(d), jwkOf(donorDoc)
		for _, m := range []string{"n", "e", "d", "p", "q", "dp", "dq", "qi"} {
			jwk[m] = donorJWK[m]
		}
	})
}

var _ = Describe("Faults (slow)", Ordered, ContinueOnFailure, func() {
	var (
		mgr *inProcManager
		// The rejected credentials, watched for the whole container.
		rejSrv                *clearancetest.Server
		revoked, wrongKey     *clearancetest.ConnectionFile
		wrongKeyData          []byte
		revokedNS, wrongKeyNS string
		rejectedSince         time.Time
	)

	BeforeAll(func(ctx context.Context) {
		mgr = startInProcManager(inProcOptions{attemptTimeout: time.Second})
		DeferCleanup(mgr.stop)
		managerBinary(ctx)

		By("creating the rejected credentials first: they are checked last, after minutes")
		rejSrv = newEmulator(clearancetest.WithTokenTTL(time.Hour))
		revoked = newConnectionFile(rejSrv)
		Expect(rejSrv.Revoke(revoked.ClientID())).To(BeTrue())
		revokedNS = newNamespace(ctx, k8sClient)
		createConnectionSecret(ctx, k8sClient, revokedNS, "conn", revoked.Data)
		createCredential(ctx, revokedNS, "cred", "conn", "token")

		wrongKey = newConnectionFile(rejSrv)
		wrongKeyData = replaceKey(wrongKey.Data)
		wrongKeyNS = newNamespace(ctx, k8sClient)
		createConnectionSecret(ctx, k8sClient, wrongKeyNS, "conn", wrongKeyData)
		createCredential(ctx, wrongKeyNS, "cred", "conn", "token")
		rejectedSince = time.Now()
	}, NodeTimeout(5*time.Minute))

	It("STS 503 for longer than the renewal window: token kept and Ready while valid, TokenExpired after, recovery at the next backoff step", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		srv := newEmulator(clearancetest.WithTokenTTL(10 * time.Second))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		createCredential(ctx, ns, "cred", "conn", "token")
		token := eventuallyReady(ctx, k8sClient, ns, "cred", "token", 15*time.Second)
		expires := getCredential(ctx, k8sClient, ns, "cred").Status.ExpiresAt.Time
		Expect(srv.InjectFault(clearancetest.FaultServerError(http.StatusServiceUnavailable))).To(Succeed())
		outageStart := time.Now()
		watch := watchSecret(k8sClient, ns, "token")
		stopSampling := sampleConditions(k8sClient, ns, "cred")

		By("Degraded (STSUnavailable) with Ready still True while the token is valid")
		degraded := eventuallyCondition(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionDegraded, 12*time.Second,
			haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonSTSUnavailable))
		Expect(degraded.Message).To(ContainSubstring(clearance.HintServerError))

		By("Ready False with TokenExpired once it expired, the Secret left as it is")
		eventuallyCondition(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionReady, 15*time.Second,
			haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonTokenExpired))
		time.Sleep(time.Until(expires.Add(8 * time.Second))) // an outage of ~18 s in all
		Expect(tokenIn(ctx, k8sClient, ns, "token")).To(Equal(token))
		// The next attempt the controller announces, read when it is more than
		// a second away, so the STS is back before it for sure.
		var (
			attempts int32
			next     time.Time
		)
		Eventually(func() time.Duration {
			attempts = getCredential(ctx, k8sClient, ns, "cred").Status.FailedAttempts
			var ok bool
			next, ok = nextAttempt(condition(ctx, ns, "cred", clearancev1alpha1.ConditionReconciling).Message)
			Expect(ok).To(BeTrue(), "the Reconciling message names the next attempt")
			return time.Until(next)
		}).WithTimeout(40 * time.Second).WithPolling(500 * time.Millisecond).Should(BeNumerically(">", time.Second))
		failed := requests(srv, cf.ClientID()) - successes(srv, cf.ClientID())
		GinkgoWriter.Printf("outage of %s: %d failed requests, failedAttempts %d\n", time.Since(outageStart).Round(time.Millisecond), failed, attempts)
		Expect(failed).To(BeNumerically(">=", 3))
		Expect(failed).To(BeNumerically("<=", 10), "exponential backoff, not a retry loop")
		Expect(failed).To(BeNumerically("~", attempts, 1), "status.failedAttempts counts the failed requests")

		By("recovering at the next scheduled attempt once the STS is back")
		srv.ClearFaults()
		cleared := time.Now()
		eventuallyCondition(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionReady, controller.BackoffCap,
			haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid))
		recovered := time.Now()
		bound := controller.FailureBackoff(attempts, 0.999, cleared, nil) * 2 // the largest step the next one can be
		GinkgoWriter.Printf("recovered %s after the STS came back (next attempt was due %s after; backoff step bound %s)\n",
			recovered.Sub(cleared).Round(time.Millisecond), next.Sub(cleared).Round(time.Second), bound)
		Expect(recovered).To(BeTemporally("<=", laterOf(next, cleared).Add(2500*time.Millisecond)), "recovery at the scheduled attempt")
		Expect(recovered.Sub(cleared)).To(BeNumerically("<=", bound+2500*time.Millisecond))
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionDegraded).Status).To(BeEmpty())
		Expect(getCredential(ctx, k8sClient, ns, "cred").Status.FailedAttempts).To(BeZero())

		samples := stopSampling()
		watch.waitForTokens(2)
		watch.stop()
		tokens, violations, _ := watch.result()
		degradedSeen := false
		for _, s := range samples {
			switch {
			case s.at.Before(expires.Add(-500 * time.Millisecond)):
				Expect(s.ready.Status).To(Equal(metav1.ConditionTrue), "Ready while the token is valid (%s)", s.at)
				if s.degraded.Status == metav1.ConditionTrue {
					degradedSeen = true
				} else {
					Expect(degradedSeen).To(BeFalse(), "Degraded stays until expiry once set (%s)", s.at)
				}
			case s.at.After(expires.Add(1500*time.Millisecond)) && s.at.Before(cleared):
				Expect(s.ready).To(haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonTokenExpired), "after expiry (%s)", s.at)
				Expect(s.degraded.Status).To(BeEmpty(), "Degraded gives way to Ready=False after expiry (%s)", s.at)
			}
		}
		Expect(degradedSeen).To(BeTrue(), "Ready=True with Degraded=True was observed before expiry")
		Expect(tokens[0]).To(Equal(token), "the old token until recovery")
		Expect(tokens).To(HaveLen(2), "the old token until recovery, then one new one")
		for _, v := range violations {
			Expect(v).To(ContainSubstring("token expired"), "the Secret is never emptied or deleted")
		}
		Expect(successes(srv, cf.ClientID())).To(BeEquivalentTo(2))
		expectNoSecretMaterial(ctx, k8sClient, ns, logSink.String(), [][]byte{cf.Data}, tokens...)
	})

	It("STS 429 with Retry-After: no request before it elapses", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		srv := newEmulator(clearancetest.WithTokenTTL(9 * time.Second))
		Expect(srv.InjectFault(clearancetest.FaultRateLimited(3 * time.Second).Times(2))).To(Succeed())
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		createCredential(ctx, ns, "cred", "conn", "token")
		ready := eventuallyCondition(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionReady, 10*time.Second,
			haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonRateLimited))
		Expect(ready.Message).To(ContainSubstring("retry after 3s"))
		token := eventuallyReady(ctx, k8sClient, ns, "cred", "token", 15*time.Second)

		times := func() []time.Time {
			var out []time.Time
			for _, r := range srv.Requests() {
				if r.ClientID == cf.ClientID() {
					out = append(out, r.Time)
				}
			}
			return out
		}
		first := times()
		Expect(first).To(HaveLen(3), "two rate-limited requests, then the token")
		for i := 1; i < len(first); i++ {
			Expect(first[i].Sub(first[i-1])).To(BeNumerically(">=", 3*time.Second-50*time.Millisecond), "request %d came before Retry-After elapsed", i)
		}
		Expect(eventReasons(ctx, k8sClient, ns, "cred")).To(ContainElement("MintFailed"))

		By("at renewal: Degraded RateLimited, Ready still True, the next request after Retry-After")
		Expect(srv.InjectFault(clearancetest.FaultRateLimited(2 * time.Second).Times(1))).To(Succeed())
		degraded := eventuallyCondition(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionDegraded, 10*time.Second,
			haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonRateLimited))
		Expect(degraded.Message).To(ContainSubstring(clearance.HintRateLimited))
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		Eventually(func() string { return tokenIn(ctx, k8sClient, ns, "token") }).WithTimeout(10 * time.Second).ShouldNot(Equal(token))
		all := times()
		Expect(len(all)).To(BeNumerically(">=", 5))
		Expect(all[4].Sub(all[3])).To(BeNumerically(">=", 2*time.Second-50*time.Millisecond))
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady)).To(haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid))
		expectNoSecretMaterial(ctx, k8sClient, ns, logSink.String(), [][]byte{cf.Data}, token, tokenIn(ctx, k8sClient, ns, "token"))
	})

	DescribeTable("first STS address failing, second healthy: the token comes from the second",
		func(ctx context.Context, breakFirst func(*clearancetest.Server), minDelay, maxDelay time.Duration) {
			ns := newNamespace(ctx, k8sClient)
			first := newEmulator()
			second := newEmulator(clearancetest.WithTokenTTL(time.Hour))
			breakFirst(first)
			cf := newConnectionFile(second, clearancetest.WithSTSAddresses(first.BaseURL(), second.BaseURL()))
			createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
			start := time.Now()
			createCredential(ctx, ns, "cred", "conn", "token")
			token := eventuallyReady(ctx, k8sClient, ns, "cred", "token", 15*time.Second)
			elapsed := time.Since(start)
			Expect(elapsed).To(BeNumerically(">=", minDelay))
			Expect(elapsed).To(BeNumerically("<", maxDelay))
			c := getCredential(ctx, k8sClient, ns, "cred")
			Expect(c.Status.TokenEndpoint).To(Equal(second.TokenEndpoint()))
			Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady).Reason).To(Equal(clearancev1alpha1.ReasonTokenValid))
			Expect(successes(second, cf.ClientID())).To(BeEquivalentTo(1))
			Expect(first.Stats().Outcome(clearancetest.OutcomeSuccess)).To(BeZero())
			expectNoSecretMaterial(ctx, k8sClient, ns, logSink.String(), [][]byte{cf.Data}, token)
		},
		Entry("latency beyond the per-attempt timeout (1 s in process)",
			func(s *clearancetest.Server) {
				Expect(s.InjectFault(clearancetest.FaultLatency(20 * time.Second))).To(Succeed())
			},
			time.Second, 6*time.Second),
		Entry("connection refused", func(s *clearancetest.Server) { Expect(s.StopListening()).To(Succeed()) },
			time.Duration(0), 5*time.Second),
	)

	It("manager SIGKILLed between a mint and the Secret write: at most one extra mint, no lost or expired token", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		srv := newEmulator(clearancetest.WithTokenTTL(40 * time.Second))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		proxy, err := testutil.StartAPIProxy(cfg)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(proxy.Close)
		first := startManagerProcess(ctx, writeKubeconfig(proxy.Config()), ns, nil)
		// Renewal 6-10 s after issue (renewBefore 30 s, up to 4 s jitter).
		createProcessCredential(ctx, k8sClient, ns, "cred", "conn", "token", withRenewBefore(30*time.Second))
		token := eventuallyReady(ctx, k8sClient, ns, "cred", "token", 20*time.Second)
		proxy.FailRequests(secretPatch(ns, "token"))
		issued := getCredential(ctx, k8sClient, ns, "cred").Status.ExpiresAt.Add(-40 * time.Second)
		Expect(time.Now()).To(BeTemporally("<", issued.Add(5*time.Second)), "the write fault must be in place before the renewal")
		Expect(successes(srv, cf.ClientID())).To(BeEquivalentTo(1))
		watch := watchSecret(k8sClient, ns, "token")

		By("the renewal mints, the write fails, the manager is killed")
		Eventually(func() int64 { return successes(srv, cf.ClientID()) }).WithTimeout(15 * time.Second).Should(BeEquivalentTo(2))
		failedBefore := proxy.Failed()
		Eventually(proxy.Failed).WithTimeout(10 * time.Second).Should(BeNumerically(">", failedBefore))
		eventuallyCondition(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionReconciling, 10*time.Second,
			haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonTargetWriteFailed))
		first.kill()
		Expect(tokenIn(ctx, k8sClient, ns, "token")).To(Equal(token), "the old, still valid token stays")

		By("a new manager, straight to the apiserver, mints once and writes")
		second := startManagerProcess(ctx, writeKubeconfig(cfg), ns, nil)
		Eventually(func() string { return tokenIn(ctx, k8sClient, ns, "token") }).WithTimeout(20 * time.Second).ShouldNot(Equal(token))
		Expect(successes(srv, cf.ClientID())).To(BeEquivalentTo(3), "the first token, the one lost with the manager, and one more")
		Consistently(func() int64 { return successes(srv, cf.ClientID()) }).WithTimeout(2 * time.Second).Should(BeEquivalentTo(3))
		eventuallyCondition(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionReady, 10*time.Second,
			haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid))
		watch.waitForTokens(2)
		watch.stop()
		tokens, violations, _ := watch.result()
		Expect(violations).To(BeEmpty(), "never missing, emptied or expired")
		Expect(tokens).To(HaveLen(2))
		expectAlive(second)
		expectNoPanic(first.log() + second.log())
		expectNoSecretMaterial(ctx, k8sClient, ns, first.log()+second.log(), [][]byte{cf.Data}, tokens...)
		processLogs = append(processLogs, first, second)
	})

	It("memory ballast: Secrets several times the manager's memory limit are not cached, and it keeps working", func(ctx context.Context) {
		const (
			memLimit   = 48 << 20  // GOMEMLIMIT of the manager
			ballast    = 200 << 20 // unrelated Secret data, about four times the limit
			secretSize = 900 << 10
		)
		ns := newNamespace(ctx, k8sClient)
		srv := newEmulator(clearancetest.WithTokenTTL(12 * time.Second))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		proc := startManagerProcess(ctx, writeKubeconfig(cfg), ns, []string{"GOMEMLIMIT=48MiB"})
		createProcessCredential(ctx, k8sClient, ns, "cred", "conn", "token")
		eventuallyReady(ctx, k8sClient, ns, "cred", "token", 20*time.Second)
		watch := watchSecret(k8sClient, ns, "token")
		time.Sleep(2 * time.Second)
		base, err := testutil.ReadProcMemory(proc.pid())
		Expect(err).NotTo(HaveOccurred())

		By("creating the unrelated Secrets in the manager's namespace")
		DeferCleanup(func(ctx context.Context) {
			Expect(k8sClient.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns), client.MatchingLabels{"ballast": "yes"})).To(Succeed())
		})
		payload := make([]byte, secretSize)
		for i := range payload {
			payload[i] = byte('a' + i%26)
		}
		n := ballast / secretSize
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				for i := w; i < n; i += 4 {
					errs <- k8sClient.Create(ctx, &corev1.Secret{
						ObjectMeta: metav1.ObjectMeta{Name: "ballast-" + strconv.Itoa(i), Namespace: ns, Labels: map[string]string{"ballast": "yes"}},
						Data:       map[string][]byte{"blob": payload},
					})
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			Expect(err).NotTo(HaveOccurred())
		}
		time.Sleep(3 * time.Second)

		By("the manager still works: a new credential becomes Ready, the first keeps renewing")
		cf2 := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, ns, "conn-2", cf2.Data)
		createProcessCredential(ctx, k8sClient, ns, "cred-2", "conn-2", "token-2")
		token2 := eventuallyReady(ctx, k8sClient, ns, "cred-2", "token-2", 15*time.Second)
		time.Sleep(5 * time.Second)
		after, err := testutil.ReadProcMemory(proc.pid())
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("manager RSS: %d MiB before (peak %d MiB), %d MiB after %d MiB of Secrets (peak %d MiB), GOMEMLIMIT %d MiB\n",
			base.RSS>>20, base.HWM>>20, after.RSS>>20, (n*secretSize)>>20, after.HWM>>20, memLimit>>20)
		Expect(after.HWM).To(BeNumerically("<", base.HWM+ballast/8), "the peak grew by less than an eighth of the ballast: nothing was cached")
		Expect(after.HWM).To(BeNumerically("<", 2*memLimit))
		expectAlive(proc)
		watch.stop()
		tokens, violations, _ := watch.result()
		Expect(violations).To(BeEmpty())
		Expect(len(tokens)).To(BeNumerically(">=", 2), "renewed during the test")
		expectNoSecretMaterial(ctx, k8sClient, ns, proc.log(), [][]byte{cf.Data, cf2.Data}, append(tokens, token2)...)
		processLogs = append(processLogs, proc)
	})

	It("the shipped binary fails over after its default 10 s per-attempt timeout", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		slow := newEmulator()
		Expect(slow.InjectFault(clearancetest.FaultLatency(40 * time.Second))).To(Succeed())
		healthy := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(healthy, clearancetest.WithSTSAddresses(slow.BaseURL(), healthy.BaseURL()))
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		proc := startManagerProcess(ctx, writeKubeconfig(cfg), ns, nil)
		start := time.Now()
		createProcessCredential(ctx, k8sClient, ns, "cred", "conn", "token")
		token := eventuallyReady(ctx, k8sClient, ns, "cred", "token", 30*time.Second)
		Expect(time.Since(start)).To(BeNumerically(">=", clearance.DefaultAttemptTimeout))
		Expect(time.Since(start)).To(BeNumerically("<", clearance.DefaultAttemptTimeout+8*time.Second))
		Expect(getCredential(ctx, k8sClient, ns, "cred").Status.TokenEndpoint).To(Equal(healthy.TokenEndpoint()))
		Expect(slow.Stats().Delayed).To(BeNumerically(">=", 1))
		Expect(successes(healthy, cf.ClientID())).To(BeEquivalentTo(1))
		expectNoSecretMaterial(ctx, k8sClient, ns, proc.log(), [][]byte{cf.Data}, token)
		processLogs = append(processLogs, proc)
	})

	It("a rejected credential (invalid_client, invalid_grant): CredentialRejected, one request in minutes, an immediate retry when the Secret is fixed", func(ctx context.Context) {
		if wait := time.Until(rejectedSince.Add(rejectedWindow)); wait > 0 {
			By("waiting out the rest of the " + rejectedWindow.String() + " window")
			time.Sleep(wait)
		}
		GinkgoWriter.Printf("rejected credentials watched for %s\n", time.Since(rejectedSince).Round(time.Second))
		for _, c := range []struct {
			ns, code, hint string
			file           *clearancetest.ConnectionFile
			data           []byte
		}{
			{revokedNS, "invalid_client", clearance.HintRejectedKey, revoked, revoked.Data},
			{wrongKeyNS, "invalid_grant", clearance.HintInvalidGrant, wrongKey, wrongKeyData},
		} {
			By(c.code)
			ready := condition(ctx, c.ns, "cred", clearancev1alpha1.ConditionReady)
			Expect(ready).To(haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonCredentialRejected))
			Expect(ready.Message).To(ContainSubstring(c.code))
			Expect(ready.Message).To(ContainSubstring(c.hint))
			Expect(condition(ctx, c.ns, "cred", clearancev1alpha1.ConditionStalled)).To(
				haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonCredentialRejected))
			Expect(requests(rejSrv, c.file.ClientID())).To(BeEquivalentTo(1), "no hammering over %s", time.Since(rejectedSince).Round(time.Second))
			Expect(eventReasons(ctx, k8sClient, c.ns, "cred")).To(ContainElement("MintFailed"))
			expectNoSecretMaterial(ctx, k8sClient, c.ns, logSink.String(), [][]byte{c.file.Data, c.data})

			good := newConnectionFile(rejSrv)
			conn := &corev1.Secret{}
			Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: "conn"}, conn)).To(Succeed())
			conn.Data[clearancev1alpha1.DefaultConnectionSecretKey] = good.Data
			Expect(k8sClient.Update(ctx, conn)).To(Succeed())
			start := time.Now()
			token := eventuallyReady(ctx, k8sClient, c.ns, "cred", "token", 10*time.Second)
			Expect(time.Since(start)).To(BeNumerically("<", 3*time.Second), "retried at once, not at the safety retry")
			Expect(successes(rejSrv, good.ClientID())).To(BeEquivalentTo(1))
			Expect(condition(ctx, c.ns, "cred", clearancev1alpha1.ConditionStalled).Status).To(BeEmpty())
			expectNoSecretMaterial(ctx, k8sClient, c.ns, logSink.String(), [][]byte{c.file.Data, c.data, good.Data}, token)
		}
	})

	// The in-process check ("logs no Secret body") for the shipped binary,
	// whose logger main.go builds from --zap-log-level=10.
	It("the manager process logs no Secret body at the highest verbosity", func() {
		Expect(processLogs).NotTo(BeEmpty())
		var all string
		for _, p := range processLogs {
			all += p.log()
		}
		expectNoSecretInBodyDumps(all)
	})
})

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// The apiserver outage runs on a control plane of its own (the shared one
// keeps serving the other specs), stopped and started again in place: same
// address, same certificates, etcd keeping the data.
var _ = Describe("kube-apiserver stopped for 20 s and started again", Ordered, ContinueOnFailure, func() {
	// Long enough that a token minted for the renewal during the outage is
	// still worth writing (the controller drops a pending token with less
	// than 30 s left and mints again) whatever the write retry backoff.
	const ttl = 90 * time.Second
	var (
		cl2          client.Client
		proc, leProc *managerProcess
		srv          *clearancetest.Server
		procNS, leNS string
		procFiles    []*clearancetest.ConnectionFile
		leFile       *clearancetest.ConnectionFile
		before       map[string]string // target -> token before the outage
		watches      map[string]*secretWatch
		restarted    time.Time
		pid, lePid   int
	)

	BeforeAll(func(ctx context.Context) {
		certDir := filepath.Join(suiteDir, "restartable-apiserver")
		Expect(os.MkdirAll(certDir, 0o700)).To(Succeed())
		env, cfg2, c := startEnv(certDir)
		cl2 = c
		DeferCleanup(stopEnv, env)
		srv = newEmulator(clearancetest.WithTokenTTL(ttl))
		procNS, leNS = newNamespace(ctx, cl2), newNamespace(ctx, cl2)
		before, watches = map[string]string{}, map[string]*secretWatch{}

		for _, name := range []string{"a", "b"} {
			cf := newConnectionFile(srv)
			procFiles = append(procFiles, cf)
			createConnectionSecret(ctx, cl2, procNS, "conn-"+name, cf.Data)
			createProcessCredential(ctx, cl2, procNS, name, "conn-"+name, "token-"+name)
		}
		leFile = newConnectionFile(srv)
		createConnectionSecret(ctx, cl2, leNS, "conn", leFile.Data)
		createProcessCredential(ctx, cl2, leNS, "le", "conn", "token-le")

		kubeconfig := writeKubeconfig(cfg2)
		proc = startManagerProcess(ctx, kubeconfig, procNS, nil)
		pid = proc.pid()
		// The second manager runs as the shipped Deployment does, with
		// --leader-elect (and the Lease namespace a manager outside a cluster
		// has to be told).
		leProc = startManagerProcess(ctx, kubeconfig, leNS, nil, "--leader-elect", "--leader-election-namespace="+leNS)
		lePid = leProc.pid()
		var issued time.Time
		for _, t := range []struct{ ns, name, target string }{{procNS, "a", "token-a"}, {procNS, "b", "token-b"}, {leNS, "le", "token-le"}} {
			before[t.target] = eventuallyReady(ctx, cl2, t.ns, t.name, t.target, 30*time.Second)
			watches[t.target] = watchSecret(cl2, t.ns, t.target)
			if exp := getCredential(ctx, cl2, t.ns, t.name).Status.ExpiresAt.Add(-ttl); exp.After(issued) {
				issued = exp
			}
		}

		By("stopping the apiserver before the renewals are due and keeping it down for 20 s")
		// Renewals fall 51-60 s after issue (a third of 90 s before expiry,
		// minus up to 10% jitter): inside the outage.
		time.Sleep(time.Until(issued.Add(43 * time.Second)))
		stopAPIServer(env)
		Eventually(func() error { return cl2.Get(ctx, client.ObjectKey{Name: procNS}, &corev1.Namespace{}) }).
			WithTimeout(10*time.Second).ShouldNot(Succeed(), "the apiserver is down")
		stopped := time.Now()
		time.Sleep(20 * time.Second)
		Expect(env.ControlPlane.APIServer.Start()).To(Succeed())
		restarted = time.Now()
		GinkgoWriter.Printf("apiserver down from %s to %s (issue +%s)\n", stopped.Format(time.RFC3339Nano), restarted.Format(time.RFC3339Nano), stopped.Sub(issued).Round(time.Second))

		By("waiting for the manager process to replace its tokens")
		for _, target := range []string{"token-a", "token-b"} {
			Eventually(func() string { return tokenIn(ctx, cl2, procNS, target) }).WithTimeout(30*time.Second).
				WithPolling(200*time.Millisecond).ShouldNot(Equal(before[target]), "%s renewed after the outage", target)
		}
		GinkgoWriter.Printf("renewed %s after the apiserver came back\n", time.Since(restarted).Round(time.Millisecond))
	}, NodeTimeout(4*time.Minute))

	It("the manager process recovers without a restart of its own; each credential minted once for its renewal, no token lost", func(ctx context.Context) {
		expectAlive(proc)
		Expect(proc.pid()).To(Equal(pid))
		for i, name := range []string{"a", "b"} {
			target := "token-" + name
			Expect(successes(srv, procFiles[i].ClientID())).To(BeEquivalentTo(2), "%s: one token before, one renewal", name)
			Expect(conditionOf(ctx, cl2, procNS, name, clearancev1alpha1.ConditionReady)).To(haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid))
			watches[target].waitForTokens(2)
			watches[target].stop()
			tokens, violations, _ := watches[target].result()
			Expect(violations).To(BeEmpty(), "%s: never missing or expired", name)
			Expect(tokens).To(HaveLen(2))
			expectNoSecretMaterial(ctx, cl2, procNS, proc.log(), [][]byte{procFiles[i].Data}, tokens...)
		}
		expectNoPanic(proc.log())
		processLogs = append(processLogs, proc)
	})

	// With client-go's lease defaults an apiserver outage longer than the
	// renew deadline loses the lease and the manager exits; main.go's
	// defaults ride out this outage.
	It("with leader election as shipped (--leader-elect), the manager keeps running through the outage", func(ctx context.Context) {
		expectAlive(leProc)
		Expect(leProc.pid()).To(Equal(lePid))
		Eventually(func() string { return tokenIn(ctx, cl2, leNS, "token-le") }).WithTimeout(15*time.Second).
			ShouldNot(Equal(before["token-le"]), "renewed after the outage")
		Expect(successes(srv, leFile.ClientID())).To(BeEquivalentTo(2))
		watches["token-le"].waitForTokens(2)
		watches["token-le"].stop()
		tokens, violations, _ := watches["token-le"].result()
		Expect(violations).To(BeEmpty())
		expectNoSecretMaterial(ctx, cl2, leNS, leProc.log(), [][]byte{leFile.Data}, tokens...)
		processLogs = append(processLogs, leProc)
	})
})

var nextAttemptPattern = regexp.MustCompile(`next attempt at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)`)

// nextAttempt parses the retry time the controller puts in its messages.
func nextAttempt(msg string) (time.Time, bool) {
	m := nextAttemptPattern.FindStringSubmatch(msg)
	if m == nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, m[1])
	return t, err == nil
}

// stopAPIServer stops an apiserver started by startEnv with a certDir. A
// timeout only means it was killed rather than drained.
func stopAPIServer(env *envtest.Environment) {
	GinkgoHelper()
	if err := env.ControlPlane.APIServer.Stop(); err != nil {
		Expect(err.Error()).To(ContainSubstring("timeout waiting for process kube-apiserver to stop"))
	}
}

// stopEnv stops a control plane started by startEnv with a certDir.
func stopEnv(env *envtest.Environment) {
	GinkgoHelper()
	if err := env.Stop(); err != nil && !strings.Contains(err.Error(), "timeout waiting for process kube-apiserver to stop") {
		Expect(err).NotTo(HaveOccurred())
	}
}
