package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
	"github.com/clearance-operator/clearance-operator/internal/tokeninfo"
)

// jwtPattern matches a compact JWS (an access token) anywhere in the output.
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)

// emulatorManagerArgs lets the manager reach the test's emulator, which
// stands in for the real STS a CONNECTION_FILE names.
var emulatorManagerArgs = "MANAGER_ARGS=" + strings.Join(testutil.EmulatorEgressFlags, " ")

func TestLoadOptions(t *testing.T) {
	g := NewWithT(t)
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	o, err := loadOptions(env(nil))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(o).To(Equal(options{timeout: defaultTimeout}))

	o, err = loadOptions(env(map[string]string{"RUN_LOCAL_ONCE": "1", "CONNECTION_FILE": " /x.json ", "RUN_LOCAL_TIMEOUT": "90s",
		"MANAGER_ARGS": " --sts-allow-http  --sts-allow-cidrs=10.0.0.0/8 "}))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(o).To(Equal(options{once: true, connectionFile: "/x.json", timeout: 90 * time.Second,
		managerArgs: []string{"--sts-allow-http", "--sts-allow-cidrs=10.0.0.0/8"}}))

	for _, bad := range []map[string]string{
		{"RUN_LOCAL_ONCE": "maybe"},
		{"RUN_LOCAL_TIMEOUT": "soon"},
		{"RUN_LOCAL_TIMEOUT": "-1s"},
	} {
		_, err := loadOptions(env(bad))
		g.Expect(err).To(HaveOccurred(), "%v", bad)
	}
}

func TestTokenClaims(t *testing.T) {
	g := NewWithT(t)
	iat := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "http://127.0.0.1:1/connect", "sub": "151@tenant123", "aud": []string{"client", "other"},
		"iat": iat.Unix(), "exp": iat.Add(time.Hour).Unix(), "custom": "not printed",
	}).SignedString([]byte("test key"))
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(strings.Fields(tokeninfo.Join(tokeninfo.Claims(tok), "=", " "))).To(Equal([]string{
		"iss=http://127.0.0.1:1/connect", "sub=151@tenant123", "aud=client,other",
		"iat=2030-01-02T03:04:05Z", "exp=2030-01-02T04:04:05Z",
	}))
	g.Expect(tokeninfo.Claims("opaque-token")).To(BeEmpty())
	// The guard the subprocess tests use recognises a token, in a line too.
	g.Expect(jwtPattern.FindString("token: " + tok + " end")).To(Equal(tok))
}

func TestDescribeTokenSecretNeverShowsTheToken(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	token := "opaque-access-token-value"
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{renewalTimeAnnotation: "2030-01-01T00:01:20Z"}},
		Data: map[string][]byte{
			clearancev1alpha1.SecretKeyToken:     []byte(token),
			clearancev1alpha1.SecretKeyExpiresAt: []byte("2030-01-01T00:02:00Z"),
			clearancev1alpha1.SecretKeyTokenType: []byte("Bearer"),
			clearancev1alpha1.SecretKeyClientID:  []byte("151@tenant123"),
			"securityTokenServiceBaseAddress":    []byte("http://127.0.0.1:1/connect"),
			"unexpected":                         []byte("maybe-secret"),
		},
	}
	lines := append(describeTokenSecret(secret, "abcdef", now), describeExtras(secret)...)
	out := strings.Join(lines, "\n")
	g.Expect(out).To(ContainSubstring("expires at 2030-01-01T00:02:00Z (in 2m0s)"))
	g.Expect(out).To(ContainSubstring("next renewal at 2030-01-01T00:01:20Z (in 1m20s)"))
	g.Expect(out).To(ContainSubstring("token: 25 bytes, sha256 abcdef..."))
	g.Expect(out).To(ContainSubstring("clientId=151@tenant123"))
	g.Expect(out).To(ContainSubstring("tokenType=Bearer"))
	g.Expect(out).To(ContainSubstring("securityTokenServiceBaseAddress"))
	g.Expect(out).To(ContainSubstring("unexpected=<12 bytes>"))
	g.Expect(out).NotTo(ContainSubstring(token))
	g.Expect(out).NotTo(ContainSubstring("maybe-secret"))
}

// The tests below run the real program (control plane, emulator, manager) as
// a subprocess, as `make run-local` does.

const (
	// runTimeout bounds one run-local run in these tests.
	runTimeout = 150 * time.Second
	// stopTimeout bounds run-local's cleanup after a signal.
	stopTimeout = 60 * time.Second
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "run-local-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(binDir)
	os.Exit(code)
}

// runLocalBinary builds this program once, with the default Go environment
// so the build shares the cache of the test binary and of the manager build.
func runLocalBinary(t *testing.T) string {
	t.Helper()
	if _, err := testutil.AssetsDir(); err != nil {
		t.Fatalf("control plane binaries: %v", err)
	}
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		binPath = filepath.Join(binDir, "run-local")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", binPath, "./hack/run-local") //nolint:gosec // fixed tool, test-controlled output path
		cmd.Dir = testutil.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./hack/run-local: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// startRunLocal starts the program with env and makes sure it is gone when
// the test ends (SIGTERM first, so it stops its control plane).
func startRunLocal(t *testing.T, env ...string) *gexec.Session {
	t.Helper()
	bin := runLocalBinary(t)
	p, err := testutil.StartSession(bin, nil, env, filepath.Join(t.TempDir(), "run-local.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		NewWithT(t).Eventually(p.Terminate()).WithTimeout(stopTimeout).Should(gexec.Exit(), "stopping run-local")
		if t.Failed() {
			t.Logf("run-local output:\n%s", output(p))
		}
	})
	return p
}

// output returns everything run-local printed so far: its own lines
// (stdout), then its errors (stderr).
func output(p *gexec.Session) string { return string(p.Out.Contents()) + string(p.Err.Contents()) }

// submatch returns the first group of re in s, failing the test without one.
func submatch(t *testing.T, re, s string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no line matching %q in the output", re)
	}
	return m[1]
}

// expectCleanedUp checks that the working directory printed at the start is gone.
func expectCleanedUp(t *testing.T, g Gomega, out string) {
	t.Helper()
	dir := submatch(t, `working directory (\S+) \(removed on exit\)`, out)
	g.Expect(out).To(ContainSubstring("stopped everything and removed " + dir))
	_, err := os.Stat(dir)
	g.Expect(os.IsNotExist(err)).To(BeTrue(), "%s still exists", dir)
}

// TestOnceWithEmulator is the CI check: RUN_LOCAL_ONCE=1 with the built-in
// emulator exits 0 once the sample is Ready, having printed what a person
// needs and no token.
func TestOnceWithEmulator(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	started := time.Now()
	p := startRunLocal(t, "RUN_LOCAL_ONCE=1", "CONNECTION_FILE=", "RUN_LOCAL_TIMEOUT=2m")
	g.Eventually(p).WithTimeout(runTimeout).Should(gexec.Exit(0), func() string { return output(p) })
	out := output(p)

	for _, want := range []string{
		"control plane up at https://127.0.0.1:",
		"STS emulator up at http://127.0.0.1:",
		"manager started (pid ",
		"ClearanceCredential clearance-demo/clearance is Ready (TokenValid)",
		"token written to Secret clearance-demo/clearance-token",
		"claims (decoded, not verified): iss=http://127.0.0.1:",
		"client_id=151@tenant123",
		"(the token itself is not printed)",
		"kubectl get ccred -A",
		"kubectl describe ccred -n clearance-demo clearance",
		"bin/kubectl-clearance status -n clearance-demo clearance",
		"RUN_LOCAL_ONCE is set",
	} {
		g.Expect(out).To(ContainSubstring(want))
	}
	kubeconfig := submatch(t, `kubeconfig: (\S+)`, out)
	g.Expect(out).To(ContainSubstring("KUBECONFIG=" + kubeconfig + " "))

	// The printed expiry is the emulator's 2-minute lifetime from about now.
	exp, err := time.Parse(time.RFC3339, submatch(t, `expires at (\S+) \(in `, out))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(exp).To(BeTemporally(">", started.Add(emulatorTokenTTL-5*time.Second)))
	g.Expect(exp).To(BeTemporally("<", time.Now().Add(emulatorTokenTTL+5*time.Second)))

	g.Expect(jwtPattern.FindString(out)).To(BeEmpty(), "a token was printed")
	expectCleanedUp(t, g, out)
}

// TestConnectionFileRenewalAndInterrupt uses CONNECTION_FILE (an emulator
// owned by the test stands in for the real STS), sees a renewal printed, then
// interrupts the program and checks that everything it started is gone.
func TestConnectionFileRenewalAndInterrupt(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	// 15-second tokens are renewed about 10 seconds after they are issued.
	sts := clearancetest.NewTestServer(t, clearancetest.WithTokenTTL(15*time.Second))
	cf, err := sts.NewConnectionFile()
	g.Expect(err).NotTo(HaveOccurred())
	connPath := filepath.Join(t.TempDir(), "connection.json")
	g.Expect(cf.WriteFile(connPath)).To(Succeed())

	p := startRunLocal(t, "RUN_LOCAL_ONCE=", "CONNECTION_FILE="+connPath, emulatorManagerArgs, "RUN_LOCAL_TIMEOUT=2m")
	g.Eventually(p.Out).WithTimeout(30*time.Second).Should(gbytes.Say(
		regexp.QuoteMeta("using CONNECTION_FILE ")+`\S+: `+regexp.QuoteMeta("client "+cf.ClientID()+", STS "+sts.BaseURL())), func() string { return output(p) })
	g.Eventually(p.Out).WithTimeout(runTimeout).Should(gbytes.Say(regexp.QuoteMeta("is Ready (TokenValid)")), func() string { return output(p) })
	g.Eventually(p.Out).WithTimeout(time.Minute).Should(gbytes.Say(regexp.QuoteMeta("token renewed in Secret clearance-demo/clearance-token (renewal 1)")), func() string { return output(p) })
	g.Expect(sts.Stats().Client(cf.ClientID(), clearancetest.OutcomeSuccess)).To(BeNumerically(">=", 2))

	out := output(p)
	managerPID, err := strconv.Atoi(submatch(t, `manager started \(pid (\d+);`, out))
	g.Expect(err).NotTo(HaveOccurred())
	apiserver := submatch(t, `control plane up at https://(127\.0\.0\.1:\d+)/`, out)

	g.Eventually(p.Interrupt()).WithTimeout(stopTimeout).Should(gexec.Exit(0), func() string { return output(p) })
	out = output(p)
	g.Expect(out).To(ContainSubstring("interrupted; stopping"))
	g.Expect(out).NotTo(ContainSubstring("STS emulator up"))
	expectCleanedUp(t, g, out)

	// The manager was waited for (so it is gone, not a zombie) and the
	// apiserver no longer listens.
	g.Expect(errors.Is(syscall.Kill(managerPID, 0), syscall.ESRCH)).To(BeTrue(), "manager pid %d still exists", managerPID)
	dialCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dialCtx, "tcp", apiserver)
	if err == nil {
		_ = conn.Close()
		t.Errorf("kube-apiserver still listens on %s", apiserver)
	}
	g.Expect(jwtPattern.FindString(out)).To(BeEmpty(), "a token was printed")
}

// TestOnceFailsFastOnRejectedKey: with a key the STS rejects, RUN_LOCAL_ONCE
// exits non-zero as soon as the credential is Stalled, saying why.
func TestOnceFailsFastOnRejectedKey(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	sts := clearancetest.NewTestServer(t)
	cf, err := sts.NewConnectionFile()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sts.Revoke(cf.ClientID())).To(BeTrue())
	connPath := filepath.Join(t.TempDir(), "connection.json")
	g.Expect(cf.WriteFile(connPath)).To(Succeed())

	p := startRunLocal(t, "RUN_LOCAL_ONCE=1", "CONNECTION_FILE="+connPath, emulatorManagerArgs, "RUN_LOCAL_TIMEOUT=2m")
	g.Eventually(p).WithTimeout(runTimeout).Should(gexec.Exit(1), func() string { return output(p) })
	out := output(p)
	g.Expect(out).To(ContainSubstring("is Stalled (CredentialRejected)"))
	g.Expect(out).To(ContainSubstring(clearance.HintRejectedKey))
	g.Expect(out).To(ContainSubstring("giving up"))
	g.Expect(out).NotTo(ContainSubstring("timed out"))
	expectCleanedUp(t, g, out)
}

// TestInvalidConnectionFileFailsBeforeStarting: a bad CONNECTION_FILE is
// reported at once, without starting anything and without echoing its content.
func TestInvalidConnectionFileFailsBeforeStarting(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	path := filepath.Join(t.TempDir(), "connection.json")
	g.Expect(os.WriteFile(path, []byte(`{"ServicePrincipalId": "PRIVATE-MARKER", "TenantId": "t"}`), 0o600)).To(Succeed())

	p := startRunLocal(t, "RUN_LOCAL_ONCE=1", "CONNECTION_FILE="+path, emulatorManagerArgs)
	g.Eventually(p).WithTimeout(30 * time.Second).Should(gexec.Exit())
	out := output(p)
	g.Expect(p.ExitCode()).NotTo(BeZero())
	g.Expect(out).To(ContainSubstring("CONNECTION_FILE " + path + " is not a usable connection file"))
	g.Expect(out).NotTo(ContainSubstring("PRIVATE-MARKER"))
	g.Expect(out).NotTo(ContainSubstring("control plane"))
}
