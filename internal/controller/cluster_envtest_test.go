package controller

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

var _ = Describe("ClusterClearanceCredential controller", Ordered, func() {
	var (
		mgr *runningManager
		// operatorNS is the cluster resource namespace.
		operatorNS string
	)
	BeforeAll(func(ctx context.Context) {
		operatorNS = newNamespace(ctx)
		mgr = startManager(func(s *managerSetup) { s.opts.ClusterResourceNamespace = operatorNS })
	})
	AfterAll(func() { mgr.stop() })

	// labelledNamespaces creates n namespaces carrying label.
	labelledNamespaces := func(ctx context.Context, n int, label map[string]string) []string {
		var names []string
		for range n {
			ns := "c-" + rand.String(8)
			Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: label}})).To(Succeed())
			names = append(names, ns)
		}
		return names
	}
	createCluster := func(ctx context.Context, name, conn, target string, selector map[string]string, mutate ...func(*clearancev1alpha1.ClusterClearanceCredential)) *clearancev1alpha1.ClusterClearanceCredential {
		cc := &clearancev1alpha1.ClusterClearanceCredential{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: clearancev1alpha1.ClusterClearanceCredentialSpec{
				ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: conn},
				SecretName:          target,
				NamespaceSelector:   &metav1.LabelSelector{MatchLabels: selector},
			},
		}
		for _, m := range mutate {
			m(cc)
		}
		Expect(k8sClient.Create(ctx, cc)).To(Succeed())
		DeferCleanup(func(ctx context.Context) { _ = k8sClient.Delete(ctx, cc) })
		return cc
	}
	getCluster := func(ctx context.Context, name string) *clearancev1alpha1.ClusterClearanceCredential {
		cc := &clearancev1alpha1.ClusterClearanceCredential{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: name}, cc)).To(Succeed())
		return cc
	}
	clusterCondition := func(ctx context.Context, name, condType string) metav1.Condition {
		if c := meta.FindStatusCondition(getCluster(ctx, name).Status.Conditions, condType); c != nil {
			return *c
		}
		return metav1.Condition{}
	}
	// tokensIn returns the token of the target Secret per namespace ("" when absent).
	tokensIn := func(ctx context.Context, namespaces []string, target string) map[string]string {
		out := map[string]string{}
		for _, ns := range namespaces {
			s, err := getSecret(ctx, ns, target)
			if err == nil {
				out[ns] = string(s.Data[clearancev1alpha1.SecretKeyToken])
			} else {
				out[ns] = ""
			}
		}
		return out
	}
	// sameToken succeeds when every namespace holds one and the same non-empty token, and returns it.
	sameToken := func(g Gomega, tokens map[string]string) string {
		var first string
		for ns, t := range tokens {
			g.Expect(t).NotTo(BeEmpty(), "no token in %s", ns)
			if first == "" {
				first = t
			}
			g.Expect(t).To(Equal(first), "namespace %s holds another token", ns)
		}
		return first
	}

	It("mints one token per renewal for 50 namespaces and writes it to all of them", func(ctx context.Context) {
		srv := newEmulator(clearancetest.WithTokenTTL(12 * time.Second))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, operatorNS, "conn-50", cf.Data)
		label := map[string]string{"clearance-test": rand.String(8)}
		namespaces := labelledNamespaces(ctx, 50, label)
		createCluster(ctx, "fifty", "conn-50", "clearance-token", label)

		var first string
		Eventually(func(g Gomega) { first = sameToken(g, tokensIn(ctx, namespaces, "clearance-token")) }).
			WithTimeout(30 * time.Second).Should(Succeed())
		Expect(successes(srv, cf.ClientID())).To(BeEquivalentTo(1))
		Eventually(func() metav1.Condition { return clusterCondition(ctx, "fifty", clearancev1alpha1.ConditionReady) }).
			Should(haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid))
		Eventually(func() int32 { return getCluster(ctx, "fifty").Status.WrittenNamespaces }).Should(BeEquivalentTo(50))
		cc := getCluster(ctx, "fifty")
		Expect(cc.Status.SelectedNamespaces).To(BeEquivalentTo(50))
		Expect(cc.Status.ConflictingNamespaceCount).To(BeZero())

		By("exposing the cluster credential's series, which have a name and no namespace")
		Eventually(func() float64 {
			v, _ := gaugeLookup("clearance_cluster_credential_written_namespaces", "", "fifty")
			return v
		}).Should(Equal(50.0))
		Expect(gaugeValue("clearance_cluster_credential_ready", "", "fifty")).To(Equal(1.0))
		Expect(gaugeValue("clearance_cluster_credential_selected_namespaces", "", "fifty")).To(Equal(50.0))
		Expect(gaugeValue("clearance_cluster_credential_conflicting_namespaces", "", "fifty")).To(BeZero())
		Expect(gaugeValue("clearance_cluster_token_expiration_timestamp_seconds", "", "fifty")).To(BeNumerically(">", float64(time.Now().Unix())))

		s, err := getSecret(ctx, namespaces[0], "clearance-token")
		Expect(err).NotTo(HaveOccurred())
		expiresAt, err := time.Parse(time.RFC3339, string(s.Data[clearancev1alpha1.SecretKeyExpiresAt]))
		Expect(err).NotTo(HaveOccurred())
		Expect(expiresAt).To(BeTemporally(">", time.Now()))
		Expect(s.Data).To(HaveKeyWithValue(clearancev1alpha1.SecretKeyClientID, []byte(cf.ClientID())))

		By("renewing once for all of them")
		Eventually(func(g Gomega) {
			renewed := sameToken(g, tokensIn(ctx, namespaces, "clearance-token"))
			g.Expect(renewed).NotTo(Equal(first))
		}).WithTimeout(20 * time.Second).Should(Succeed())
		Expect(successes(srv, cf.ClientID())).To(BeEquivalentTo(2), "one request per renewal")
		Expect(requests(srv, cf.ClientID())).To(Equal(successes(srv, cf.ClientID())))
		Consistently(func(g Gomega) { sameToken(g, tokensIn(ctx, namespaces, "clearance-token")) }, 2*time.Second).Should(Succeed())

		By("controlling every Secret, so the garbage collector deletes them with the credential")
		cc = getCluster(ctx, "fifty")
		for _, ns := range namespaces {
			s, err := getSecret(ctx, ns, "clearance-token")
			Expect(err).NotTo(HaveOccurred())
			ref := metav1.GetControllerOf(s)
			Expect(ref).NotTo(BeNil())
			Expect(ref.Kind).To(Equal("ClusterClearanceCredential"))
			Expect(ref.APIVersion).To(Equal(clearancev1alpha1.GroupVersion.String()))
			Expect(ref.UID).To(Equal(cc.UID))
			Expect(ref.BlockOwnerDeletion).To(HaveValue(BeTrue()))
			Expect(s.Labels).To(HaveKeyWithValue(clearancev1alpha1.ManagedByLabel, clearancev1alpha1.ManagedByValue))
		}
		Expect(eventReasons(ctx, metav1.NamespaceDefault, "fifty")).To(BeEmpty(), "events name the cluster kind")
	})

	It("follows the selection: a namespace labelled later gets the current token without a request, an unlabelled one loses it", func(ctx context.Context) {
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, operatorNS, "conn-sel", cf.Data)
		label := map[string]string{"clearance-test": rand.String(8)}
		namespaces := labelledNamespaces(ctx, 3, label)
		createCluster(ctx, "selection", "conn-sel", "shared-token", label, func(cc *clearancev1alpha1.ClusterClearanceCredential) {
			cc.Spec.SecretTemplate = &clearancev1alpha1.SecretTemplate{Data: map[string]string{"authorization": "Bearer {{ .Token }}"}}
		})
		var token string
		Eventually(func(g Gomega) { token = sameToken(g, tokensIn(ctx, namespaces, "shared-token")) }).
			WithTimeout(20 * time.Second).Should(Succeed())
		Expect(successes(srv, cf.ClientID())).To(BeEquivalentTo(1))

		By("labelling a namespace")
		later := labelledNamespaces(ctx, 1, nil)[0]
		Eventually(func() error {
			ns := &corev1.Namespace{}
			if err := k8sClient.Get(ctx, types.NamespacedName{Name: later}, ns); err != nil {
				return err
			}
			ns.Labels = label
			return k8sClient.Update(ctx, ns)
		}).Should(Succeed())
		labelled := time.Now()
		Eventually(func() string { return tokensIn(ctx, []string{later}, "shared-token")[later] }).
			WithTimeout(5 * time.Second).WithPolling(50 * time.Millisecond).Should(Equal(token))
		GinkgoWriter.Printf("labelled namespace got the token after %s\n", time.Since(labelled))
		s, err := getSecret(ctx, later, "shared-token")
		Expect(err).NotTo(HaveOccurred())
		Expect(string(s.Data["authorization"])).To(Equal("Bearer " + token))
		Expect(requests(srv, cf.ClientID())).To(BeEquivalentTo(1), "no token request for a new namespace")
		Eventually(func() int32 { return getCluster(ctx, "selection").Status.WrittenNamespaces }).Should(BeEquivalentTo(4))

		By("naming a namespace in spec.namespaces")
		named := labelledNamespaces(ctx, 1, nil)[0]
		Eventually(func() error {
			cc := getCluster(ctx, "selection")
			cc.Spec.Namespaces = []string{named}
			return k8sClient.Update(ctx, cc)
		}).Should(Succeed())
		Eventually(func() string { return tokensIn(ctx, []string{named}, "shared-token")[named] }).Should(Equal(token))

		By("unlabelling a namespace")
		Eventually(func() error {
			ns := &corev1.Namespace{}
			if err := k8sClient.Get(ctx, types.NamespacedName{Name: namespaces[0]}, ns); err != nil {
				return err
			}
			ns.Labels = nil
			return k8sClient.Update(ctx, ns)
		}).Should(Succeed())
		Eventually(func() error { _, err := getSecret(ctx, namespaces[0], "shared-token"); return err }).
			WithTimeout(5 * time.Second).Should(MatchError(ContainSubstring("not found")))
		Eventually(func() int32 { return getCluster(ctx, "selection").Status.SelectedNamespaces }).Should(BeEquivalentTo(4))

		By("restoring a deleted Secret from the others, without a request")
		s, err = getSecret(ctx, namespaces[1], "shared-token")
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Delete(ctx, s)).To(Succeed())
		Eventually(func() string { return tokensIn(ctx, []string{namespaces[1]}, "shared-token")[namespaces[1]] }).Should(Equal(token))
		Expect(requests(srv, cf.ClientID())).To(BeEquivalentTo(1))
	})

	It("leaves a foreign Secret alone and keeps the other namespaces renewing", func(ctx context.Context) {
		srv := newEmulator(clearancetest.WithTokenTTL(9 * time.Second))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, operatorNS, "conn-conflict", cf.Data)
		label := map[string]string{"clearance-test": rand.String(8)}
		namespaces := labelledNamespaces(ctx, 4, label)
		foreign := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "app-token", Namespace: namespaces[2]},
			Data:       map[string][]byte{"mine": []byte("keep me")},
		}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())
		createCluster(ctx, "conflict", "conn-conflict", "app-token", label)

		others := []string{namespaces[0], namespaces[1], namespaces[3]}
		var first string
		Eventually(func(g Gomega) { first = sameToken(g, tokensIn(ctx, others, "app-token")) }).WithTimeout(20 * time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			cc := getCluster(ctx, "conflict")
			g.Expect(cc.Status.ConflictingNamespaceCount).To(BeEquivalentTo(1))
			g.Expect(cc.Status.ConflictingNamespaces).To(Equal([]string{namespaces[2]}))
			g.Expect(cc.Status.WrittenNamespaces).To(BeEquivalentTo(3))
		}).Should(Succeed())
		Expect(clusterCondition(ctx, "conflict", clearancev1alpha1.ConditionDegraded)).To(haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonTargetConflict))
		Expect(clusterCondition(ctx, "conflict", clearancev1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))

		By("renewing the others while the foreign Secret stays as it is")
		Eventually(func(g Gomega) {
			g.Expect(sameToken(g, tokensIn(ctx, others, "app-token"))).NotTo(Equal(first))
		}).WithTimeout(15 * time.Second).Should(Succeed())
		s, err := getSecret(ctx, namespaces[2], "app-token")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Data).To(Equal(map[string][]byte{"mine": []byte("keep me")}))
		Expect(metav1.GetControllerOf(s)).To(BeNil())

		By("taking the namespace once the foreign Secret is gone")
		Expect(k8sClient.Delete(ctx, foreign)).To(Succeed())
		Eventually(func(g Gomega) { sameToken(g, tokensIn(ctx, namespaces, "app-token")) }).Should(Succeed())
		Eventually(func() metav1.Condition { return clusterCondition(ctx, "conflict", clearancev1alpha1.ConditionDegraded) }).Should(HaveField("Status", BeEmpty()))
	})

	It("reads the connection Secret only from the cluster resource namespace", func(ctx context.Context) {
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(srv)
		label := map[string]string{"clearance-test": rand.String(8)}
		namespaces := labelledNamespaces(ctx, 1, label)
		// A Secret of that name elsewhere is never read.
		createConnectionSecret(ctx, namespaces[0], "conn-elsewhere", cf.Data)
		createCluster(ctx, "elsewhere", "conn-elsewhere", "tok", label)
		Eventually(func() metav1.Condition { return clusterCondition(ctx, "elsewhere", clearancev1alpha1.ConditionReady) }).
			Should(haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonConnectionSecretNotFound))
		Expect(clusterCondition(ctx, "elsewhere", clearancev1alpha1.ConditionReady).Message).To(ContainSubstring(fmt.Sprintf("namespace %q", operatorNS)))
		Expect(requests(srv, cf.ClientID())).To(BeZero())

		By("reporting a selection that selects nothing")
		createConnectionSecret(ctx, operatorNS, "conn-none", cf.Data)
		createCluster(ctx, "none", "conn-none", "tok", map[string]string{"clearance-test": "nobody-" + rand.String(6)})
		Eventually(func() metav1.Condition { return clusterCondition(ctx, "none", clearancev1alpha1.ConditionReady) }).
			Should(haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonNoNamespacesSelected))
		Expect(requests(srv, cf.ClientID())).To(BeZero())
		list := &clearancev1alpha1.ClusterClearanceCredentialList{}
		Expect(k8sClient.List(ctx, list, client.Limit(1))).To(Succeed())
	})
})
