package faults

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

var _ = Describe("STS responses", Ordered, ContinueOnFailure, func() {
	var mgr *inProcManager
	BeforeAll(func() {
		mgr = startInProcManager(inProcOptions{})
		DeferCleanup(mgr.stop)
	})

	It("rejects 200 responses with unusable bodies and keeps the old token", func(ctx context.Context) {
		// All cases run side by side, each with its own emulator (faults are
		// per emulator) and credential, on tokens living 10 s (renewed after 6 to 6.7 s).
		type badBody struct {
			name  string
			fault clearancetest.Fault
			// what the condition message says about it
			problem string
		}
		cases := []badBody{
			{"HTML page", clearancetest.FaultHTML(http.StatusOK), "body is not valid JSON"},
			{"no access_token", clearancetest.FaultMissingAccessToken(), "access_token is missing"},
			{"token_type mac", clearancetest.FaultTokenType("mac"), "token_type is not Bearer"},
			{"expires_in 0", clearancetest.FaultExpiresIn(0), "expires_in is not positive"},
			{"expires_in negative", clearancetest.FaultExpiresIn(-3600), "expires_in is not positive"},
			{"expires_in a string", clearancetest.FaultExpiresIn("soon"), "expires_in is not a number"},
			{"expires_in enormous", clearancetest.FaultExpiresIn(1e12), "expires_in is implausibly large"},
		}
		type running struct {
			badBody
			ns      string
			srv     *clearancetest.Server
			cf      *clearancetest.ConnectionFile
			token   string
			expires time.Time
			watch   *secretWatch
		}
		var all []*running
		for _, c := range cases {
			r := &running{badBody: c, ns: newNamespace(ctx, k8sClient), srv: newEmulator(clearancetest.WithTokenTTL(10 * time.Second))}
			r.cf = newConnectionFile(r.srv) // key generation first, so the credentials start together
			createConnectionSecret(ctx, k8sClient, r.ns, "conn", r.cf.Data)
			all = append(all, r)
		}
		for _, r := range all {
			createCredential(ctx, r.ns, "cred", "conn", "token")
		}
		for _, r := range all {
			r.token = eventuallyReady(ctx, k8sClient, r.ns, "cred", "token", 15*time.Second)
			Expect(r.srv.InjectFault(r.fault)).To(Succeed())
			Expect(successes(r.srv, r.cf.ClientID())).To(BeEquivalentTo(1), "%s: the fault is in place before the renewal", r.name)
			r.expires = getCredential(ctx, k8sClient, r.ns, "cred").Status.ExpiresAt.Time
			r.watch = watchSecret(k8sClient, r.ns, "token")
		}

		for _, r := range all {
			By(r.name + ": Degraded while the stored token is valid, the token kept")
			degraded := eventuallyCondition(ctx, k8sClient, r.ns, "cred", clearancev1alpha1.ConditionDegraded, 10*time.Second,
				haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonSTSUnavailable))
			Expect(degraded.Message).To(ContainSubstring("invalid token response: "+r.problem), r.name)
			Expect(degraded.Message).To(ContainSubstring(clearance.HintInvalidResponse), r.name)
			if time.Now().Before(r.expires.Add(-time.Second)) {
				Expect(condition(ctx, r.ns, "cred", clearancev1alpha1.ConditionReady)).To(
					haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid), r.name)
			}
			Expect(tokenIn(ctx, k8sClient, r.ns, "token")).To(Equal(r.token), r.name)
		}
		for _, r := range all {
			By(r.name + ": TokenExpired once it expired, the Secret still there")
			eventuallyCondition(ctx, k8sClient, r.ns, "cred", clearancev1alpha1.ConditionReady, 15*time.Second,
				haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonTokenExpired))
			Expect(tokenIn(ctx, k8sClient, r.ns, "token")).To(Equal(r.token), r.name)
			Expect(successes(r.srv, r.cf.ClientID())).To(BeEquivalentTo(1), r.name)
			Expect(r.srv.Stats().Outcome(clearancetest.OutcomeFault)).To(BeNumerically(">=", 2), r.name)
		}
		// Nothing but the old token may have reached the Secret while the
		// faults were in place; what comes after is ordinary renewal, whose
		// count depends on how long the checks below take, so it is not counted.
		faultsCleared := time.Now()
		for _, r := range all {
			r.srv.ClearFaults()
		}
		for _, r := range all {
			By(r.name + ": a good token once the STS answers properly again")
			eventuallyCondition(ctx, k8sClient, r.ns, "cred", clearancev1alpha1.ConditionReady, 20*time.Second,
				haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid))
			Expect(tokenIn(ctx, k8sClient, r.ns, "token")).NotTo(Equal(r.token), r.name)
			r.watch.waitForTokens(2)
			r.watch.stop()
		}
		for _, r := range all {
			tokens, violations, _ := r.watch.result()
			// The Secret is never emptied or replaced by a bad response; only
			// the original token expired while the STS misbehaved.
			for _, v := range violations {
				Expect(v).To(ContainSubstring("token expired"), r.name)
			}
			Expect(r.watch.tokensSeenBefore(faultsCleared)).To(Equal([]string{r.token}), "%s: only the old token while the STS misbehaved", r.name)
			Expect(tokens[0]).To(Equal(r.token), "%s: the old token first", r.name)
			Expect(eventReasons(ctx, k8sClient, r.ns, "cred")).To(ContainElement("MintFailed"), r.name)
			expectNoSecretMaterial(ctx, k8sClient, r.ns, logSink.String(), [][]byte{r.cf.Data}, tokens...)
		}
	})

	It("hints at clock skew when the STS clock is 10 minutes ahead or behind", func(ctx context.Context) {
		for _, offset := range []time.Duration{10 * time.Minute, -10 * time.Minute} {
			By("an STS " + offset.String() + " off")
			ns := newNamespace(ctx, k8sClient)
			srv := newEmulator(clearancetest.WithClockOffset(offset))
			cf := newConnectionFile(srv)
			createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
			createCredential(ctx, ns, "cred", "conn", "token")
			ready := eventuallyCondition(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionReady, 15*time.Second,
				haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonCredentialRejected))
			Expect(ready.Message).To(ContainSubstring("invalid_grant"))
			Expect(ready.Message).To(ContainSubstring(clearance.HintClockSkew))
			Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionStalled)).To(
				haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonCredentialRejected))
			// A skew rejection is retried on the transient backoff schedule (a
			// clock gets fixed without any change to the spec or the Secret),
			// so a few requests, not a hammering.
			Consistently(func() int64 { return requests(srv, cf.ClientID()) }).WithTimeout(time.Second).Should(BeNumerically("<=", 3))

			By("recovering on its own once the clocks agree")
			srv.SetClockOffset(0)
			token := eventuallyReady(ctx, k8sClient, ns, "cred", "token", 20*time.Second)
			Expect(successes(srv, cf.ClientID())).To(BeEquivalentTo(1))
			expectNoSecretMaterial(ctx, k8sClient, ns, logSink.String(), [][]byte{cf.Data}, token)
		}
	})

	It("survives a credential deleted while its mint is in flight", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		Expect(srv.InjectFault(clearancetest.FaultLatency(1500 * time.Millisecond).Times(1))).To(Succeed())
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		cred := createCredential(ctx, ns, "cred", "conn", "token")
		Eventually(func() int64 { return srv.Stats().Delayed }).WithTimeout(10 * time.Second).Should(BeEquivalentTo(1))
		Expect(k8sClient.Delete(ctx, cred)).To(Succeed())

		By("no crash, no retry for the deleted credential")
		Eventually(func() int64 { return srv.Stats().TokenRequests }).WithTimeout(5 * time.Second).Should(BeEquivalentTo(1))
		Consistently(func() int64 { return srv.Stats().TokenRequests }).WithTimeout(3 * time.Second).Should(BeEquivalentTo(1))
		Expect(mgr.running()).To(BeTrue())
		expectNoPanic(logSink.String())
		Expect(reconciles(logSink.String(), ns)).To(BeNumerically("<=", 4))

		By("a Secret written by the late mint belongs to the deleted credential, for the garbage collector")
		s, err := getSecret(ctx, k8sClient, ns, "token")
		if err == nil {
			Expect(s.OwnerReferences).To(ConsistOf(And(HaveField("UID", cred.UID), HaveField("Controller", HaveValue(BeTrue())),
				HaveField("BlockOwnerDeletion", HaveValue(BeTrue())))))
			Expect(s.Type).To(Equal(corev1.SecretTypeOpaque))
		} else {
			Expect(apierrors.IsNotFound(err)).To(BeTrue())
		}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "cred"}, &clearancev1alpha1.ClearanceCredential{})).
			To(Satisfy(apierrors.IsNotFound))
		expectNoSecretMaterial(ctx, k8sClient, ns, logSink.String(), [][]byte{cf.Data})
	})

	It("never sees a 5 MiB connection file: the apiserver refuses it, and the parser refuses it unread", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		huge := bytes.Repeat([]byte("A"), 5<<20)
		err := k8sClient.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "conn", Namespace: ns},
			Data:       map[string][]byte{clearancev1alpha1.DefaultConnectionSecretKey: huge},
		})
		Expect(err).To(HaveOccurred())
		Expect(apierrors.IsInvalid(err) || apierrors.IsRequestEntityTooLargeError(err)).To(BeTrue(), "refused as too large: %v", err)

		start := time.Now()
		_, err = clearance.NewClient().LoadConnectionFile(huge)
		Expect(time.Since(start)).To(BeNumerically("<", time.Second))
		var cfErr *clearance.ConnectionFileError
		Expect(errors.As(err, &cfErr)).To(BeTrue())
		Expect(err.Error()).To(ContainSubstring("larger than the 1048576-byte limit"))
		Expect(len(err.Error())).To(BeNumerically("<", 100))
	})
})
