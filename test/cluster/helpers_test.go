//go:build cluster

package cluster

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// The manager refuses plain http and private STS addresses unless told
// otherwise; the emulator listens over http on the bridge, so both
// installs widen the policy to exactly the pods' subnet.

// stsHelmValues are the chart values that let the manager reach the emulator.
func stsHelmValues() []string {
	return []string{"sts.allowHTTP=true", fmt.Sprintf("sts.allowCIDRs={%s}", podCIDR)}
}

// stsManagerArgs are the same settings as manager flags, for kustomize.
func stsManagerArgs() []string {
	return []string{"--sts-allow-http", "--sts-allow-cidrs=" + podCIDR}
}

// commandTimeout bounds every kubectl and helm invocation.
const commandTimeout = 3 * time.Minute

// run runs a command with the admin kubeconfig and a private Helm home, and
// returns its standard output.
func run(bin string, args ...string) (string, error) {
	ctx, cancel := withTimeout(commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...) //nolint:gosec // test-controlled binaries and arguments
	cmd.Dir = testutil.RepoRoot()
	cmd.Env = append(os.Environ(),
		"KUBECACHEDIR="+filepath.Join(workDir, "kube-cache"),
		"HELM_CACHE_HOME="+filepath.Join(workDir, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(workDir, "helm", "config"),
		"HELM_DATA_HOME="+filepath.Join(workDir, "helm", "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func kubectl(args ...string) (string, error) { return run(kubectlBin, args...) }
func helm(args ...string) (string, error)    { return run(helmBin, args...) }

// createNamespace creates a namespace that enforces the restricted Pod
// Security Standard.
func createNamespace(name string) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	}}}
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
}

// deleteNamespace deletes a namespace and waits until it is gone.
func deleteNamespace(name string) {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, ns))).To(Succeed())
	Eventually(func() bool {
		ctx, cancel := withTimeout(10 * time.Second)
		defer cancel()
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Name: name}, &corev1.Namespace{}))
	}).WithTimeout(2*time.Minute).WithPolling(time.Second).Should(BeTrue(), "namespace %s not deleted", name)
}

// operatorPods lists the running (not terminating) operator pods of a namespace.
func operatorPods(g Gomega, namespace string) []corev1.Pod {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	list := &corev1.PodList{}
	sel := labels.SelectorFromSet(labels.Set{"app.kubernetes.io/name": "clearance-operator"})
	g.Expect(k8sClient.List(ctx, list, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: sel})).To(Succeed())
	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	return pods
}

// expectOperatorReady waits until exactly n operator pods run the built image
// and are Ready: their readiness probe (/readyz) passed on the node.
func expectOperatorReady(namespace string, n int) []corev1.Pod {
	var pods []corev1.Pod
	Eventually(func(g Gomega) {
		pods = operatorPods(g, namespace)
		g.Expect(pods).To(HaveLen(n))
		for _, p := range pods {
			g.Expect(p.Spec.Containers[0].Image).To(Equal(managerImage))
			g.Expect(p.Spec.Containers[0].ReadinessProbe).NotTo(BeNil())
			g.Expect(isReady(p)).To(BeTrue(), "pod %s not Ready: %s", p.Name, podState(p))
		}
	}).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())
	return pods
}

func isReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podState summarises a pod's phase and container states for failure messages.
func podState(p corev1.Pod) string {
	s := string(p.Status.Phase)
	for _, c := range p.Status.ContainerStatuses {
		switch {
		case c.State.Waiting != nil:
			s += fmt.Sprintf(" %s waiting: %s %s", c.Name, c.State.Waiting.Reason, c.State.Waiting.Message)
		case c.State.Terminated != nil:
			s += fmt.Sprintf(" %s terminated: %s (exit %d)", c.Name, c.State.Terminated.Reason, c.State.Terminated.ExitCode)
		case c.State.Running != nil:
			s += fmt.Sprintf(" %s running, ready=%t, restarts=%d", c.Name, c.Ready, c.RestartCount)
		}
	}
	return s
}

// credential is a ClearanceCredential with its own emulator client.
type credential struct {
	namespace, name, secretName string
	clientID                    string
}

// createCredential creates a connection Secret for a new emulator client
// whose STS address is the emulator on the bridge, and a ClearanceCredential
// using it.
func createCredential(namespace, name string) credential {
	cf, err := emulator.NewConnectionFile(clearancetest.WithSTSAddresses(stsBaseURL))
	Expect(err).NotTo(HaveOccurred())
	c := credential{namespace: namespace, name: name, clientID: cf.ClientID()}
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	c.secretName, err = testutil.CreateCredential(ctx, k8sClient, namespace, name, cf.Data)
	Expect(err).NotTo(HaveOccurred())
	return c
}

func (c credential) get(g Gomega) *clearancev1alpha1.ClearanceCredential {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	cred := &clearancev1alpha1.ClearanceCredential{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: c.namespace, Name: c.name}, cred)).To(Succeed())
	return cred
}

// clusterCredential is a ClusterClearanceCredential created by a spec, with
// its connection Secret in the operator's namespace (the chart's cluster
// resource namespace).
type clusterCredential struct {
	name, secretName string
	namespaces       []string
}

// createClusterCredential creates the namespaces and a cluster credential
// that names them, for a new client of the emulator.
func createClusterCredential(name string, namespaces []string) clusterCredential {
	for _, ns := range namespaces {
		createNamespace(ns)
	}
	cf, err := emulator.NewConnectionFile(clearancetest.WithSTSAddresses(stsBaseURL))
	Expect(err).NotTo(HaveOccurred())
	c := clusterCredential{name: name, secretName: name + "-token", namespaces: namespaces}
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	Expect(k8sClient.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: name + "-connection"},
		Data:       map[string][]byte{clearancev1alpha1.DefaultConnectionSecretKey: cf.Data},
	})).To(Succeed())
	Expect(k8sClient.Create(ctx, &clearancev1alpha1.ClusterClearanceCredential{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: clearancev1alpha1.ClusterClearanceCredentialSpec{
			ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: name + "-connection", Key: clearancev1alpha1.DefaultConnectionSecretKey},
			SecretName:          c.secretName,
			Namespaces:          namespaces,
		},
	})).To(Succeed())
	return c
}

func (c clusterCredential) get(g Gomega) *clearancev1alpha1.ClusterClearanceCredential {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	cc := &clearancev1alpha1.ClusterClearanceCredential{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: c.name}, cc)).To(Succeed())
	return cc
}

// expectServed waits until the Secret in every namespace holds the same
// token, one that the emulator accepts.
func (c clusterCredential) expectServed(timeout time.Duration) {
	Eventually(func(g Gomega) {
		var tokens []string
		for _, ns := range c.namespaces {
			tok := credential{namespace: ns, secretName: c.secretName}.token(g)
			g.Expect(tok).NotTo(BeEmpty(), "no token in %s/%s yet", ns, c.secretName)
			_, err := emulator.VerifyAccessToken(tok)
			g.Expect(err).NotTo(HaveOccurred())
			tokens = append(tokens, tok)
		}
		g.Expect(slices.Compact(tokens)).To(HaveLen(1), "the namespaces hold different tokens")
	}).WithTimeout(timeout).WithPolling(time.Second).Should(Succeed())
}

// token returns the token in the credential's Secret ("" while there is
// none). Never print it.
func (c credential) token(g Gomega) string {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	s := &corev1.Secret{}
	err := k8sClient.Get(ctx, client.ObjectKey{Namespace: c.namespace, Name: c.secretName}, s)
	if apierrors.IsNotFound(err) {
		return ""
	}
	g.Expect(err).NotTo(HaveOccurred())
	return string(s.Data["token"])
}

// expectServed waits until the credential's Secret holds a token that the
// emulator accepts as its own and unexpired.
func (c credential) expectServed(timeout time.Duration) {
	Eventually(func(g Gomega) {
		tok := c.token(g)
		g.Expect(tok).NotTo(BeEmpty(), "no token in %s/%s yet", c.namespace, c.secretName)
		at, err := emulator.VerifyAccessToken(tok)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(at.ClientID).To(Equal(c.clientID))
	}).WithTimeout(timeout).WithPolling(500 * time.Millisecond).Should(Succeed())
}

// mints is how many tokens the emulator issued to the credential's client.
func (c credential) mints() int64 {
	return emulator.Stats().Client(c.clientID, clearancetest.OutcomeSuccess)
}

// hashOf is how consumer pods report the token they read: its SHA-256, so
// that pod logs never hold the token.
func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// restrictedPod is a busybox pod that meets the restricted Pod Security Standard.
func restrictedPod(namespace, name, script string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To[int64](65532),
				RunAsGroup:     ptr.To[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            "consumer",
				Image:           busyboxImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"/bin/sh", "-c", script},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					ReadOnlyRootFilesystem:   ptr.To(true),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

// fileConsumer mounts the token Secret and prints the SHA-256 of the token
// file every second.
func fileConsumer(namespace, name, secretName string) *corev1.Pod {
	p := restrictedPod(namespace, name,
		`while true; do set -- $(busybox sha256sum /var/run/clearance/token); echo "read $1"; sleep 1; done`)
	p.Spec.Volumes = []corev1.Volume{{
		Name:         "token",
		VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secretName}},
	}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "token", MountPath: "/var/run/clearance", ReadOnly: true}}
	return p
}

// envConsumer takes tenantId from the token Secret as an environment
// variable and prints it.
func envConsumer(namespace, name, secretName string) *corev1.Pod {
	p := restrictedPod(namespace, name, `echo "tenant $TENANT_ID"; exec sleep 2147483647`)
	p.Spec.Containers[0].Env = []corev1.EnvVar{{
		Name: "TENANT_ID",
		ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: "tenantId",
		}},
	}}
	return p
}

// podLog returns a pod's log lines, each prefixed by the runtime's timestamp.
func podLog(g Gomega, namespace, name string) []string {
	ctx, cancel := withTimeout(20 * time.Second)
	defer cancel()
	data, err := clientset.CoreV1().Pods(namespace).GetLogs(name, &corev1.PodLogOptions{Timestamps: true}).DoRaw(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// median of durations (not empty).
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// report prints a figure to the suite's output (shown by `make test-cluster`).
func report(format string, args ...any) {
	_, _ = fmt.Fprintf(GinkgoWriter, "FIGURE: "+format+"\n", args...)
	AddReportEntry("figure", fmt.Sprintf(format, args...))
}
