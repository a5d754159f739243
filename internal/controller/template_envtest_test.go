package controller

import (
	"context"
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

var _ = Describe("Secret data templates", Ordered, func() {
	var mgr *runningManager
	BeforeAll(func() { mgr = startManager() })
	AfterAll(func() { mgr.stop() })

	const configTemplate = `{"documentStore": "{{ .Addresses.documentStoreBaseAddress }}", "token": "{{ .Token }}"}`

	// renderedConfig reads config.json from the target Secret, with the token stored next to it.
	renderedConfig := func(ctx context.Context, ns string) (cfg map[string]string, token string) {
		s, err := getSecret(ctx, ns, "token")
		if err != nil {
			return nil, ""
		}
		cfg = map[string]string{}
		if err := json.Unmarshal(s.Data["config.json"], &cfg); err != nil {
			return nil, ""
		}
		return cfg, string(s.Data[clearancev1alpha1.SecretKeyToken])
	}

	It("renders a JSON config file with the token and keeps it current on renewal", func(ctx context.Context) {
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(9 * time.Second))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, ns, "conn", cf.Data)
		createCredential(ctx, ns, "cred", "conn", "token", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.SecretTemplate = &clearancev1alpha1.SecretTemplate{Data: map[string]string{
				"config.json":   configTemplate,
				"authorization": "Bearer {{ .Token }}",
			}}
		})
		first := eventuallyReady(ctx, ns, "cred", "token")
		s, err := getSecret(ctx, ns, "token")
		Expect(err).NotTo(HaveOccurred())
		address := string(s.Data["documentStoreBaseAddress"])
		Expect(address).NotTo(BeEmpty())
		Expect(string(s.Data["authorization"])).To(Equal("Bearer " + first))
		cfg, _ := renderedConfig(ctx, ns)
		Expect(cfg).To(Equal(map[string]string{"documentStore": address, "token": first}))

		By("rendering the renewed token into the same key")
		Eventually(func(g Gomega) {
			cfg, token := renderedConfig(ctx, ns)
			g.Expect(token).NotTo(Equal(first))
			g.Expect(cfg).To(HaveKeyWithValue("token", token))
		}).WithTimeout(15 * time.Second).Should(Succeed())

		By("re-rendering a changed template from the stored token, without a token request")
		before := successes(srv, cf.ClientID())
		updateTemplateData(ctx, ns, "cred", map[string]string{"header": "Authorization: {{ .TokenType }} {{ .Token }}"})
		Eventually(func(g Gomega) {
			s, err := getSecret(ctx, ns, "token")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(s.Data).NotTo(HaveKey("config.json"), "a key the template no longer names is removed")
			g.Expect(string(s.Data["header"])).To(Equal("Authorization: Bearer " + string(s.Data["token"])))
		}).Should(Succeed())
		Expect(successes(srv, cf.ClientID())).To(BeNumerically("<=", before+1), "at most a renewal that was due")
	})

	It("reports TemplateInvalid without requesting a token, and keeps the last good token", func(ctx context.Context) {
		ns := newNamespace(ctx)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, ns, "conn", cf.Data)
		createCredential(ctx, ns, "bad", "conn", "bad-token", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Spec.SecretTemplate = &clearancev1alpha1.SecretTemplate{Data: map[string]string{"key.pem": "{{ .PrivateKey }}"}}
		})
		Eventually(func() metav1.Condition { return condition(ctx, ns, "bad", clearancev1alpha1.ConditionReady) }).
			Should(haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonTemplateInvalid))
		Expect(condition(ctx, ns, "bad", clearancev1alpha1.ConditionStalled)).To(haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonTemplateInvalid))
		Expect(condition(ctx, ns, "bad", clearancev1alpha1.ConditionReady).Message).To(And(ContainSubstring(`"key.pem"`), ContainSubstring("PrivateKey")))
		Expect(requests(srv, cf.ClientID())).To(BeZero())
		_, err := getSecret(ctx, ns, "bad-token")
		Expect(err).To(HaveOccurred(), "nothing is written")

		By("breaking the template of a credential that holds a token")
		createCredential(ctx, ns, "cred", "conn", "token")
		token := eventuallyReady(ctx, ns, "cred", "token")
		updateTemplateData(ctx, ns, "cred", map[string]string{"x": "{{ .Addresses.nowhere }}"})
		Eventually(func() metav1.Condition { return condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady) }).
			Should(haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonTemplateInvalid))
		s, err := getSecret(ctx, ns, "token")
		Expect(err).NotTo(HaveOccurred())
		Expect(string(s.Data["token"])).To(Equal(token), "the last good token stays")
		Expect(s.Data).NotTo(HaveKey("x"))

		By("recovering when the template is fixed")
		updateTemplateData(ctx, ns, "cred", map[string]string{"x": "{{ .TenantID }}"})
		Eventually(func() metav1.Condition { return condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady) }).
			Should(haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid))
		Eventually(func() string { s, _ := getSecret(ctx, ns, "token"); return string(s.Data["x"]) }).Should(Equal(cf.TenantID))
		Expect(successes(srv, cf.ClientID())).To(BeEquivalentTo(1))
	})
})

// updateTemplateData sets a credential's data templates, retrying when a
// status write of the operator got in between.
func updateTemplateData(ctx context.Context, ns, name string, data map[string]string) {
	GinkgoHelper()
	Eventually(func() error {
		c := getCredential(ctx, ns, name)
		if c.Spec.SecretTemplate == nil {
			c.Spec.SecretTemplate = &clearancev1alpha1.SecretTemplate{}
		}
		c.Spec.SecretTemplate.Data = data
		return k8sClient.Update(ctx, c)
	}).Should(Succeed())
}
