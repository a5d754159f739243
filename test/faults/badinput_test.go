package faults

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

// fileEdit changes a decoded connection file.
type fileEdit func(doc map[string]any)

// editFile decodes a generated connection file, applies the edit and encodes it again.
func editFile(data []byte, edit fileEdit) []byte {
	GinkgoHelper()
	doc := map[string]any{}
	Expect(json.Unmarshal(data, &doc)).To(Succeed())
	edit(doc)
	out, err := json.MarshalIndent(doc, "", "  ")
	Expect(err).NotTo(HaveOccurred())
	return out
}

func jwkOf(doc map[string]any) map[string]any {
	GinkgoHelper()
	jwk, ok := doc["ServicePrincipalKey"].(map[string]any)
	Expect(ok).To(BeTrue(), "ServicePrincipalKey is an object")
	return jwk
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// rsaJWKMembers returns the JWK members (n, e, d, p, q, dp, dq, qi) of an RSA key.
func rsaJWKMembers(key *rsa.PrivateKey) map[string]any {
	GinkgoHelper()
	raw, err := json.Marshal(jose.JSONWebKey{Key: key})
	Expect(err).NotTo(HaveOccurred())
	m := map[string]any{}
	Expect(json.Unmarshal(raw, &m)).To(Succeed())
	return m
}

var _ = Describe("Bad input", Ordered, ContinueOnFailure, func() {
	var (
		mgr *inProcManager
		// bad is the emulator every stalled case's file points at: it must
		// never see a token request.
		bad *clearancetest.Server
		// good serves the cases that do mint, and the bystander.
		good *clearancetest.Server
		// Stalled cases' namespaces, for the final "no loop, no request" check.
		stalled     []string
		bystanderNS string
		bystander   *clearancetest.ConnectionFile
		watch       *secretWatch
	)

	BeforeAll(func(ctx context.Context) {
		mgr = startInProcManager(inProcOptions{})
		DeferCleanup(mgr.stop)
		bad = newEmulator()
		good = newEmulator(clearancetest.WithTokenTTL(5 * time.Second))

		By("running a healthy credential next to all the bad ones")
		bystanderNS = newNamespace(ctx, k8sClient)
		bystander = newConnectionFile(good)
		createConnectionSecret(ctx, k8sClient, bystanderNS, "conn", bystander.Data)
		createCredential(ctx, bystanderNS, "bystander", "conn", "token")
		eventuallyReady(ctx, k8sClient, bystanderNS, "bystander", "token", 20*time.Second)
		watch = watchSecret(k8sClient, bystanderNS, "token")
	})

	// expectStalled waits for Ready=False and Stalled=True with the reason,
	// checks the message, and the secrecy of everything published.
	expectStalled := func(ctx context.Context, ns, reason string, files [][]byte, msgParts ...string) metav1.Condition {
		GinkgoHelper()
		ready := eventuallyCondition(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionReady, 15*time.Second,
			haveCondition(metav1.ConditionFalse, reason))
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionStalled)).To(haveCondition(metav1.ConditionTrue, reason))
		for _, p := range msgParts {
			Expect(ready.Message).To(ContainSubstring(p))
		}
		Expect(len(ready.Message)).To(BeNumerically("<", 400), "the message is short: %q", ready.Message)
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionReconciling).Status).To(BeEmpty())
		_, err := getSecret(ctx, k8sClient, ns, "token")
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no target Secret is written")
		expectNoSecretMaterial(ctx, k8sClient, ns, logSink.String(), files)
		stalled = append(stalled, ns)
		return ready
	}

	DescribeTable("a connection file the operator cannot use",
		func(ctx context.Context, edit func(data []byte) []byte, msgParts ...string) {
			ns := newNamespace(ctx, k8sClient)
			cf := newConnectionFile(bad)
			data := edit(cf.Data)
			createConnectionSecret(ctx, k8sClient, ns, "conn", data)
			createCredential(ctx, ns, "cred", "conn", "token")
			msg := expectStalled(ctx, ns, clearancev1alpha1.ReasonConnectionInvalid, [][]byte{cf.Data, data}, msgParts...).Message
			Expect(msg).To(ContainSubstring(`connection Secret "conn" key "config.json"`))
			Expect(requests(bad, cf.ClientID())).To(BeZero())
		},
		Entry("invalid JSON: ConnectionInvalid, the message quotes no content",
			func(data []byte) []byte { return data[:len(data)/2] }, "invalid JSON"),
		Entry("missing ServicePrincipalId",
			func(data []byte) []byte {
				return editFile(data, func(d map[string]any) { delete(d, "ServicePrincipalId") })
			},
			"ServicePrincipalId", "missing"),
		Entry("missing TenantId",
			func(data []byte) []byte { return editFile(data, func(d map[string]any) { delete(d, "TenantId") }) },
			"TenantId", "missing"),
		Entry("missing SecurityTokenServiceBaseAddresses",
			func(data []byte) []byte {
				return editFile(data, func(d map[string]any) { delete(d, "SecurityTokenServiceBaseAddresses") })
			},
			"SecurityTokenServiceBaseAddresses", "missing"),
		Entry("missing ServicePrincipalKey",
			func(data []byte) []byte {
				return editFile(data, func(d map[string]any) { delete(d, "ServicePrincipalKey") })
			},
			"ServicePrincipalKey", "missing"),
		Entry("JWK with kty EC",
			func(data []byte) []byte {
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				Expect(err).NotTo(HaveOccurred())
				ecdh, err := key.ECDH()
				Expect(err).NotTo(HaveOccurred())
				pub := ecdh.PublicKey().Bytes() // 0x04 || X || Y
				return editFile(data, func(d map[string]any) {
					d["ServicePrincipalKey"] = map[string]any{"kty": "EC", "crv": "P-256", "kid": "ec",
						"x": b64(pub[1:33]), "y": b64(pub[33:]), "d": b64(ecdh.Bytes())}
				})
			},
			"ServicePrincipalKey.kty"),
		Entry("JWK with kty oct",
			func(data []byte) []byte {
				return editFile(data, func(d map[string]any) {
					d["ServicePrincipalKey"] = map[string]any{"kty": "oct", "kid": "oct", "k": b64([]byte("0123456789abcdef0123456789abcdef"))}
				})
			},
			"ServicePrincipalKey.kty"),
		Entry("public-only RSA key",
			func(data []byte) []byte {
				return editFile(data, func(d map[string]any) {
					jwk := jwkOf(d)
					for _, m := range []string{"d", "p", "q", "dp", "dq", "qi"} {
						delete(jwk, m)
					}
				})
			},
			"ServicePrincipalKey", "only a public key"),
		Entry("inconsistent CRT parameters",
			func(data []byte) []byte {
				return editFile(data, func(d map[string]any) {
					jwk := jwkOf(d)
					jwk["dp"], jwk["dq"] = jwk["dq"], jwk["dp"]
				})
			},
			"ServicePrincipalKey", "inconsistent"),
		Entry("1024-bit key",
			func(data []byte) []byte {
				key, err := rsa.GenerateKey(rand.Reader, 1024) //nolint:gosec // the too-small key is the bad input under test
				Expect(err).NotTo(HaveOccurred())
				return editFile(data, func(d map[string]any) {
					jwk := jwkOf(d)
					for k, v := range rsaJWKMembers(key) {
						jwk[k] = v
					}
				})
			},
			"1024 bits", "2048"),
		Entry("bad base64url in a key member",
			func(data []byte) []byte {
				return editFile(data, func(d map[string]any) { jwkOf(d)["d"] = "not*base64url!" })
			},
			"ServicePrincipalKey.d", "base64url"),
		Entry("STS address not absolute",
			func(data []byte) []byte {
				return editFile(data, func(d map[string]any) { d["SecurityTokenServiceBaseAddresses"] = []string{"sts.example/connect"} })
			},
			"SecurityTokenServiceBaseAddresses[0]"),
		Entry("STS address not http(s)",
			func(data []byte) []byte {
				return editFile(data, func(d map[string]any) {
					d["SecurityTokenServiceBaseAddresses"] = []string{"ftp://127.0.0.1/connect"}
				})
			},
			"SecurityTokenServiceBaseAddresses[0]"),
		Entry("a file as large as a Secret can hold (just under 1 MiB), not JSON",
			func(data []byte) []byte {
				// The file minus its closing brace, then an unterminated member.
				big := append(append([]byte(nil), data[:len(data)-3]...), []byte(`,"Padding":"`)...)
				return append(big, bytes.Repeat([]byte("A"), 1<<20-8<<10-len(big))...)
			},
			"invalid JSON"),
	)

	It("a connection Secret without the key: ConnectionSecretNotFound naming the key", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		cf := newConnectionFile(bad)
		Expect(k8sClient.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "conn", Namespace: ns},
			Data:       map[string][]byte{"other.json": cf.Data},
		})).To(Succeed())
		createCredential(ctx, ns, "cred", "conn", "token")
		expectStalled(ctx, ns, clearancev1alpha1.ReasonConnectionSecretNotFound, [][]byte{cf.Data}, `has no key "config.json"`)
	})

	It("a connection Secret missing, then created: ConnectionSecretNotFound, then Ready at once", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		createCredential(ctx, ns, "cred", "conn", "token")
		ready := eventuallyCondition(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionReady, 15*time.Second,
			haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonConnectionSecretNotFound))
		Expect(ready.Message).To(ContainSubstring(`connection Secret "conn" not found in namespace "` + ns + `"`))

		cf := newConnectionFile(good)
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		start := time.Now()
		token := eventuallyReady(ctx, k8sClient, ns, "cred", "token", 10*time.Second)
		Expect(time.Since(start)).To(BeNumerically("<", 5*time.Second), "the Secret watch brings the credential back")
		Expect(successes(good, cf.ClientID())).To(BeEquivalentTo(1))
		expectNoSecretMaterial(ctx, k8sClient, ns, logSink.String(), [][]byte{cf.Data}, token)
	})

	It("a target name equal to a foreign Secret: TargetConflict, the Secret untouched, no token request", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		cf := newConnectionFile(bad)
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		foreign := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "token", Namespace: ns, Labels: map[string]string{"owner": "someone"}},
			Data:       map[string][]byte{"token": []byte("theirs")},
		}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())
		createCredential(ctx, ns, "cred", "conn", "token")
		ready := eventuallyCondition(ctx, k8sClient, ns, "cred", clearancev1alpha1.ConditionReady, 15*time.Second,
			haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonTargetConflict))
		Expect(ready.Message).To(ContainSubstring(`Secret "token" exists and is not controlled by this ClearanceCredential`))
		Expect(condition(ctx, ns, "cred", clearancev1alpha1.ConditionStalled)).To(haveCondition(metav1.ConditionTrue, clearancev1alpha1.ReasonTargetConflict))
		Consistently(func() map[string][]byte {
			s, _ := getSecret(ctx, k8sClient, ns, "token")
			return s.Data
		}).WithTimeout(2 * time.Second).Should(Equal(map[string][]byte{"token": []byte("theirs")}))
		s, err := getSecret(ctx, k8sClient, ns, "token")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.OwnerReferences).To(BeEmpty())
		Expect(s.Labels).To(Equal(map[string]string{"owner": "someone"}))
		Expect(requests(bad, cf.ClientID())).To(BeZero())
		expectNoSecretMaterial(ctx, k8sClient, ns, logSink.String(), [][]byte{cf.Data}, "theirs")
		stalled = append(stalled, ns)
	})

	It("two credentials naming the same target: the second gets TargetConflict, the first keeps the Secret", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		first, second := newConnectionFile(good), newConnectionFile(good)
		createConnectionSecret(ctx, k8sClient, ns, "conn-1", first.Data)
		createConnectionSecret(ctx, k8sClient, ns, "conn-2", second.Data)
		createCredential(ctx, ns, "first", "conn-1", "shared")
		eventuallyReady(ctx, k8sClient, ns, "first", "shared", 15*time.Second)
		createCredential(ctx, ns, "second", "conn-2", "shared")
		eventuallyCondition(ctx, k8sClient, ns, "second", clearancev1alpha1.ConditionReady, 15*time.Second,
			haveCondition(metav1.ConditionFalse, clearancev1alpha1.ReasonTargetConflict))
		Expect(eventReasons(ctx, k8sClient, ns, "second")).To(ContainElement("TargetConflict"))

		By("the first one keeps renewing its Secret (TTL 5s) and the second never requests a token")
		watch := watchSecret(k8sClient, ns, "shared")
		Consistently(func() string {
			s, _ := getSecret(ctx, k8sClient, ns, "shared")
			return string(s.Data[clearancev1alpha1.SecretKeyClientID])
		}).WithTimeout(6 * time.Second).Should(Equal(first.ClientID()))
		watch.stop()
		tokens, violations, _ := watch.result()
		Expect(violations).To(BeEmpty())
		Expect(len(tokens)).To(BeNumerically(">=", 2), "the first credential renewed")
		Expect(requests(good, second.ClientID())).To(BeZero())
		Expect(condition(ctx, ns, "first", clearancev1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		expectNoSecretMaterial(ctx, k8sClient, ns, logSink.String(), [][]byte{first.Data, second.Data}, tokens...)
	})

	It("renewBefore longer than the token lifetime: Ready with RenewBeforeTooLong, renewed at half the lifetime", func(ctx context.Context) {
		ns := newNamespace(ctx, k8sClient)
		srv := newEmulator(clearancetest.WithTokenTTL(time.Hour))
		cf := newConnectionFile(srv)
		createConnectionSecret(ctx, k8sClient, ns, "conn", cf.Data)
		createCredential(ctx, ns, "cred", "conn", "token", withRenewBefore(2*time.Hour))
		token := eventuallyReady(ctx, k8sClient, ns, "cred", "token", 15*time.Second)
		ready := condition(ctx, ns, "cred", clearancev1alpha1.ConditionReady)
		Expect(ready.Reason).To(Equal(clearancev1alpha1.ReasonRenewBeforeTooLong))
		Expect(ready.Message).To(ContainSubstring("spec.renewBefore (2h0m0s) is not shorter than the token lifetime (1h0m0s)"))
		c := getCredential(ctx, k8sClient, ns, "cred")
		issued := c.Status.ExpiresAt.Add(-time.Hour)
		// Half the lifetime minus up to 10% jitter: 24 to 30 minutes (the
		// default third-before-expiry would be 34 to 40).
		Expect(c.Status.RenewalTime.Sub(issued)).To(BeNumerically("~", 27*time.Minute, 3*time.Minute+time.Second))
		Consistently(func() int64 { return successes(srv, cf.ClientID()) }).WithTimeout(2 * time.Second).Should(BeEquivalentTo(1))
		expectNoSecretMaterial(ctx, k8sClient, ns, logSink.String(), [][]byte{cf.Data}, token)
	})

	It("none of the stalled credentials requested a token or reconciled in a loop; the manager never panicked", func(ctx context.Context) {
		Expect(stalled).NotTo(BeEmpty())
		before := map[string]int{}
		logs := logSink.String()
		for _, ns := range stalled {
			before[ns] = reconciles(logs, ns)
			Expect(before[ns]).To(BeNumerically(">=", 1), "the log shows the reconciles of %s", ns)
		}
		time.Sleep(3 * time.Second)
		logs = logSink.String()
		for _, ns := range stalled {
			Expect(reconciles(logs, ns)-before[ns]).To(BeNumerically("<=", 1), "a stalled credential in %s is not retried in a loop", ns)
		}
		Expect(bad.Stats().TokenRequests).To(BeZero(), "no stalled credential reached the STS")
		Expect(mgr.running()).To(BeTrue())
		expectNoPanic(logs)
	})

	It("left the healthy credential alone: renewed throughout, never without a valid token", func(ctx context.Context) {
		watch.stop()
		tokens, violations, seen := watch.result()
		Expect(seen).To(BeNumerically(">", 10))
		Expect(violations).To(BeEmpty())
		Expect(len(tokens)).To(BeNumerically(">=", 2))
		Expect(requests(good, bystander.ClientID())).To(Equal(successes(good, bystander.ClientID())), "no failed request")
		Expect(condition(ctx, bystanderNS, "bystander", clearancev1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		expectNoSecretMaterial(ctx, k8sClient, bystanderNS, logSink.String(), [][]byte{bystander.Data}, tokens...)
	})

	// At the highest verbosity client-go's REST client logs request and
	// response bodies (V(8)) through the reconcile context's logger, which
	// would put the connection Secret (private key, APIKey) and the token in
	// the log; logsafe.CapLevel caps the root logger below that.
	It("logs no Secret body at the highest verbosity", func() {
		expectNoSecretInBodyDumps(logSink.String())
	})
})
