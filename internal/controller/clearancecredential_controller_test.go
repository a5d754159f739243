package controller

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

var _ = Describe("ClearanceCredential controller", Ordered, func() {
	var (
		mgr *runningManager
		// statusPatches counts the manager's status patches.
		statusPatches *statusPatchCounter
	)

	BeforeAll(func() {
		mgr = startManager(func(s *managerSetup) {
			s.wrapClient = func(c client.Client) client.Client {
				statusPatches = countStatusPatches(c)
				return statusPatches
			}
		})
	})
	AfterAll(func() { mgr.stop() })

	It("mints a token into the target Secret and reports it", func(ctx context.Context) {
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, ns, "conn", cf.Data)
		createCredential(ctx, ns, "cred", "conn", "token", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.SecretTemplate = &clearancev1alpha1.SecretTemplate{
				Labels: map[string]string{"team": "evidence"}, Annotations: map[string]string{"note": "hello"},
			}
		})
		token := eventuallyReady(ctx, ns, "cred", "token")

		s, err := getSecret(ctx, ns, "token")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Type).To(Equal(corev1.SecretTypeOpaque))
		Expect(s.Labels).To(HaveKeyWithValue(clearancev1alpha1.ManagedByLabel, clearancev1alpha1.ManagedByValue))
		Expect(s.Labels).To(HaveKeyWithValue("team", "evidence"))
		Expect(s.Annotations).To(HaveKeyWithValue("note", "hello"))
		Expect(s.Annotations).To(HaveKey(clearancev1alpha1.ExpiresAtAnnotation))
		Expect(metav1.GetControllerOf(s)).To(HaveField("Name", "cred"))
		Expect(s.Data).To(HaveKeyWithValue("tokenType", []byte("Bearer")))
		Expect(s.Data).To(HaveKeyWithValue("tenantId", []byte(cf.TenantID)))
		Expect(s.Data).To(HaveKeyWithValue("clientId", []byte(cf.ClientID())))
		Expect(s.Data).To(HaveKeyWithValue("securityTokenServiceBaseAddress", []byte(srv.BaseURL())))
		Expect(s.Data).To(HaveKey("documentStoreBaseAddress"))
		expiresAt, err := time.Parse(time.RFC3339, string(s.Data["expiresAt"]))
		Expect(err).NotTo(HaveOccurred())
		Expect(expiresAt).To(BeTemporally("~", time.Now().Add(time.Hour), 10*time.Second))
		for k, v := range s.Data {
			Expect(k).NotTo(ContainSubstring("APIKey"))
			Expect(string(v)).NotTo(ContainSubstring(`"d"`))
		}
		Expect(successes(srv, cf.ClientID())).To(BeEquivalentTo(1))

		c := getCredential(ctx, ns, "cred")
		Expect(c.Status.ObservedGeneration).To(Equal(c.Generation))
		Expect(c.Status.ExpiresAt.Time).To(BeTemporally("~", expiresAt, time.Second))
		Expect(c.Status.RenewalTime.Time).To(BeTemporally("<", expiresAt.Add(-19*time.Minute)))
		Expect(c.Status.TokenEndpoint).To(Equal(srv.TokenEndpoint()))
		Expect(c.Status.KeyID).To(Equal(cf.KeyID))
		Expect(c.Status.FailedAttempts).To(BeZero())
		Expect(eventReasons(ctx, ns, "cred")).To(ContainElement(EventMinted))

		By("exposing metrics for the credential")
		Expect(gaugeValue("clearance_credential_ready", ns, "cred")).To(Equal(1.0))
		Expect(gaugeValue("clearance_token_expiration_timestamp_seconds", ns, "cred")).To(BeNumerically("~", float64(expiresAt.Unix()), 1))

		By("not minting again while nothing changes")
		Consistently(func() int64 { return successes(srv, cf.ClientID()) }, 3*time.Second).Should(BeEquivalentTo(1))
		expectNoSecretMaterial(ctx, ns, cf, token)

		By("deleting the series when the credential is deleted")
		Expect(k8sClient.Delete(ctx, getCredential(ctx, ns, "cred"))).To(Succeed())
		Eventually(func() bool { _, ok := gaugeLookup("clearance_credential_ready", ns, "cred"); return ok }).Should(BeFalse())
	})

	It("renews short-lived tokens before they expire, with one token request per renewal", func(ctx context.Context) {
		ns := newNamespace(ctx)
		// 9 s tokens renew after ~5.4-6 s, leaving ~3 s of margin even on a loaded machine.
		srv := newEmulator(clearancetest.WithTokenTTL(9 * time.Second))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, ns, "conn", cf.Data)
		createCredential(ctx, ns, "cred", "conn", "token")
		eventuallyReady(ctx, ns, "cred", "token")

		seen := map[string]bool{}
		deadline := time.Now().Add(16 * time.Second)
		for time.Now().Before(deadline) {
			s, err := getSecret(ctx, ns, "token")
			Expect(err).NotTo(HaveOccurred())
			exp, err := time.Parse(time.RFC3339, string(s.Data["expiresAt"]))
			Expect(err).NotTo(HaveOccurred())
			Expect(time.Now()).To(BeTemporally("<", exp), "a stored token had expired")
			seen[string(s.Data["token"])] = true
			time.Sleep(200 * time.Millisecond)
		}
		Expect(len(seen)).To(BeNumerically(">=", 3), "expected at least two renewals")
		// Every request produced exactly one stored token (allow the one in flight).
		Expect(successes(srv, cf.ClientID())).To(BeNumerically(">=", len(seen)))
		Expect(successes(srv, cf.ClientID())).To(BeNumerically("<=", len(seen)+1))
		Expect(requests(srv, cf.ClientID())).To(Equal(successes(srv, cf.ClientID())))
		Expect(eventReasons(ctx, ns, "cred")).To(ContainElement(EventRenewed))
		// One status patch per stored token (allow the one in flight): the
		// reconcile our own Secret write brings back must not patch the same
		// status again from a cache that has not seen the first patch.
		Expect(statusPatches.of(ns, "cred")).To(BeNumerically("<=", len(seen)+1))
	})

	It("keeps the last good token through an STS outage and recovers when it returns", func(ctx context.Context) {
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(8 * time.Second))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, ns, "conn", cf.Data)
		createCredential(ctx, ns, "cred", "conn", "token")
		token := eventuallyReady(ctx, ns, "cred", "token")
		Expect(srv.InjectFault(clearancetest.FaultServerError(http.StatusServiceUnavailable))).To(Succeed())

		By("reporting Degraded while the stored token is valid")
		Eventually(func() metav1.Condition { return condition(ctx, ns, "cred", clearancev1alpha1.ConditionDegraded) }).
			WithTimeout(15 * time.Second).Should(haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonSTSUnavailable))
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady)).To(HaveField("Status", metav1.ConditionTrue))
		s, err := getSecret(ctx, ns, "token")
		Expect(err).NotTo(HaveOccurred())
		Expect(string(s.Data["token"])).To(Equal(token), "the last good token stays")

		c := getCredential(ctx, ns, "cred")
		Expect(c.Status.FailedAttempts).To(BeNumerically(">=", 1))
		Expect(c.Status.LastFailureTime).NotTo(BeNil())
		Expect(c.Status.NextAttemptTime).NotTo(BeNil())
		Expect(c.Status.RenewalTime).To(BeNil(), "a cleared field leaves the stored status")
		Expect(eventReasons(ctx, ns, "cred")).To(ContainElement(EventMintFailed))

		By("recovering when the STS comes back")
		srv.ClearFaults()
		Eventually(func() metav1.ConditionStatus {
			return condition(ctx, ns, "cred", clearancev1alpha1.ConditionDegraded).Status
		}).
			WithTimeout(20 * time.Second).Should(BeEmpty())
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady)).To(haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid))
		c = getCredential(ctx, ns, "cred")
		Expect(c.Status.FailedAttempts).To(BeZero())
		Expect(c.Status.LastFailureTime).To(BeNil())
		Expect(c.Status.RenewalTime).NotTo(BeNil())
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionDegraded).Status).To(BeEmpty())
		expectNoSecretMaterial(ctx, ns, cf, token)
	})

	It("stalls on a rejected credential without hammering, and retries at once when the connection Secret is fixed", func(ctx context.Context) {
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		revoked := newConnectionFile(srv)
		Expect(srv.Revoke(revoked.ClientID())).To(BeTrue())
		conn := createConnectionSecret(ctx, ns, "conn", revoked.Data)
		createCredential(ctx, ns, "cred", "conn", "token")

		Eventually(func() metav1.Condition { return condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady) }).
			Should(haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonCredentialRejected))
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionStalled)).To(haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonCredentialRejected))
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady).Message).To(ContainSubstring("invalid_client"))
		Consistently(func() int64 { return requests(srv, revoked.ClientID()) }, time.Second).Should(BeEquivalentTo(1))

		good := newConnectionFile(srv)
		conn.Data[clearancev1alpha1.DefaultConnectionSecretKey] = good.Data
		Expect(k8sClient.Update(ctx, conn)).To(Succeed())
		eventuallyReady(ctx, ns, "cred", "token")
		Expect(successes(srv, good.ClientID())).To(BeEquivalentTo(1))
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionStalled).Status).To(BeEmpty())
		expectNoSecretMaterial(ctx, ns, revoked)
	})

	It("re-mints at once when the connection Secret is rotated, keeping the old token until then", func(ctx context.Context) {
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		first := newConnectionFile(srv)
		conn := createConnectionSecret(ctx, ns, "conn", first.Data)
		createCredential(ctx, ns, "cred", "conn", "token")
		oldToken := eventuallyReady(ctx, ns, "cred", "token")

		second := newConnectionFile(srv)
		conn.Data[clearancev1alpha1.DefaultConnectionSecretKey] = second.Data
		Expect(k8sClient.Update(ctx, conn)).To(Succeed())
		Eventually(func() string {
			s, _ := getSecret(ctx, ns, "token")
			return string(s.Data["clientId"])
		}).Should(Equal(second.ClientID()))
		s, err := getSecret(ctx, ns, "token")
		Expect(err).NotTo(HaveOccurred())
		Expect(string(s.Data["token"])).NotTo(Equal(oldToken))
		Expect(successes(srv, second.ClientID())).To(BeEquivalentTo(1))
		Expect(successes(srv, first.ClientID())).To(BeEquivalentTo(1))

		By("not minting for a connection Secret change that leaves the file as it is")
		conn = &corev1.Secret{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "conn"}, conn)).To(Succeed())
		conn.Labels = map[string]string{"touched": "yes"}
		Expect(k8sClient.Update(ctx, conn)).To(Succeed())
		Consistently(func() int64 { return successes(srv, second.ClientID()) }, 3*time.Second).Should(BeEquivalentTo(1))
	})

	It("restores a deleted or edited target Secret", func(ctx context.Context) {
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, ns, "conn", cf.Data)
		createCredential(ctx, ns, "cred", "conn", "token")
		eventuallyReady(ctx, ns, "cred", "token")

		s, err := getSecret(ctx, ns, "token")
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Delete(ctx, s)).To(Succeed())
		Eventually(func() error { _, err := getSecret(ctx, ns, "token"); return err }).Should(Succeed())
		Eventually(func() int64 { return successes(srv, cf.ClientID()) }).Should(BeEquivalentTo(2))

		s, err = getSecret(ctx, ns, "token")
		Expect(err).NotTo(HaveOccurred())
		s.Data["token"] = []byte("tampered")
		Expect(k8sClient.Update(ctx, s)).To(Succeed())
		Eventually(func() string {
			s, _ := getSecret(ctx, ns, "token")
			return string(s.Data["token"])
		}).ShouldNot(Equal("tampered"))
		Eventually(func() int64 { return successes(srv, cf.ClientID()) }).Should(BeEquivalentTo(3))
	})

	It("never overwrites a Secret it does not control", func(ctx context.Context) {
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, ns, "conn", cf.Data)
		foreign := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "token", Namespace: ns},
			Data:       map[string][]byte{"mine": []byte("keep me")},
		}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())
		createCredential(ctx, ns, "cred", "conn", "token")
		Eventually(func() metav1.Condition { return condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady) }).
			Should(haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonTargetConflict))
		Expect(eventReasons(ctx, ns, "cred")).To(ContainElement(EventTargetConflict))
		Consistently(func() map[string][]byte {
			s, _ := getSecret(ctx, ns, "token")
			return s.Data
		}, 2*time.Second).Should(Equal(map[string][]byte{"mine": []byte("keep me")}))
		Expect(requests(srv, cf.ClientID())).To(BeZero())

		By("a second credential naming the same managed target gets TargetConflict too")
		createCredential(ctx, ns, "first", "conn", "shared")
		eventuallyReady(ctx, ns, "first", "shared")
		createCredential(ctx, ns, "second", "conn", "shared")
		Eventually(func() metav1.Condition { return condition(ctx, ns, "second", clearancev1alpha1.ConditionReady) }).
			Should(haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonTargetConflict))

		By("taking over once the foreign Secret is gone")
		Expect(k8sClient.Delete(ctx, foreign)).To(Succeed())
		eventuallyReady(ctx, ns, "cred", "token")
	})

	It("reports a missing connection Secret and picks it up when it appears", func(ctx context.Context) {
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		createCredential(ctx, ns, "cred", "conn", "token")
		Eventually(func() metav1.Condition { return condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady) }).
			Should(haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonConnectionSecretNotFound))
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))

		By("naming the missing key")
		bad := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "conn", Namespace: ns}, Data: map[string][]byte{"other": []byte("x")}}
		Expect(k8sClient.Create(ctx, bad)).To(Succeed())
		Eventually(func() string { return condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady).Message }).
			Should(ContainSubstring(`has no key "config.json"`))

		By("reporting an invalid connection file without echoing it")
		bad.Data = map[string][]byte{"config.json": []byte(`{"ServicePrincipalId": "s3cr3t-marker", `)}
		Expect(k8sClient.Update(ctx, bad)).To(Succeed())
		Eventually(func() metav1.Condition { return condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady) }).
			Should(haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonConnectionInvalid))
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady).Message).NotTo(ContainSubstring("s3cr3t-marker"))

		cf := newConnectionFile(srv)
		bad.Data = map[string][]byte{"config.json": cf.Data}
		Expect(k8sClient.Update(ctx, bad)).To(Succeed())
		eventuallyReady(ctx, ns, "cred", "token")
	})

	It("re-mints once per new refresh annotation value", func(ctx context.Context) {
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, ns, "conn", cf.Data)
		createCredential(ctx, ns, "cred", "conn", "token")
		first := eventuallyReady(ctx, ns, "cred", "token")

		By("forcing exactly one re-mint per new annotation value")
		c := getCredential(ctx, ns, "cred")
		c.Annotations = map[string]string{clearancev1alpha1.RefreshRequestedAtAnnotation: "2026-11-29T00:00:00Z"}
		Expect(k8sClient.Update(ctx, c)).To(Succeed())
		Eventually(func() int64 { return successes(srv, cf.ClientID()) }).Should(BeEquivalentTo(2))
		Consistently(func() int64 { return successes(srv, cf.ClientID()) }, time.Second).Should(BeEquivalentTo(2))
		s, err := getSecret(ctx, ns, "token")
		Expect(err).NotTo(HaveOccurred())
		Expect(string(s.Data["token"])).NotTo(Equal(first))
	})

	It("applies secretTemplate and renewBefore changes without a new token", func(ctx context.Context) {
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, ns, "conn", cf.Data)
		createCredential(ctx, ns, "cred", "conn", "token")
		eventuallyReady(ctx, ns, "cred", "token")
		c := getCredential(ctx, ns, "cred")
		c.Spec.SecretTemplate = &clearancev1alpha1.SecretTemplate{Labels: map[string]string{"added": "later"}}
		Expect(k8sClient.Update(ctx, c)).To(Succeed())
		Eventually(func() map[string]string { s, _ := getSecret(ctx, ns, "token"); return s.Labels }).Should(HaveKeyWithValue("added", "later"))
		Expect(successes(srv, cf.ClientID())).To(BeEquivalentTo(1))
	})

	It("renews at half the lifetime when renewBefore is not shorter than it, and says so", func(ctx context.Context) {
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, ns, "conn", cf.Data)
		createCredential(ctx, ns, "cred", "conn", "token", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.RenewBefore = &metav1.Duration{Duration: 2 * time.Hour}
		})
		eventuallyReady(ctx, ns, "cred", "token")
		ready := condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady)
		Expect(ready.Reason).To(Equal(clearancev1alpha1.ReasonRenewBeforeTooLong))
		c := getCredential(ctx, ns, "cred")
		lifetime := time.Until(c.Status.ExpiresAt.Time)
		Expect(time.Until(c.Status.RenewalTime.Time)).To(BeNumerically("~", lifetime/2, 7*time.Minute))
	})

	It("caches no Secret outside the managed label", func(ctx context.Context) {
		ns := newNamespace(ctx)
		unrelated := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: ns}, Data: map[string][]byte{"k": []byte("v")}}
		Expect(k8sClient.Create(ctx, unrelated)).To(Succeed())
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, ns, "conn", cf.Data)
		createCredential(ctx, ns, "cred", "conn", "token")
		eventuallyReady(ctx, ns, "cred", "token")

		cached := &corev1.SecretList{}
		Expect(mgr.mgr.GetCache().List(ctx, cached)).To(Succeed())
		Expect(cached.Items).NotTo(BeEmpty())
		for _, s := range cached.Items {
			Expect(s.Data).To(HaveKey(dataTokenState), "Secret %s/%s is cached in full", s.Namespace, s.Name)
			Expect(s.Data).NotTo(HaveKey(clearancev1alpha1.SecretKeyToken))
			Expect(s.Labels).To(BeEmpty(), "labels are not needed once the label selector has picked the Secret")
			Expect(s.ManagedFields).To(BeEmpty())
		}
		names := []string{}
		for _, s := range cached.Items {
			names = append(names, s.Namespace+"/"+s.Name)
		}
		Expect(names).To(ContainElement(ns + "/token"))
		Expect(names).NotTo(ContainElement(ns + "/conn"))
		Expect(names).NotTo(ContainElement(ns + "/unrelated"))
	})
})

var _ = Describe("Manager restart", Ordered, func() {
	It("does not re-mint valid tokens after a restart", func(ctx context.Context) {
		mgr := startManager()
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		var clients []string
		for _, name := range []string{"a", "b", "c"} {
			cf := newConnectionFile(srv)
			clients = append(clients, cf.ClientID())
			createConnectionSecret(ctx, ns, "conn-"+name, cf.Data)
			createCredential(ctx, ns, name, "conn-"+name, "token-"+name)
		}
		for _, name := range []string{"a", "b", "c"} {
			eventuallyReady(ctx, ns, name, "token-"+name)
		}
		mgr.stop()
		before := srv.Stats().TokenRequests
		renewal := getCredential(ctx, ns, "a").Status.RenewalTime

		mgr = startManager()
		defer mgr.stop()
		Consistently(func() int64 { return srv.Stats().TokenRequests }, 5*time.Second).Should(Equal(before))
		for _, name := range []string{"a", "b", "c"} {
			Expect(condition(ctx, ns, name, clearancev1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		}
		Expect(getCredential(ctx, ns, "a").Status.RenewalTime).To(Equal(renewal), "the schedule comes from what is stored")
		for _, id := range clients {
			Expect(successes(srv, id)).To(BeEquivalentTo(1))
		}
	})
})

func gaugeLookup(name, ns, cred string) (float64, bool) {
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ns && labels["name"] == cred {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func gaugeValue(name, ns, cred string) float64 {
	v, ok := gaugeLookup(name, ns, cred)
	Expect(ok).To(BeTrue(), "no %s series for %s/%s", name, ns, cred)
	return v
}

var _ = Describe("Renewal spread", Ordered, func() {
	It("spreads the first renewals of credentials created together over most of the renewal period", func(ctx context.Context) {
		mgr := startManager(func(s *managerSetup) { s.opts.RenewalSpread = DefaultRenewalSpread })
		defer mgr.stop()
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		const n = 20
		for i := range n {
			cf := newConnectionFile(srv)
			name := fmt.Sprintf("c%d", i)
			createConnectionSecret(ctx, ns, "conn-"+name, cf.Data)
			createCredential(ctx, ns, name, "conn-"+name, "token-"+name)
		}
		var after []time.Duration // renewal time after issue, per credential
		for i := range n {
			name := fmt.Sprintf("c%d", i)
			eventuallyReady(ctx, ns, name, "token-"+name)
			c := getCredential(ctx, ns, name)
			issued := c.Status.ExpiresAt.Add(-time.Hour)
			after = append(after, c.Status.RenewalTime.Sub(issued))
		}
		// Default renewal at 40 min (a third before expiry), spread over 75%
		// of it: [10 min, 40 min]. With the 10% jitter alone all would fall
		// in [34 min, 40 min]; 20 uniform draws all above 25 min has odds of
		// one in a million.
		Expect(after).To(HaveEach(And(BeNumerically(">=", 10*time.Minute-2*time.Second), BeNumerically("<=", 40*time.Minute+time.Second))))
		Expect(slices.Min(after)).To(BeNumerically("<", 25*time.Minute), "renewals spread: %v", after)
		Expect(slices.Max(after)).To(BeNumerically(">", 25*time.Minute), "renewals spread: %v", after)
	})
})

var _ = Describe("Status write", func() {
	It("is refused with a conflict when computed from an older copy, and applied from the current one", func(ctx context.Context) {
		ns := newNamespace(ctx)
		createCredential(ctx, ns, "cred", "conn", "token")
		stale := getCredential(ctx, ns, "cred")
		current := stale.DeepCopy()
		current.Annotations = map[string]string{"example.com/edited": "yes"}
		Expect(k8sClient.Update(ctx, current)).To(Succeed())

		r := newReconciler(k8sClient, k8sClient, k8sClient, nil, Options{}.withDefaults())
		status := clearancev1alpha1.ClearanceCredentialStatus{FailedAttempts: 7}
		Expect(apierrors.IsConflict(r.writeStatus(ctx, stale, status))).To(BeTrue(), "a stale copy's status must not land")
		Expect(getCredential(ctx, ns, "cred").Status.FailedAttempts).To(BeZero())

		Expect(r.writeStatus(ctx, current, status)).To(Succeed())
		Expect(getCredential(ctx, ns, "cred").Status.FailedAttempts).To(BeEquivalentTo(7))
	})
})
