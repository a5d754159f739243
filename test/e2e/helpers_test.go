package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// commandTimeout bounds every kubectl, helm and script invocation.
const commandTimeout = 90 * time.Second

// run runs a command with the admin kubeconfig and a private Helm home, and
// returns its standard output and error.
func run(bin string, args ...string) (string, string, error) { return runWith(nil, bin, args...) }

// runWith is run with extra environment variables, which win over the
// inherited ones.
func runWith(env []string, bin string, args ...string) (string, string, error) {
	ctx, cancel := withTimeout(commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...) //nolint:gosec // test-controlled binaries and arguments
	cmd.Dir = testutil.RepoRoot()
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+adminKubeconfig,
		"KUBECACHEDIR="+filepath.Join(workDir, "kube-cache"),
		"HELM_CACHE_HOME="+filepath.Join(workDir, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(workDir, "helm", "config"),
		"HELM_DATA_HOME="+filepath.Join(workDir, "helm", "data"),
	)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), stderr.String(), err
}

// kubectl runs the kubectl built with the control plane as the admin.
func kubectl(args ...string) (string, string, error) { return run(kubectlBin, args...) }

// helmTemplate renders the chart with the pinned Helm.
func helmTemplate(release, namespace string, sets ...string) []*unstructured.Unstructured {
	args := []string{"template", release, "charts/clearance-operator", "--namespace", namespace}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, _, err := run(helmBin, args...)
	Expect(err).NotTo(HaveOccurred())
	writeArtifact(fmt.Sprintf("helm-%s.yaml", release), out)
	objs, err := testutil.DecodeManifests([]byte(out))
	Expect(err).NotTo(HaveOccurred())
	Expect(objs).NotTo(BeEmpty())
	return objs
}

// kustomize builds a kustomization directory with kubectl's built-in kustomize.
func kustomize(dir string) []*unstructured.Unstructured {
	out, _, err := kubectl("kustomize", dir)
	Expect(err).NotTo(HaveOccurred())
	writeArtifact("kustomize-"+strings.ReplaceAll(dir, "/", "-")+".yaml", out)
	objs, err := testutil.DecodeManifests([]byte(out))
	Expect(err).NotTo(HaveOccurred())
	Expect(objs).NotTo(BeEmpty())
	return objs
}

// readManifests decodes a manifest file of the repository.
func readManifests(path string) []*unstructured.Unstructured {
	data, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), path)) //nolint:gosec // a fixed file of this repository
	Expect(err).NotTo(HaveOccurred())
	objs, err := testutil.DecodeManifests(data)
	Expect(err).NotTo(HaveOccurred())
	return objs
}

func writeArtifact(name, content string) {
	Expect(os.WriteFile(filepath.Join(workDir, name), []byte(content), 0o600)).To(Succeed())
}

// applyAll server-side applies objs with kubectl, as users do, and checks that
// the apiserver accepted and stored every one of them without warnings (a
// Pod Security warning on a Deployment would show up here).
func applyAll(name string, objs []*unstructured.Unstructured) {
	data, err := testutil.EncodeList(objs)
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(workDir, name+".json")
	Expect(os.WriteFile(path, data, 0o600)).To(Succeed())
	out, stderr, err := kubectl("apply", "--server-side", "-f", path)
	Expect(err).NotTo(HaveOccurred())
	Expect(stderr).NotTo(ContainSubstring("Warning"), "kubectl apply printed warnings")
	Expect(strings.Count(out, "serverside-applied")).To(Equal(len(objs)), out)
	expectStored(objs)
}

// expectStored reads every object back from the apiserver.
func expectStored(objs []*unstructured.Unstructured) {
	for _, o := range objs {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(o.GroupVersionKind())
		ctx, cancel := withTimeout(10 * time.Second)
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(o), got)
		cancel()
		Expect(err).NotTo(HaveOccurred(), "%s %s", o.GetKind(), client.ObjectKeyFromObject(o))
	}
}

// partition splits objs into those of the given kinds and the rest.
func partition(objs []*unstructured.Unstructured, kinds ...string) (matching, rest []*unstructured.Unstructured) {
	for _, o := range objs {
		found := false
		for _, k := range kinds {
			if o.GetKind() == k {
				found = true
			}
		}
		if found {
			matching = append(matching, o)
		} else {
			rest = append(rest, o)
		}
	}
	return matching, rest
}

// find returns the only object of kind in objs (with the given name and
// namespace when not empty).
func find(objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) && (namespace == "" || o.GetNamespace() == namespace) {
			found = append(found, o)
		}
	}
	Expect(found).To(HaveLen(1), "exactly one %s %s/%s", kind, namespace, name)
	return found[0]
}

// names lists "Kind namespace/name" of objs, for readable assertions.
func names(objs []*unstructured.Unstructured) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName()))
	}
	return out
}

func toTyped(u *unstructured.Unstructured, into any) {
	Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)).To(Succeed())
}

// createNamespace creates a namespace that enforces (and warns about) the
// restricted Pod Security Standard.
func createNamespace(name string) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	}}}
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	if err := k8sClient.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred())
	}
}

// expectRestrictedPod creates (server-side dry run) a Pod from the
// Deployment's template in its namespace, which enforces the restricted Pod
// Security Standard: admission rejects the Pod if the template violates it.
// (Pod Security only warns about Deployments; it enforces on Pods.)
func expectRestrictedPod(deploy *unstructured.Unstructured) {
	ns := &corev1.Namespace{}
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	Expect(k8sClient.Get(ctx, client.ObjectKey{Name: deploy.GetNamespace()}, ns)).To(Succeed())
	Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))

	tmpl, found, err := unstructured.NestedMap(deploy.Object, "spec", "template")
	Expect(err).NotTo(HaveOccurred())
	Expect(found).To(BeTrue())
	pod := &corev1.Pod{}
	Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, pod)).To(Succeed())
	pod.Name = deploy.GetName() + "-pss-check"
	pod.Namespace = deploy.GetNamespace()
	Expect(k8sClient.Create(ctx, pod, client.DryRunAll)).To(Succeed(),
		"the Deployment's pod template must pass the restricted Pod Security Standard")
}

// expectDeploymentBasics checks what every shipped Deployment must have.
func expectDeploymentBasics(deploy *unstructured.Unstructured) *corev1.Container {
	d := struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}{}
	toTyped(deploy, &d)
	spec := d.Spec.Template.Spec
	Expect(spec.Containers).To(HaveLen(1))
	c := &spec.Containers[0]
	Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceCPU))
	Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceMemory))
	Expect(c.Resources.Limits).To(HaveKey(corev1.ResourceMemory))
	// Above the manager's 30s graceful-shutdown timeout.
	Expect(spec.TerminationGracePeriodSeconds).NotTo(BeNil())
	Expect(*spec.TerminationGracePeriodSeconds).To(BeNumerically(">", 30))
	Expect(c.Args).To(ContainElement("--leader-elect"))
	Expect(c.LivenessProbe).NotTo(BeNil())
	Expect(c.ReadinessProbe).NotTo(BeNil())
	return c
}

// managerArgs turns the manager's arguments from a rendered Deployment into
// arguments for a local process: loopback ports instead of the pod's, and the
// Lease namespace a pod would get from its ServiceAccount mount.
func managerArgs(deploy *unstructured.Unstructured, metricsAddr, probeAddr string) []string {
	containers, _, err := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	Expect(err).NotTo(HaveOccurred())
	Expect(containers).To(HaveLen(1))
	c := &corev1.Container{}
	Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(containers[0].(map[string]any), c)).To(Succeed())
	var args []string
	for _, a := range c.Args {
		switch {
		case strings.HasPrefix(a, "--metrics-bind-address="):
			a = "--metrics-bind-address=" + metricsAddr
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			a = "--health-probe-bind-address=" + probeAddr
		}
		args = append(args, a)
	}
	// Short leader election timings keep the failover spec quick; the shipped
	// defaults (60s/45s/5s, tolerant of apiserver outages) are exercised by the
	// fault suite's apiserver-restart spec.
	// The emulator is plain http on loopback; the egress flags are passed
	// here rather than through the chart values so that every rendering
	// (chart, namespaced chart, kustomize) runs with its shipped policy.
	// The downward API's POD_NAMESPACE, which the manager defaults
	// --cluster-resource-namespace to.
	for _, e := range c.Env {
		if e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace" &&
			!slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--cluster-resource-namespace=") }) {
			args = append(args, "--cluster-resource-namespace="+deploy.GetNamespace())
		}
	}
	args = append(args, testutil.EmulatorEgressFlags...)
	return append(args, "--leader-election-namespace="+deploy.GetNamespace(),
		"--leader-elect-lease-duration=15s", "--leader-elect-renew-deadline=10s", "--leader-elect-retry-period=2s")
}

// manager is a manager process started for a test.
type manager struct {
	*gexec.Session
	name        string
	metricsAddr string
	probeAddr   string
}

// log returns everything the manager has logged so far (to stderr).
func (m *manager) log() string { return string(m.Err.Contents()) }

// stop sends SIGTERM and expects a clean exit (status 0) within the
// graceful-shutdown timeout.
func (m *manager) stop() {
	GinkgoHelper()
	Eventually(m.Terminate()).WithTimeout(40*time.Second).Should(gexec.Exit(0), m.log)
}

// startManager runs the manager binary as ServiceAccount namespace/sa, with
// the arguments of the rendered Deployment, until the end of the calling
// node's scope. Its output is printed if a spec has failed. Call it from a
// BeforeAll for a manager that serves several specs.
func startManager(name string, deploy *unstructured.Unstructured, namespace, sa string) *manager {
	kubeconfig := serviceAccountKubeconfig(namespace, sa)
	metricsAddr, err := testutil.FreeLoopbackAddr()
	Expect(err).NotTo(HaveOccurred())
	probeAddr, err := testutil.FreeLoopbackAddr()
	Expect(err).NotTo(HaveOccurred())
	args := managerArgs(deploy, metricsAddr, probeAddr)
	GinkgoWriter.Printf("starting manager %s as %s/%s: %s\n", name, namespace, sa, strings.Join(args, " "))
	s, err := testutil.StartSession(managerBin, args, []string{"KUBECONFIG=" + kubeconfig},
		filepath.Join(workDir, "manager-"+name+".log"))
	Expect(err).NotTo(HaveOccurred())
	m := &manager{Session: s, name: name, metricsAddr: metricsAddr, probeAddr: probeAddr}
	// Registered in a BeforeAll, this runs after the container's last spec.
	DeferCleanup(func() {
		if suiteFailed {
			GinkgoWriter.Printf("---- manager %s output ----\n%s\n", name, m.log())
		}
		Eventually(s.Kill()).Should(gexec.Exit())
	})
	Eventually(s.Err).WithTimeout(30*time.Second).Should(gbytes.Say("starting manager"), m.log)
	return m
}

// serviceAccountKubeconfig writes a kubeconfig whose client certificate
// authenticates as the ServiceAccount (user name and groups as a token of
// that account would have), so RBAC treats the process exactly like the pod.
func serviceAccountKubeconfig(namespace, sa string) string {
	user, err := testEnv.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + namespace + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}, nil)
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(workDir, namespace+"-"+sa+".kubeconfig")
	Expect(testutil.WriteKubeconfig(user.Config(), path)).To(Succeed())
	return path
}

// serviceAccountToken returns a bound token of a new ServiceAccount through
// the TokenRequest API: the kind of token Prometheus scrapes with, which the
// manager's metrics filter authenticates with a TokenReview.
func serviceAccountToken(namespace, name string) string {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	Expect(k8sClient.Create(ctx, sa)).To(Succeed())
	tr, err := clientset.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	Expect(tr.Status.Token).NotTo(BeEmpty())
	return tr.Status.Token
}

// clusterRoleBinding binds a ClusterRole to a ServiceAccount.
func clusterRoleBinding(name, clusterRole, saNamespace, sa string) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: saNamespace, Name: sa}},
	}
}

// scrape GETs the manager's secure metrics endpoint with an optional bearer
// token and returns the status code and body.
func scrape(addr, token string) (int, string, error) {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// The manager serves a certificate it generated itself at start-up;
	// what is under test here is authentication and authorization.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed loopback test server
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// metricValue returns the value of the series whose line starts with
// series (name and labels exactly as exposed), or an error when absent.
func metricValue(body, series string) (float64, error) {
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(strings.Fields(rest)[0], 64)
		}
	}
	return 0, fmt.Errorf("series %s not found", series)
}

// probe GETs a path of the manager's health probe endpoint.
func probe(addr, path string) (int, error) {
	ctx, cancel := withTimeout(5 * time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// credential is a ClearanceCredential created for a test, with its own
// emulator client.
type credential struct {
	namespace, name, secretName string
	// clientID is the emulator client of the credential's connection file.
	clientID string
	// connFile is the path of that connection file.
	connFile string
}

// createCredential creates a connection Secret from the next emulator
// connection file and a ClearanceCredential using it, through the API.
func createCredential(namespace, name string) credential {
	path := nextConnFile()
	data, err := os.ReadFile(path) //nolint:gosec // written by the emulator into the test's directory
	Expect(err).NotTo(HaveOccurred())
	cf, err := clearance.ParseConnectionFile(data)
	Expect(err).NotTo(HaveOccurred())
	c := credential{namespace: namespace, name: name, clientID: cf.ClientID(), connFile: path}
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	c.secretName, err = testutil.CreateCredential(ctx, k8sClient, namespace, name, data)
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

func (c credential) target(g Gomega) *corev1.Secret {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	s := &corev1.Secret{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: c.namespace, Name: c.secretName}, s)).To(Succeed())
	return s
}

// expectReady waits for Ready=True and a target Secret holding a token that
// is valid for a while yet, and returns that Secret.
func (c credential) expectReady(timeout time.Duration) *corev1.Secret {
	var secret *corev1.Secret
	Eventually(func(g Gomega) {
		cred := c.get(g)
		ready := meta.FindStatusCondition(cred.Status.Conditions, clearancev1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "%s: %s", ready.Reason, ready.Message)
		secret = c.target(g)
		g.Expect(secret.Data).To(HaveKey("token"))
		g.Expect(secret.Data["token"]).NotTo(BeEmpty())
		g.Expect(string(secret.Data["tokenType"])).To(Equal("Bearer"))
		expiresAt, err := time.Parse(time.RFC3339, string(secret.Data["expiresAt"]))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(expiresAt).To(BeTemporally(">", time.Now().Add(30*time.Minute)))
	}).WithTimeout(timeout).WithPolling(250 * time.Millisecond).Should(Succeed())
	return secret
}

// emulatorStats reads the emulator's counters.
func emulatorStats() clearancetest.Stats {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	st, err := testutil.EmulatorStats(ctx, stsBaseURL)
	Expect(err).NotTo(HaveOccurred())
	return st
}

// mints returns how many tokens the emulator issued to the credential's client.
func (c credential) mints() int64 {
	return emulatorStats().Client(c.clientID, clearancetest.OutcomeSuccess)
}
