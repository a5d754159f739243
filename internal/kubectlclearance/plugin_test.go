package kubectlclearance

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/yaml"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
	"github.com/clearance-operator/clearance-operator/internal/tokeninfo"
)

// now is the fake clock of every test.
var now = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(d)); return &t }

// signedToken is a JWT with the claims status decodes.
func signedToken(t *testing.T) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "https://sts.example.test/connect", "sub": "151@tenant123", "client_id": "151@tenant123",
		"iat": now.Add(-10 * time.Minute).Unix(), "exp": now.Add(50 * time.Minute).Unix(), "private": "not-shown",
	}).SignedString([]byte("signing key"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func newCredential(ns, name string, mutate ...func(*clearancev1alpha1.ClearanceCredential)) *clearancev1alpha1.ClearanceCredential {
	c := &clearancev1alpha1.ClearanceCredential{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)},
		Spec: clearancev1alpha1.ClearanceCredentialSpec{
			ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: name + "-conn", Key: "config.json"},
			SecretName:          name + "-token",
		},
		Status: clearancev1alpha1.ClearanceCredentialStatus{
			Conditions: []metav1.Condition{{
				Type: clearancev1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: clearancev1alpha1.ReasonTokenValid,
				Message: "the token is valid", LastTransitionTime: *at(-10 * time.Minute),
			}},
			ExpiresAt: at(50 * time.Minute), RenewalTime: at(30 * time.Minute),
			TokenEndpoint: "https://sts.example.test/connect/token", KeyID: "urn:service:tenant123:key:1",
		},
	}
	for _, m := range mutate {
		m(c)
	}
	return c
}

func targetSecret(ns, name, token string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data: map[string][]byte{
			clearancev1alpha1.SecretKeyToken:     []byte(token),
			clearancev1alpha1.SecretKeyExpiresAt: []byte(now.Add(50 * time.Minute).Format(time.RFC3339)),
			clearancev1alpha1.SecretKeyTokenType: []byte("Bearer"),
			clearancev1alpha1.SecretKeyClientID:  []byte("151@tenant123"),
			"someExtra":                          []byte("extra-value-not-shown"),
		},
	}
}

// harness runs the plugin against a fake API.
type harness struct {
	t      *testing.T
	client client.WithWatch
}

func newHarness(t *testing.T, objs ...client.Object) *harness {
	t.Helper()
	// No kubeconfig: the namespace comes from -n, or is "default".
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	c := fake.NewClientBuilder().WithScheme(Scheme).WithObjects(objs...).
		WithStatusSubresource(&clearancev1alpha1.ClearanceCredential{}).
		WithIndex(&corev1.Event{}, eventUIDField, func(o client.Object) []string {
			return []string{string(o.(*corev1.Event).InvolvedObject.UID)}
		}).Build()
	return &harness{t: t, client: c}
}

// run executes the plugin and returns its exit status, stdout and stderr.
func (h *harness) run(args ...string) (int, string, string) {
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	o := NewOptions(streams)
	o.NewClient = func() (client.Client, error) { return h.client, nil }
	o.Now = func() time.Time { return now }
	o.PollInterval = 10 * time.Millisecond
	code := Execute(o, args)
	return code, out.String(), errOut.String()
}

func (h *harness) credential(ns, name string) *clearancev1alpha1.ClearanceCredential {
	h.t.Helper()
	c := &clearancev1alpha1.ClearanceCredential{}
	if err := h.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, c); err != nil {
		h.t.Fatal(err)
	}
	return c
}

func TestStatusShowsEverythingButTheToken(t *testing.T) {
	g := NewWithT(t)
	token := signedToken(t)
	cred := newCredential("apps", "app")
	events := []client.Object{
		&corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Namespace: "apps", Name: "e1"},
			InvolvedObject: corev1.ObjectReference{UID: cred.UID, Name: "app"},
			Type:           corev1.EventTypeNormal, Reason: "Minted", Message: "token minted (TargetMissing)",
			EventTime: metav1.NewMicroTime(now.Add(-10 * time.Minute)), ReportingController: "clearance-operator",
		},
		&corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Namespace: "apps", Name: "e2"},
			InvolvedObject: corev1.ObjectReference{UID: "someone-else", Name: "app"},
			Type:           corev1.EventTypeWarning, Reason: "OtherObject", Message: "an older object of the same name",
		},
	}
	h := newHarness(t, append(events, cred, targetSecret("apps", "app-token", token))...)

	code, out, errOut := h.run("status", "app", "-n", "apps")
	g.Expect(code).To(Equal(0), errOut)
	for _, want := range []string{
		"Name:          app\n",
		"Namespace:     apps\n",
		"Target Secret: app-token\n",
		"Ready", "TokenValid", "the token is valid",
		"Expires:       2030-01-01T12:50:00Z (in 50m)\n",
		"Next renewal:  2030-01-01T12:30:00Z (in 30m)\n",
		"STS endpoint:  https://sts.example.test/connect/token\n",
		"Key id:        urn:service:tenant123:key:1\n",
		"Keys:          clientId, expiresAt, someExtra, token, tokenType\n",
		"clientId:      151@tenant123\n",
		"sha256 " + tokeninfo.Fingerprint([]byte(token)) + "... (not printed)",
		"Claims (decoded, not verified):\n    iss: https://sts.example.test/connect\n    sub: 151@tenant123\n",
		"exp: 2030-01-01T12:50:00Z",
		"Minted", "10m", "token minted (TargetMissing)",
	} {
		g.Expect(out).To(ContainSubstring(want))
	}
	g.Expect(out).NotTo(ContainSubstring("OtherObject"), "an event of another object")
	g.Expect(out).NotTo(ContainSubstring("Failures:"), "no failure to report")
	g.Expect(out).NotTo(ContainSubstring("extra-value-not-shown"))
	g.Expect(out).NotTo(ContainSubstring("not-shown"), "a claim outside the printable list")
	g.Expect(testutil.FindSecretMaterial(map[string]string{"stdout": out, "stderr": errOut}, []string{token})).To(BeEmpty())
}

func TestStatusShowsTheFailureAndNextAttempt(t *testing.T) {
	g := NewWithT(t)
	cred := newCredential("apps", "app", func(c *clearancev1alpha1.ClearanceCredential) {
		c.Status.RenewalTime = nil
		c.Status.FailedAttempts = 3
		c.Status.LastFailureTime = at(-2 * time.Minute)
		c.Status.NextAttemptTime = at(4 * time.Minute)
		c.Status.Conditions = append(c.Status.Conditions, metav1.Condition{
			Type: clearancev1alpha1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: clearancev1alpha1.ReasonSTSUnavailable,
			Message: "renewal failing: STS down; next attempt at 2030-01-01T12:04:00Z", LastTransitionTime: *at(-5 * time.Minute),
		})
	})
	h := newHarness(t, cred)

	code, out, errOut := h.run("status", "app", "-n", "apps")
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(out).To(ContainSubstring("Failed attempts: 3\n"))
	g.Expect(out).To(ContainSubstring("Last failure:    2030-01-01T11:58:00Z (2m ago)\n"))
	g.Expect(out).To(ContainSubstring("Next attempt:    2030-01-01T12:04:00Z (in 4m)\n"))
	g.Expect(out).To(ContainSubstring("Next renewal:  <none>\n"))
	g.Expect(out).To(ContainSubstring(`cannot read it: Secret "app-token" not found`))
	g.Expect(out).To(ContainSubstring("Events:\n  <none>\n"))

	code, out, _ = h.run("status", "-n", "apps")
	g.Expect(code).To(Equal(0))
	g.Expect(out).To(MatchRegexp(`app\s+True\s+TokenValid\s+app-token\s+in 50m\s+retry in 4m\s+3\n`))
}

func TestStatusStructuredOutput(t *testing.T) {
	g := NewWithT(t)
	token := signedToken(t)
	h := newHarness(t, newCredential("apps", "app"), targetSecret("apps", "app-token", token))

	code, out, errOut := h.run("status", "app", "-n", "apps", "-o", "json")
	g.Expect(code).To(Equal(0), errOut)
	var r Report
	g.Expect(json.Unmarshal([]byte(out), &r)).To(Succeed())
	g.Expect(r.Name).To(Equal("app"))
	g.Expect(r.ExpiresAt.Time).To(Equal(now.Add(50 * time.Minute)))
	g.Expect(r.ExpiresAt.Relative).To(Equal("in 50m"))
	g.Expect(r.KeyID).To(Equal("urn:service:tenant123:key:1"))
	g.Expect(r.Target.TokenSHA256).To(Equal(tokeninfo.Fingerprint([]byte(token))))
	g.Expect(r.Target.Values).To(HaveKeyWithValue("tokenType", "Bearer"))
	g.Expect(r.Target.Values).NotTo(HaveKey("token"))
	g.Expect(r.Target.Claims).To(ContainElement(tokeninfo.Claim{Name: "sub", Value: "151@tenant123"}))
	g.Expect(out).NotTo(ContainSubstring(token))

	code, out, errOut = h.run("status", "app", "-n", "apps", "-o", "yaml")
	g.Expect(code).To(Equal(0), errOut)
	var fromYAML Report
	g.Expect(yaml.Unmarshal([]byte(out), &fromYAML)).To(Succeed())
	g.Expect(fromYAML.Target.TokenSHA256).To(Equal(r.Target.TokenSHA256))
	g.Expect(out).NotTo(ContainSubstring(token))

	code, _, errOut = h.run("status", "app", "-n", "apps", "-o", "wide")
	g.Expect(code).To(Equal(1))
	g.Expect(errOut).To(ContainSubstring("--output must be json or yaml"))
}

func TestStatusTable(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t,
		newCredential("apps", "app", func(c *clearancev1alpha1.ClearanceCredential) { c.Labels = map[string]string{"team": "video"} }),
		newCredential("apps", "other"),
		newCredential("infra", "broken", func(c *clearancev1alpha1.ClearanceCredential) {
			c.Labels = map[string]string{"team": "video"}
			c.Status = clearancev1alpha1.ClearanceCredentialStatus{Conditions: []metav1.Condition{{
				Type: clearancev1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: clearancev1alpha1.ReasonConnectionInvalid,
			}}}
		}),
	)

	code, out, errOut := h.run("status", "-A")
	g.Expect(code).To(Equal(0), errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	g.Expect(lines).To(HaveLen(4), out)
	g.Expect(strings.Fields(lines[0])).To(Equal([]string{"NAMESPACE", "NAME", "READY", "REASON", "SECRET", "EXPIRES", "NEXT", "RENEWAL", "FAILURES"}))
	g.Expect(out).To(MatchRegexp(`infra\s+broken\s+False\s+ConnectionInvalid\s+broken-token\s+<none>\s+<none>\s+0\n`))

	code, out, _ = h.run("status", "-l", "team=video", "-n", "apps")
	g.Expect(code).To(Equal(0))
	g.Expect(strings.Split(strings.TrimSpace(out), "\n")).To(HaveLen(2), out)
	g.Expect(out).To(MatchRegexp(`(?m)^app\s+True\s+TokenValid\s+app-token\s+in 50m\s+in 30m\s+0$`))

	code, out, _ = h.run("status", "-A", "-l", "team=video", "-o", "json")
	g.Expect(code).To(Equal(0))
	var list struct{ Items []Report }
	g.Expect(json.Unmarshal([]byte(out), &list)).To(Succeed())
	g.Expect(list.Items).To(HaveLen(2))

	code, _, errOut = h.run("status", "-n", "empty")
	g.Expect(code).To(Equal(0))
	g.Expect(errOut).To(Equal("No ClearanceCredentials found in namespace empty.\n"))

	code, _, errOut = h.run("status", "app", "-A")
	g.Expect(code).To(Equal(1))
	g.Expect(errOut).To(ContainSubstring("cannot be combined"))
	code, _, errOut = h.run("status", "missing", "-n", "apps")
	g.Expect(code).To(Equal(1))
	g.Expect(errOut).To(ContainSubstring("not found"))
}

func TestRenewSetsTheRefreshAnnotation(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t,
		newCredential("apps", "a", func(c *clearancev1alpha1.ClearanceCredential) { c.Labels = map[string]string{"team": "video"} }),
		newCredential("apps", "b"),
		newCredential("infra", "c", func(c *clearancev1alpha1.ClearanceCredential) { c.Spec.Suspend = true }),
	)
	want := now.Format(time.RFC3339Nano)
	annotation := func(ns, name string) string {
		return h.credential(ns, name).Annotations[clearancev1alpha1.RefreshRequestedAtAnnotation]
	}

	code, out, errOut := h.run("renew", "b", "-n", "apps")
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(out).To(Equal("clearancecredential apps/b: renewal requested\n"))
	g.Expect(annotation("apps", "b")).To(Equal(want))
	g.Expect(annotation("apps", "a")).To(BeEmpty())

	code, _, errOut = h.run("renew", "-l", "team=video", "-n", "apps")
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(annotation("apps", "a")).To(Equal(want))

	code, out, errOut = h.run("renew", "--all", "-A")
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(annotation("infra", "c")).To(Equal(want))
	g.Expect(out).To(ContainSubstring("clearancecredential infra/c: renewal requested, but it is suspended"))
	g.Expect(strings.Count(out, "renewal requested")).To(Equal(3))

	for _, bad := range [][]string{
		{"renew"},
		{"renew", "a", "--all"},
		{"renew", "a", "-A"},
		{"renew", "a", "--wait", "--timeout", "0s"},
	} {
		code, _, errOut := h.run(bad...)
		g.Expect(code).To(Equal(1), "%v", bad)
		g.Expect(errOut).To(HavePrefix("error: "), "%v", bad)
	}
	code, _, errOut = h.run("renew", "--all", "-n", "nothing-here")
	g.Expect(code).To(Equal(1))
	g.Expect(errOut).To(ContainSubstring("no ClearanceCredential matched"))
}

func TestRenewWaitsForTheNewToken(t *testing.T) {
	g := NewWithT(t)
	token := signedToken(t)
	h := newHarness(t, newCredential("apps", "app"), targetSecret("apps", "app-token", "old-token"))

	// The operator's part: once the annotation appears, write a token that
	// answers it (after a few polls, so the wait really waits).
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx := context.Background()
		for range 500 {
			time.Sleep(20 * time.Millisecond)
			cred := &clearancev1alpha1.ClearanceCredential{}
			if err := h.client.Get(ctx, client.ObjectKey{Namespace: "apps", Name: "app"}, cred); err != nil {
				continue
			}
			requested := cred.Annotations[clearancev1alpha1.RefreshRequestedAtAnnotation]
			if requested == "" {
				continue
			}
			time.Sleep(50 * time.Millisecond)
			s := targetSecret("apps", "app-token", token)
			s.Annotations = map[string]string{clearancev1alpha1.RefreshRequestedAtAnnotation: requested}
			old := &corev1.Secret{}
			_ = h.client.Get(ctx, client.ObjectKeyFromObject(s), old)
			s.ResourceVersion = old.ResourceVersion
			if err := h.client.Update(ctx, s); err != nil {
				t.Error(err)
			}
			return
		}
	}()
	code, out, errOut := h.run("renew", "app", "-n", "apps", "--wait", "--timeout", "20s")
	wg.Wait()
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(out).To(ContainSubstring("clearancecredential apps/app: new token written, expires at 2030-01-01T12:50:00Z, sha256 " +
		tokeninfo.Fingerprint([]byte(token)) + "..."))
	g.Expect(out).NotTo(ContainSubstring(token))
}

func TestRenewWaitTimesOutWithTheReason(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, newCredential("apps", "app", func(c *clearancev1alpha1.ClearanceCredential) {
		c.Status.Conditions = append(c.Status.Conditions, metav1.Condition{
			Type: clearancev1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: clearancev1alpha1.ReasonCredentialRejected,
			Message: "invalid_client",
		})
	}), targetSecret("apps", "app-token", "old-token"))

	started := time.Now()
	code, _, errOut := h.run("renew", "app", "-n", "apps", "--wait", "--timeout", "300ms")
	g.Expect(code).To(Equal(1))
	g.Expect(time.Since(started)).To(BeNumerically("<", 10*time.Second))
	g.Expect(errOut).To(ContainSubstring("clearancecredential apps/app: no new token after 300ms: Stalled=True (CredentialRejected): invalid_client"))
	g.Expect(errOut).To(ContainSubstring("timed out waiting for 1 of 1 renewals"))
}

// failingReads fails every Get after the first okReads, as the real client
// does near a deadline (its rate limiter refuses a wait it cannot finish).
type failingReads struct {
	client.WithWatch
	mu      sync.Mutex
	okReads int
}

func (f *failingReads) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.okReads <= 0 {
		return errors.New("rate: Wait(n=1) would exceed context deadline")
	}
	f.okReads--
	return f.WithWatch.Get(ctx, key, obj, opts...)
}

func TestRenewWaitKeepsTheLastReasonThroughFailedReads(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, newCredential("apps", "app", func(c *clearancev1alpha1.ClearanceCredential) {
		c.Status.Conditions = []metav1.Condition{{
			Type: clearancev1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: clearancev1alpha1.ReasonSTSUnavailable,
			Message: "connection refused",
		}}
	}))
	// The command's own Get, then one poll (credential and Secret reads).
	h.client = &failingReads{WithWatch: h.client, okReads: 3}

	code, _, errOut := h.run("renew", "app", "-n", "apps", "--wait", "--timeout", "200ms")
	g.Expect(code).To(Equal(1))
	g.Expect(errOut).To(ContainSubstring("no new token after 200ms: Ready=False (STSUnavailable): connection refused\n"))
	g.Expect(errOut).NotTo(ContainSubstring("rate:"))
}

func TestCheckConnectionFileAndSecret(t *testing.T) {
	g := NewWithT(t)
	srv := clearancetest.NewTestServer(t)
	cf, err := srv.NewConnectionFile()
	g.Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(t.TempDir(), "connection.json")
	g.Expect(cf.WriteFile(path)).To(Succeed())
	h := newHarness(t, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "conn"},
		Data:       map[string][]byte{"config.json": cf.Data, "other.json": cf.Data},
	})
	secrets := testutil.SecretMaterial(cf.Data)

	code, out, errOut := h.run(withEgress("check", "--connection-file", path)...)
	g.Expect(code).To(Equal(0), errOut)
	for _, want := range []string{"client_id:  " + cf.ClientID(), "endpoint:   " + srv.TokenEndpoint(), "expires at: ", "sub: " + cf.ClientID(), "not printed"} {
		g.Expect(out).To(ContainSubstring(want))
	}
	g.Expect(testutil.FindSecretMaterial(map[string]string{"stdout": out, "stderr": errOut}, secrets)).To(BeEmpty())

	code, out, errOut = h.run(withEgress("check", "--secret", "conn", "-n", "apps", "--encoding", "json", "--audience", "aud-1")...)
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(out).To(ContainSubstring("client_id:  " + cf.ClientID()))
	reqs := srv.Requests()
	g.Expect(reqs).To(HaveLen(2))
	g.Expect(reqs[1].Encoding).To(Equal("json"))
	g.Expect(reqs[1].Audience).To(Equal([]string{"aud-1"}))
	g.Expect(testutil.FindSecretMaterial(map[string]string{"stdout": out, "stderr": errOut}, secrets)).To(BeEmpty())

	code, out, errOut = h.run(withEgress("check", "--secret", "conn", "-n", "apps", "--key", "missing")...)
	g.Expect(code).To(Equal(1))
	g.Expect(errOut).To(ContainSubstring(`has no key "missing"`))
	g.Expect(errOut).To(ContainSubstring("config.json"))
	g.Expect(testutil.FindSecretMaterial(map[string]string{"stdout": out, "stderr": errOut}, secrets)).To(BeEmpty())

	// A revoked key: the classified error and its hint, exit status 1.
	g.Expect(srv.Revoke(cf.ClientID())).To(BeTrue())
	code, _, errOut = h.run(withEgress("check", "--connection-file", path)...)
	g.Expect(code).To(Equal(1))
	g.Expect(errOut).To(ContainSubstring("invalid_client"))
	g.Expect(errOut).To(ContainSubstring("hint: " + clearance.HintRejectedKey))

	// A broken file: the parser's error and hint, never the content.
	broken := filepath.Join(t.TempDir(), "broken.json")
	g.Expect(os.WriteFile(broken, append([]byte(`{"x":`), cf.Data...), 0o600)).To(Succeed())
	code, out, errOut = h.run(withEgress("check", "--connection-file", broken)...)
	g.Expect(code).To(Equal(1))
	g.Expect(errOut).To(ContainSubstring("hint: " + clearance.HintConnectionFile))
	g.Expect(testutil.FindSecretMaterial(map[string]string{"stdout": out, "stderr": errOut}, secrets)).To(BeEmpty())

	for _, bad := range [][]string{
		{"check"},
		{"check", "--connection-file", path, "--secret", "conn"},
		{"check", "--connection-file", path, "--encoding", "xml"},
		{"check", "--connection-file", path, "--timeout", "0s"},
	} {
		code, _, errOut := h.run(bad...)
		g.Expect(code).To(Equal(2), "%v", bad)
		g.Expect(errOut).To(HavePrefix("error: "), "%v", bad)
	}
}

// withEgress adds the egress flags that let a check reach the emulator.
func withEgress(args ...string) []string {
	return append(args, testutil.EmulatorEgressFlags...)
}
