package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// Names of what the install specs create; the operate specs run the manager
// as these ServiceAccounts.
const (
	// Release "e2e": cluster-wide, every option on.
	chartRelease   = "e2e"
	chartNamespace = "e2e-system"
	chartSA        = "e2e-clearance-operator"

	// Release "scoped": namespaced mode, Roles in two namespaces only.
	scopedRelease   = "scoped"
	scopedNamespace = "scoped-system"
	scopedSA        = "scoped-clearance-operator"
	teamA           = "e2e-team-a"
	teamB           = "e2e-team-b"

	// config/default.
	kustomizeNamespace = "clearance-operator-system"
	kustomizeSA        = "clearance-operator-controller-manager"

	leaseName = "clearance-operator.clearance.dev"
	crdName   = "clearancecredentials.clearance.dev"
)

// Rendered Deployments, whose arguments the operate specs run the manager with.
var (
	chartDeployment     *unstructured.Unstructured
	scopedDeployment    *unstructured.Unstructured
	kustomizeDeployment *unstructured.Unstructured
)

// installSpecs render and apply the Helm chart and the kustomize configuration.
func installSpecs() {
	Context("Helm chart", func() {
		It("passes helm lint --strict with default values and with every option on", func() {
			for _, sets := range [][]string{nil, {
				"namespaces={a,b}", "replicas=2", "metrics.serviceMonitor.enabled=true",
				"networkPolicy.enabled=true", "podDisruptionBudget.enabled=true", "crds.install=false",
				"networkPolicy.egress.enabled=true", "sts.allowCIDRs={10.20.0.0/16}", "sts.allowHTTP=true",
				"sts.caBundle.secretName=sts-ca", "metrics.certSecret=metrics-cert",
				"prometheusRule.enabled=true", "grafanaDashboard.enabled=true",
			}} {
				args := []string{"lint", "--strict", "charts/clearance-operator"}
				for _, s := range sets {
					args = append(args, "--set", s)
				}
				out, _, err := run(helmBin, args...)
				Expect(err).NotTo(HaveOccurred())
				Expect(out).To(ContainSubstring("0 chart(s) failed"))
				Expect(out).NotTo(MatchRegexp(`\[(WARNING|ERROR|INFO)\]`))
			}
		})

		It("carries the generated CRD and RBAC rules (hack/sync-chart.sh is up to date)", func() {
			rendered := helmTemplate("sync", "default")
			generated := readManifests(filepath.Join("config", "crd", "bases", "clearance.dev_clearancecredentials.yaml"))
			Expect(find(rendered, "CustomResourceDefinition", "", crdName).Object["spec"]).To(
				Equal(find(generated, "CustomResourceDefinition", "", crdName).Object["spec"]),
				"the chart's CRD differs from config/crd/bases: run hack/sync-chart.sh")
			role := find(readManifests(filepath.Join("config", "rbac", "role.yaml")), "ClusterRole", "", "manager-role")
			Expect(find(rendered, "ClusterRole", "", "sync-clearance-operator-manager").Object["rules"]).To(
				Equal(role.Object["rules"]), "the chart's manager rules differ from config/rbac/role.yaml: run hack/sync-chart.sh")
		})

		It("templates the CRD per crds.install and crds.keep, and refuses replicas without leader election", func() {
			crd := find(helmTemplate("toggles", "default"), "CustomResourceDefinition", "", crdName)
			Expect(crd.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
			Expect(crd.GetLabels()).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "Helm"))

			crd = find(helmTemplate("toggles", "default", "crds.keep=false"), "CustomResourceDefinition", "", crdName)
			Expect(crd.GetAnnotations()).NotTo(HaveKey("helm.sh/resource-policy"))

			crds, _ := partition(helmTemplate("toggles", "default", "crds.install=false"), "CustomResourceDefinition")
			Expect(crds).To(BeEmpty())

			_, stderr, err := run(helmBin, "template", "toggles", "charts/clearance-operator", "--set", "replicas=2", "--set", "leaderElection.enabled=false")
			Expect(err).To(HaveOccurred())
			Expect(stderr).To(ContainSubstring("requires leaderElection.enabled=true"))

			_, stderr, err = run(helmBin, "template", "toggles", "charts/clearance-operator", "--set", "logLevel=loud")
			Expect(err).To(HaveOccurred(), "values.schema.json rejects an unknown log level")
			Expect(stderr).To(ContainSubstring("logLevel"))
		})

		It("renders the STS egress options: flags, CA bundle and metrics certificate mounts, egress policy", func() {
			objs := helmTemplate("egress", "default", "sts.allowCIDRs={10.20.0.0/16,fd00::/8}", "sts.allowHTTP=true",
				"sts.caBundle.configMapName=sts-ca", "sts.caBundle.key=bundle.pem", "metrics.certSecret=metrics-cert",
				"sts.requestsPerSecond=5", "sts.minForcedMintInterval=1m", "networkPolicy.enabled=true", "networkPolicy.egress.enabled=true")
			d := find(objs, "Deployment", "default", "")
			c := expectDeploymentBasics(d)
			Expect(c.Args).To(ContainElements("--sts-allow-cidrs=10.20.0.0/16,fd00::/8", "--sts-allow-http",
				"--sts-ca-bundle=/etc/clearance/sts-ca/bundle.pem", "--metrics-cert-dir=/etc/clearance/metrics-cert",
				"--sts-requests-per-second=5", "--min-forced-mint-interval=1m"))
			Expect(c.Env).To(ContainElement(HaveField("Name", "MEMORY_LIMIT_BYTES")))
			volumes, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "volumes")
			Expect(volumes).To(ConsistOf(
				HaveKeyWithValue("configMap", HaveKeyWithValue("name", "sts-ca")),
				HaveKeyWithValue("secret", HaveKeyWithValue("secretName", "metrics-cert"))))
			np := find(objs, "NetworkPolicy", "default", "")
			types, _, _ := unstructured.NestedStringSlice(np.Object, "spec", "policyTypes")
			Expect(types).To(ConsistOf("Ingress", "Egress"))
			egress, _, _ := unstructured.NestedSlice(np.Object, "spec", "egress")
			Expect(egress).To(HaveLen(3), "DNS, the API server, the STS")

			defaults := expectDeploymentBasics(find(helmTemplate("egress", "default"), "Deployment", "default", ""))
			Expect(defaults.Args).NotTo(ContainElement(HavePrefix("--sts-allow")), "the shipped policy is not widened by default")

			_, stderr, err := run(helmBin, "template", "egress", "charts/clearance-operator",
				"--set", "sts.caBundle.secretName=a", "--set", "sts.caBundle.configMapName=b")
			Expect(err).To(HaveOccurred())
			Expect(stderr).To(ContainSubstring("not both"))
		})

		It("installs cluster-wide with every option on: the apiserver accepts every object", func() {
			objs := helmTemplate(chartRelease, chartNamespace,
				"metrics.serviceMonitor.enabled=true", "networkPolicy.enabled=true", "podDisruptionBudget.enabled=true",
				"image.repository=clearance-operator", "image.tag=e2e", "logLevel=debug")
			monitors, objs := partition(objs, "ServiceMonitor")
			// The Prometheus Operator's CRD is not part of this control plane,
			// so the ServiceMonitor cannot be applied; check its shape instead.
			Expect(monitors).To(HaveLen(1))
			AddReportEntry("skipped", "ServiceMonitor not applied: the monitoring.coreos.com CRD (Prometheus Operator) is not installed in the test control plane")
			endpoints, _, _ := unstructured.NestedSlice(monitors[0].Object, "spec", "endpoints")
			Expect(endpoints).To(ConsistOf(HaveKeyWithValue("port", "https")))
			Expect(find(objs, "Service", chartNamespace, "").Object).To(HaveKey("spec"))

			Expect(names(objs)).To(ContainElements(
				"ClusterRole /e2e-clearance-operator-manager", "ClusterRoleBinding /e2e-clearance-operator-manager",
				"Role e2e-system/e2e-clearance-operator-leader-election", "ClusterRole /e2e-clearance-operator-metrics-auth",
				"ClusterRole /e2e-clearance-operator-metrics-reader", "NetworkPolicy e2e-system/e2e-clearance-operator",
				"PodDisruptionBudget e2e-system/e2e-clearance-operator", "CustomResourceDefinition /"+crdName,
			))
			createNamespace(chartNamespace)
			applyAll("helm-"+chartRelease, objs)

			chartDeployment = find(objs, "Deployment", chartNamespace, "")
			c := expectDeploymentBasics(chartDeployment)
			Expect(c.Image).To(Equal("clearance-operator:e2e"))
			Expect(c.Args).To(ContainElement("--zap-log-level=debug"))
			Expect(c.Args).NotTo(ContainElement(HavePrefix("--namespaces")))
			expectRestrictedPod(chartDeployment)
		})

		It("installs in namespaced mode: Roles in the listed namespaces and no cluster-wide access to Secrets", func() {
			objs := helmTemplate(scopedRelease, scopedNamespace,
				"namespaces={"+teamA+","+teamB+"}", "replicas=2", "crds.install=false")
			clusterRoles, _ := partition(objs, "ClusterRole")
			for _, cr := range clusterRoles {
				rules, _, _ := unstructured.NestedSlice(cr.Object, "rules")
				for _, r := range rules {
					Expect(r).NotTo(HaveKeyWithValue("resources", ContainElement("secrets")), "ClusterRole %s grants Secrets", cr.GetName())
				}
			}
			Expect(names(objs)).To(ContainElements(
				"Role e2e-team-a/scoped-clearance-operator-manager", "RoleBinding e2e-team-a/scoped-clearance-operator-manager",
				"Role e2e-team-b/scoped-clearance-operator-manager", "RoleBinding e2e-team-b/scoped-clearance-operator-manager",
			))
			Expect(names(objs)).NotTo(ContainElement(HavePrefix("ClusterRoleBinding /scoped-clearance-operator-manager")))
			Expect(names(objs)).NotTo(ContainElement(HavePrefix("CustomResourceDefinition")))

			for _, ns := range []string{scopedNamespace, teamA, teamB} {
				createNamespace(ns)
			}
			applyAll("helm-"+scopedRelease, objs)
			scopedDeployment = find(objs, "Deployment", scopedNamespace, "")
			c := expectDeploymentBasics(scopedDeployment)
			Expect(c.Args).To(ContainElement("--namespaces=" + teamA + "," + teamB))
			Expect(scopedDeployment.Object).To(HaveKeyWithValue("spec", HaveKeyWithValue("replicas", BeNumerically("==", 2))))
			expectRestrictedPod(scopedDeployment)
		})
	})

	Context("kustomize", func() {
		It("config/default: the apiserver accepts every object", func() {
			objs := kustomize("config/default")
			Expect(names(objs)).To(ContainElements(
				"Namespace /"+kustomizeNamespace, "CustomResourceDefinition /"+crdName,
				"ServiceAccount "+kustomizeNamespace+"/"+kustomizeSA,
				"ClusterRole /clearance-operator-manager-role", "Role "+kustomizeNamespace+"/clearance-operator-leader-election-role",
				"Deployment "+kustomizeNamespace+"/clearance-operator-controller-manager",
			))
			applyAll("kustomize-default", objs)
			kustomizeDeployment = find(objs, "Deployment", kustomizeNamespace, "")
			expectDeploymentBasics(kustomizeDeployment)
			expectRestrictedPod(kustomizeDeployment)
		})

		It("hack/deploy.sh sets the image and applies the HA overlay: two replicas with leader election", func() {
			const img = "registry.invalid:5000/team/clearance-operator:v9.9.9"
			out, stderr, err := runWith([]string{"KUSTOMIZE=" + kustomizeBin}, "hack/deploy.sh", kubectlBin, img, "config/ha")
			Expect(err).NotTo(HaveOccurred())
			Expect(stderr).NotTo(ContainSubstring("Warning"), "e.g. a Pod Security warning about the HA Deployment")
			Expect(out).To(ContainSubstring("serverside-applied"))

			ctx, cancel := withTimeout(10 * time.Second)
			defer cancel()
			d := &appsv1.Deployment{}
			Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: kustomizeNamespace, Name: "clearance-operator-controller-manager"}, d)).To(Succeed())
			Expect(d.Spec.Replicas).To(HaveValue(BeNumerically("==", 2)))
			Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal(img))
			Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--leader-elect"))
			pdb := &policyv1.PodDisruptionBudget{}
			Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: kustomizeNamespace, Name: "clearance-operator-controller-manager"}, pdb)).To(Succeed())

			// The repository's own kustomization is left untouched.
			Expect(os.ReadFile(filepath.Join(testutil.RepoRoot(), "config", "manager", "kustomization.yaml"))).NotTo(ContainSubstring("registry.invalid"))
		})

		It("the optional overlays and the samples are accepted", func() {
			applyAll("kustomize-network-policy", kustomize("config/network-policy"))

			monitors, rest := partition(kustomize("config/prometheus"), "ServiceMonitor")
			Expect(rest).To(BeEmpty())
			Expect(monitors).To(HaveLen(1))
			AddReportEntry("skipped", "config/prometheus not applied: the monitoring.coreos.com CRD (Prometheus Operator) is not installed in the test control plane")

			// The samples are what a user applies to their own namespace; a
			// server-side dry run validates them against the installed CRD.
			createNamespace("e2e-samples")
			out, stderr, err := kubectl("apply", "--server-side", "--dry-run=server", "-n", "e2e-samples", "-k", "config/samples")
			Expect(err).NotTo(HaveOccurred())
			Expect(stderr).NotTo(ContainSubstring("Warning"))
			Expect(strings.Count(out, "serverside-applied")).To(Equal(2), out)
		})
	})
}
