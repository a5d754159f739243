//go:build cluster

package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

const (
	release     = "clearance"
	operatorNS  = "clearance-system"
	appsNS      = "apps"
	leaseName   = "clearance-operator.clearance.dev"
	renewals    = 3
	fileReader  = "token-reader"
	envReader   = "tenant-reader"
	kustomizeNS = "clearance-operator-system" // config/default's namespace
)

var _ = Describe("the operator on a real node", Ordered, func() {
	var (
		cred    credential
		monitor *tokenMonitor
	)
	AfterAll(func() {
		if monitor != nil {
			monitor.stop()
		}
	})

	It("installs config/default with kustomize: the pod is Ready through its probes and serves a credential", func() {
		overlay := kustomizeOverlay()
		_, err := kubectl("apply", "--server-side", "-k", overlay)
		Expect(err).NotTo(HaveOccurred())
		expectRestrictedNamespace(kustomizeNS)
		expectOperatorReady(kustomizeNS, 1)

		createNamespace("kustomize-apps")
		c := createCredential("kustomize-apps", "kustomized")
		c.expectServed(time.Minute)

		_, err = kubectl("delete", "-k", overlay, "--wait=true", "--timeout=2m")
		Expect(err).NotTo(HaveOccurred())
		deleteNamespace(kustomizeNS)
		deleteNamespace("kustomize-apps")
	})

	It("installs the chart with helm into a restricted namespace: the pod is Ready through its probes", func() {
		createNamespace(operatorNS)
		_, err := helm(helmArgs("install", "--set", "replicas=1")...)
		Expect(err).NotTo(HaveOccurred())
		expectRestrictedNamespace(operatorNS)
		expectOperatorReady(operatorNS, 1)
	})

	It("gives a pod that mounts the token Secret a token valid at the STS, and a pod tenantId through env", func() {
		createNamespace(appsNS)
		applied := time.Now()
		cred = createCredential(appsNS, "app")
		monitor = newTokenMonitor(appsNS, cred.secretName, fileReader, cred.clientID)
		ctx, cancel := withTimeout(10 * time.Second)
		defer cancel()
		Expect(k8sClient.Create(ctx, fileConsumer(appsNS, fileReader, cred.secretName))).To(Succeed())
		Expect(k8sClient.Create(ctx, envConsumer(appsNS, envReader, cred.secretName))).To(Succeed())

		var firstRead time.Time
		Eventually(func(g Gomega) {
			a := monitor.analyse(g)
			a.expectHealthy(g)
			g.Expect(a.readTokens()).To(BeNumerically(">=", 1), "the pod has not read a token yet")
			firstRead = a.firstRead[0]
		}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
		report("apply of a ClearanceCredential and its consumer pod -> the pod reads a valid token: %s",
			firstRead.Sub(applied).Round(100*time.Millisecond))

		Eventually(func(g Gomega) []string {
			return podLog(g, appsNS, envReader)
		}).WithTimeout(time.Minute).WithPolling(time.Second).Should(ContainElement(HaveSuffix(" tenant " + emulator.Tenant())))
	})

	It("renews at least 3 times while the pod never reads an expired token, and sees each within the kubelet's delay", func() {
		var a analysis
		Eventually(func(g Gomega) {
			a = monitor.analyse(g)
			a.expectHealthy(g)
			g.Expect(a.readTokens()).To(BeNumerically(">", renewals), "tokens read so far: %d", a.readTokens())
		}).WithTimeout(time.Duration(renewals+2) * tokenTTL).WithPolling(2 * time.Second).Should(Succeed())
		ds := a.propagation()
		Expect(ds).To(HaveLen(a.readTokens() - 1))
		longest := ds[0]
		for _, d := range ds {
			longest = max(longest, d)
		}
		report("kubelet propagation delay (Secret update -> pod reads the new token) over %d renewals: max %s, median %s",
			len(ds), longest.Round(100*time.Millisecond), median(ds).Round(100*time.Millisecond))
		report("pod reads checked: %d, expired: 0", a.reads)
		// A renewed token must reach the pod well before the old one expires:
		// the default renewal margin covers the kubelet's refresh delay
		// (syncFrequency plus jitter) with room to spare.
		Expect(longest).To(BeNumerically("<", tokenTTL/3), "propagation delays %v", ds)
	})

	It("mints nothing that was not due when the operator pod is deleted", func() {
		before := freshToken(cred, monitor)
		mints := cred.mints()
		pods := expectOperatorReady(operatorNS, 1)
		ctx, cancel := withTimeout(10 * time.Second)
		defer cancel()
		Expect(k8sClient.Delete(ctx, &pods[0])).To(Succeed())

		var replacement corev1.Pod
		Eventually(func(g Gomega) {
			ps := expectOperatorReadyNow(g, operatorNS)
			g.Expect(ps[0].Name).NotTo(Equal(pods[0].Name))
			replacement = ps[0]
		}).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())
		// Its workers start once it leads and has listed every credential:
		// from then on, the credential is reconciled within moments.
		Eventually(func(g Gomega) string {
			return strings.Join(podLog(g, operatorNS, replacement.Name), "\n")
		}).WithTimeout(time.Minute).WithPolling(time.Second).Should(ContainSubstring("Starting workers"))
		Consistently(func(g Gomega) {
			g.Expect(cred.mints()).To(Equal(mints), "the new pod minted before the renewal was due")
			g.Expect(hashOf(cred.token(g))).To(Equal(before.hash))
		}).WithTimeout(15 * time.Second).WithPolling(time.Second).Should(Succeed())
		Expect(time.Now()).To(BeTemporally("<", renewalTime(cred)), "the check ran into the next due renewal; it proves nothing")
		GinkgoWriter.Printf("replacement pod %s minted nothing; the renewal is due in %s\n", replacement.Name, time.Until(renewalTime(cred)).Round(time.Second))
	})

	It("hands over to the other replica when the leader pod is deleted, and no token expires", func() {
		_, err := helm(helmArgs("upgrade", "--reuse-values", "--set", "replicas=2")...)
		Expect(err).NotTo(HaveOccurred())
		pods := expectOperatorReady(operatorNS, 2)
		leader := leaderPod(Default)
		Expect([]string{pods[0].Name, pods[1].Name}).To(ContainElement(leader))

		tokensBefore := len(monitor.snapshot())
		ctx, cancel := withTimeout(10 * time.Second)
		defer cancel()
		Expect(k8sClient.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: leader}})).To(Succeed())
		var successor string
		Eventually(func(g Gomega) {
			successor = leaderPod(g)
			g.Expect(successor).NotTo(Equal(leader))
			g.Expect(successor).NotTo(BeEmpty())
		}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
		GinkgoWriter.Printf("leader %s deleted; %s took over\n", leader, successor)

		// The successor renews: the pod reads a newer token, never an expired one.
		Eventually(func(g Gomega) {
			a := monitor.analyse(g)
			a.expectHealthy(g)
			g.Expect(a.readTokens()).To(BeNumerically(">", tokensBefore))
		}).WithTimeout(2 * tokenTTL).WithPolling(2 * time.Second).Should(Succeed())
	})

	It("deletes the token Secrets through the garbage collector when the credentials are deleted", func() {
		shared := createClusterCredential("shared", []string{"shared-a", "shared-b"})
		shared.expectServed(time.Minute)

		// Without a running operator only the garbage collector can delete them.
		_, err := kubectl("scale", "deployment", "--namespace", operatorNS, "--all", "--replicas=0")
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) []corev1.Pod {
			return operatorPods(g, operatorNS)
		}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(BeEmpty())
		Eventually(func(g Gomega) {
			ctx, cancel := withTimeout(10 * time.Second)
			defer cancel()
			pl := &corev1.PodList{}
			g.Expect(k8sClient.List(ctx, pl, client.InNamespace(operatorNS))).To(Succeed())
			g.Expect(pl.Items).To(BeEmpty())
		}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())

		c := cred.get(Default)
		secret := &corev1.Secret{}
		ctx, cancel := withTimeout(10 * time.Second)
		defer cancel()
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: appsNS, Name: cred.secretName}, secret)).To(Succeed())
		Expect(metav1.GetControllerOf(secret)).NotTo(BeNil())
		Expect(metav1.GetControllerOf(secret).UID).To(Equal(c.UID))

		cc := shared.get(Default)
		targets := []client.ObjectKey{{Namespace: appsNS, Name: cred.secretName}}
		for _, ns := range shared.namespaces {
			s := &corev1.Secret{}
			Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: shared.secretName}, s)).To(Succeed())
			Expect(metav1.GetControllerOf(s)).To(And(HaveField("Kind", "ClusterClearanceCredential"), HaveField("UID", cc.UID)))
			targets = append(targets, client.ObjectKeyFromObject(s))
		}

		Expect(k8sClient.Delete(ctx, c)).To(Succeed())
		Expect(k8sClient.Delete(ctx, cc)).To(Succeed())
		start := time.Now()
		for _, key := range targets {
			Eventually(func() bool {
				ctx, cancel := withTimeout(10 * time.Second)
				defer cancel()
				return apierrors.IsNotFound(k8sClient.Get(ctx, key, &corev1.Secret{}))
			}).WithTimeout(time.Minute).WithPolling(200*time.Millisecond).Should(BeTrue(), "the garbage collector left the token Secret %s", key)
		}
		GinkgoWriter.Printf("%d token Secrets garbage-collected %s after their credentials' deletion\n", len(targets), time.Since(start).Round(100*time.Millisecond))
	})

	It("does not serve a credential outside the chart's namespaces, by RBAC", func() {
		const elsewhere = "elsewhere"
		_, err := helm(helmArgs("upgrade", "--reuse-values", "--set", "replicas=1", "--set", "namespaces={"+appsNS+"}")...)
		Expect(err).NotTo(HaveOccurred())
		expectOperatorReady(operatorNS, 1)
		createNamespace(elsewhere)

		sa := "system:serviceaccount:" + operatorNS + ":" + release + "-clearance-operator"
		Expect(canI(sa, appsNS, "secrets", "create")).To(BeTrue(), "the operator may not write Secrets in its own namespace list")
		Expect(canI(sa, appsNS, "clearancecredentials", "list")).To(BeTrue())
		Expect(canI(sa, elsewhere, "secrets", "create")).To(BeFalse(), "the operator may write Secrets outside its namespaces")
		Expect(canI(sa, elsewhere, "secrets", "get")).To(BeFalse())
		Expect(canI(sa, elsewhere, "clearancecredentials", "list")).To(BeFalse())

		served := createCredential(appsNS, "served")
		ignored := createCredential(elsewhere, "ignored")
		served.expectServed(time.Minute)
		Consistently(func(g Gomega) {
			g.Expect(ignored.token(g)).To(BeEmpty(), "a credential outside the namespaces was served")
			g.Expect(ignored.mints()).To(BeZero())
			g.Expect(ignored.get(g).Status.Conditions).To(BeEmpty())
		}).WithTimeout(20 * time.Second).WithPolling(time.Second).Should(Succeed())
	})
})

// helmArgs are the arguments of `helm install|upgrade` of the chart with the
// built image (present on the node, so never pulled).
func helmArgs(verb string, extra ...string) []string {
	repo, tag, ok := strings.Cut(managerImage, ":")
	Expect(ok).To(BeTrue(), "image %s has no tag", managerImage)
	args := []string{verb, release, "charts/clearance-operator", "--namespace", operatorNS,
		"--set", "image.repository=" + repo, "--set", "image.tag=" + tag, "--set", "image.pullPolicy=Never"}
	for _, v := range stsHelmValues() {
		args = append(args, "--set", v)
	}
	return append(args, extra...)
}

// kustomizeOverlay writes an overlay of config/default that sets the built
// image and the STS policy flags the way a user's overlay would.
func kustomizeOverlay() string {
	dir := filepath.Join(workDir, "kustomize")
	Expect(os.MkdirAll(filepath.Join(dir, "overlay"), 0o700)).To(Succeed())
	out, err := run("cp", "-R", filepath.Join(testutil.RepoRoot(), "config"), dir)
	Expect(err).NotTo(HaveOccurred(), out)
	repo, tag, _ := strings.Cut(managerImage, ":")
	k := "resources:\n- ../config/default\nimages:\n- name: clearance-operator\n  newName: " + repo + "\n  newTag: " + tag + "\n"
	k += "patches:\n- target:\n    kind: Deployment\n  patch: |-\n"
	for _, a := range stsManagerArgs() {
		k += "    - op: add\n      path: /spec/template/spec/containers/0/args/-\n      value: " + a + "\n"
	}
	Expect(os.WriteFile(filepath.Join(dir, "overlay", "kustomization.yaml"), []byte(k), 0o600)).To(Succeed())
	return filepath.Join(dir, "overlay")
}

func expectRestrictedNamespace(name string) {
	ns := &corev1.Namespace{}
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	Expect(k8sClient.Get(ctx, client.ObjectKey{Name: name}, ns)).To(Succeed())
	Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
}

// expectOperatorReadyNow is expectOperatorReady's check for one pod, without waiting.
func expectOperatorReadyNow(g Gomega, namespace string) []corev1.Pod {
	pods := operatorPods(g, namespace)
	g.Expect(pods).To(HaveLen(1))
	g.Expect(isReady(pods[0])).To(BeTrue(), "pod %s not Ready: %s", pods[0].Name, podState(pods[0]))
	return pods
}

// freshToken waits until the Secret holds a token renewed so recently that
// the next renewal is more than a minute away, and the pod has read it.
func freshToken(c credential, m *tokenMonitor) observedToken {
	var latest observedToken
	Eventually(func(g Gomega) {
		a := m.analyse(g)
		a.expectHealthy(g)
		g.Expect(a.tokens).NotTo(BeEmpty())
		latest = a.tokens[len(a.tokens)-1]
		g.Expect(hashOf(c.token(g))).To(Equal(latest.hash))
		g.Expect(time.Until(renewalTime(c))).To(BeNumerically(">", time.Minute))
	}).WithTimeout(2 * tokenTTL).WithPolling(time.Second).Should(Succeed())
	return latest
}

// renewalTime is when the operator plans to renew the credential's token.
func renewalTime(c credential) time.Time {
	st := c.get(Default).Status
	Expect(st.RenewalTime).NotTo(BeNil())
	return st.RenewalTime.Time
}

// leaderPod returns the pod holding the leader election Lease (controller-
// runtime's identity is "<hostname>_<uuid>", the hostname being the pod name).
func leaderPod(g Gomega) string {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	lease := &coordinationv1.Lease{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: leaseName}, lease)).To(Succeed())
	g.Expect(lease.Spec.HolderIdentity).NotTo(BeNil())
	name, _, _ := strings.Cut(*lease.Spec.HolderIdentity, "_")
	return name
}

// canI asks the apiserver whether user may do verb on resource in namespace.
func canI(user, namespace, resource, verb string) bool {
	group := ""
	if resource == "clearancecredentials" {
		group = "clearance.dev"
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   user,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + operatorNS, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Verb: verb, Group: group, Resource: resource,
		},
	}}
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	Expect(k8sClient.Create(ctx, sar)).To(Succeed())
	return sar.Status.Allowed
}
