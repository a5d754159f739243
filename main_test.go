package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"

	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// jwtPattern matches a compact JWS (an access token) anywhere in the output.
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)

// privateMarker is planted in invalid connection files; it must never be echoed.
const privateMarker = "PRIVATEMARKERxyz"

// mint runs the subcommand with the egress flags an emulator needs and
// returns its exit status, stdout and stderr.
func mint(args ...string) (int, string, string) {
	return mintWithPolicy(slices.Concat(testutil.EmulatorEgressFlags, args)...)
}

// mintWithPolicy runs the subcommand with exactly args.
func mintWithPolicy(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := runMint(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// newEmulator starts an STS emulator with a trusted client whose connection
// file is written to a temporary file.
func newEmulator(t *testing.T, opts ...clearancetest.Option) (*clearancetest.Server, *clearancetest.ConnectionFile, string) {
	t.Helper()
	srv := clearancetest.NewTestServer(t, opts...)
	cf, err := srv.NewConnectionFile()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "connection.json")
	if err := cf.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return srv, cf, path
}

// lastRequest is the emulator's record of the latest token request.
func lastRequest(t *testing.T, srv *clearancetest.Server) clearancetest.Request {
	t.Helper()
	reqs := srv.Requests()
	if len(reqs) == 0 {
		t.Fatal("the emulator saw no token request")
	}
	return reqs[len(reqs)-1]
}

func TestMintSuccessPrintsEverythingButTheToken(t *testing.T) {
	g := NewWithT(t)
	srv, cf, path := newEmulator(t, clearancetest.WithTokenTTL(10*time.Minute))

	started := time.Now()
	code, out, errOut := mint("--connection-file", path)
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(errOut).To(BeEmpty())
	for _, want := range []string{
		"client_id:  " + cf.ClientID(),
		"key id:     " + cf.KeyID,
		"STS:        " + srv.BaseURL(),
		"endpoint:   " + srv.TokenEndpoint(),
		"token type: Bearer",
		"claims (decoded, not verified):",
		"  client_id: " + cf.ClientID() + "\n",
		"  iss: " + srv.BaseURL() + "\n",
		"  sub: " + cf.ClientID() + "\n",
		"token:      sha256 ",
		"..., not printed\n",
	} {
		g.Expect(out).To(ContainSubstring(want))
	}
	exp, err := time.Parse(time.RFC3339, regexp.MustCompile(`expires at: (\S+) \(in `).FindStringSubmatch(out)[1])
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(exp).To(BeTemporally("~", started.Add(10*time.Minute), 5*time.Second))

	g.Expect(jwtPattern.FindString(out+errOut)).To(BeEmpty(), "the token was printed")
	g.Expect(lastRequest(t, srv).Encoding).To(Equal("form"))
	g.Expect(srv.Stats().Client(cf.ClientID(), clearancetest.OutcomeSuccess)).To(Equal(int64(1)))
}

func TestMintPrintTokenPrintsAVerifiableToken(t *testing.T) {
	g := NewWithT(t)
	srv, cf, path := newEmulator(t)

	code, out, errOut := mint("--connection-file", path, "--print-token")
	g.Expect(code).To(Equal(0), errOut)
	m := regexp.MustCompile(`(?m)^token:      (\S+)$`).FindStringSubmatch(out)
	g.Expect(m).NotTo(BeNil(), out)
	g.Expect(jwtPattern.MatchString(m[1])).To(BeTrue(), "the guard used by the other tests recognises a real token")

	// It is the token the emulator issued: signed by its key, for this client.
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(m[1], claims, func(*jwt.Token) (any, error) { return srv.SigningPublicKey(), nil },
		jwt.WithValidMethods([]string{"RS256"}))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claims["sub"]).To(Equal(cf.ClientID()))
}

func TestMintEncodingAndAudience(t *testing.T) {
	g := NewWithT(t)
	srv, _, path := newEmulator(t)

	code, _, errOut := mint("--connection-file", path, "--encoding", "json", "--audience", srv.TokenEndpoint())
	g.Expect(code).To(Equal(0), errOut)
	req := lastRequest(t, srv)
	g.Expect(req.Encoding).To(Equal("json"))
	g.Expect(req.Audience).To(Equal([]string{srv.TokenEndpoint()}))

	// The value is case-insensitive, as in the CRD's "JSON".
	code, _, errOut = mint("--connection-file", path, "--encoding", "JSON")
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(lastRequest(t, srv).Encoding).To(Equal("json"))
}

func TestMintRejectedKey(t *testing.T) {
	g := NewWithT(t)
	srv, cf, path := newEmulator(t)
	g.Expect(srv.Revoke(cf.ClientID())).To(BeTrue())

	code, out, errOut := mint("--connection-file", path)
	g.Expect(code).To(Equal(1))
	g.Expect(errOut).To(ContainSubstring("error: token request failed: STS " + srv.TokenEndpoint() + " rejected the token request"))
	g.Expect(errOut).To(ContainSubstring("invalid_client"))
	g.Expect(errOut).To(ContainSubstring("hint: " + clearance.HintRejectedKey))
	g.Expect(out).NotTo(ContainSubstring("expires at"))
	g.Expect(jwtPattern.FindString(out + errOut)).To(BeEmpty())
}

func TestMintUnreachableSTS(t *testing.T) {
	g := NewWithT(t)
	srv, _, path := newEmulator(t)
	g.Expect(srv.StopListening()).To(Succeed())

	started := time.Now()
	code, out, errOut := mint("--connection-file", path, "--timeout", "20s")
	g.Expect(code).To(Equal(1))
	// A refused connection is reported at once, not after the timeout.
	g.Expect(time.Since(started)).To(BeNumerically("<", 10*time.Second))
	g.Expect(errOut).To(ContainSubstring("error: token request failed: token request to STS " + srv.TokenEndpoint() + " failed"))
	g.Expect(errOut).To(ContainSubstring("hint: " + clearance.HintUnreachable))
	g.Expect(errOut).To(ContainSubstring("detail: connection refused"), "the file owner's own terminal gets the detail")
	g.Expect(out).NotTo(ContainSubstring("endpoint:"))
}

func TestMintAppliesTheOperatorsDestinationPolicy(t *testing.T) {
	g := NewWithT(t)
	srv, _, path := newEmulator(t)
	code, _, errOut := mintWithPolicy("--connection-file", path)
	g.Expect(code).To(Equal(1))
	g.Expect(errOut).To(ContainSubstring("is not allowed: http://"))
	code, _, errOut = mintWithPolicy("--connection-file", path, "--sts-allow-http")
	g.Expect(code).To(Equal(1))
	g.Expect(errOut).To(ContainSubstring("it is a loopback address"))
	g.Expect(srv.Stats().TokenRequests).To(BeZero(), "nothing was sent")
	code, _, errOut = mintWithPolicy("--connection-file", path, "--sts-allow-cidrs=127.0.0.1")
	g.Expect(code).To(Equal(2))
	g.Expect(errOut).To(ContainSubstring(`--sts-allow-cidrs: invalid CIDR "127.0.0.1"`))
}

func TestSetMemoryLimit(t *testing.T) {
	g := NewWithT(t)
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("MEMORY_LIMIT_BYTES", "268435456")
	g.Expect(setMemoryLimit()).To(Equal("241591905"))
	g.Expect(debug.SetMemoryLimit(-1)).To(BeEquivalentTo(241591905), "90% of the container's limit")
	t.Setenv("GOMEMLIMIT", "100MiB")
	g.Expect(setMemoryLimit()).To(Equal("100MiB"), "GOMEMLIMIT wins")
}

func TestMintInvalidConnectionFile(t *testing.T) {
	srv, cf, _ := newEmulator(t)
	var doc map[string]any
	if err := json.Unmarshal(cf.Data, &doc); err != nil {
		t.Fatal(err)
	}
	// variant returns the generated file with one change.
	variant := func(change func(map[string]any)) []byte {
		var d map[string]any
		b, _ := json.Marshal(doc)
		_ = json.Unmarshal(b, &d)
		change(d)
		out, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	tests := []struct {
		name    string
		content []byte
		want    string
	}{
		{"not JSON", []byte("APIKey=" + privateMarker + "\n"), "error: invalid connection file: "},
		{"no STS address", variant(func(d map[string]any) {
			d["APIKey"] = privateMarker
			delete(d, "SecurityTokenServiceBaseAddresses")
		}), "error: invalid connection file: SecurityTokenServiceBaseAddresses"},
		{"broken key", variant(func(d map[string]any) {
			key, _ := d["ServicePrincipalKey"].(map[string]any)
			key["kty"] = privateMarker
		}), "error: invalid connection file: ServicePrincipalKey"},
		{"relative STS address", variant(func(d map[string]any) {
			d["SecurityTokenServiceBaseAddresses"] = []string{"/" + privateMarker}
		}), "error: invalid connection file: SecurityTokenServiceBaseAddresses[0]"},
		{"too large", append(bytes.Repeat([]byte(" "), clearance.MaxConnectionFileSize), []byte(privateMarker)...), "error: invalid connection file: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			path := filepath.Join(t.TempDir(), "connection.json")
			g.Expect(os.WriteFile(path, tc.content, 0o600)).To(Succeed())
			code, out, errOut := mint("--connection-file", path)
			g.Expect(code).To(Equal(1))
			g.Expect(out).To(BeEmpty())
			g.Expect(errOut).To(ContainSubstring(tc.want))
			g.Expect(errOut).To(ContainSubstring("hint: " + clearance.HintConnectionFile))
			g.Expect(errOut).NotTo(ContainSubstring(privateMarker))
		})
	}
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Errorf("an invalid file led to %d token requests", n)
	}

	g := NewWithT(t)
	code, _, errOut := mint("--connection-file", filepath.Join(t.TempDir(), "missing.json"))
	g.Expect(code).To(Equal(1))
	g.Expect(errOut).To(ContainSubstring("error: cannot read the connection file: "))
	g.Expect(errOut).To(ContainSubstring("no such file or directory"))
}

func TestMintUsageErrors(t *testing.T) {
	g := NewWithT(t)
	for _, args := range [][]string{
		{},
		{"--connection-file", "x.json", "--encoding", "xml"},
		{"--connection-file", "x.json", "extra"},
		{"--connection-file", "x.json", "--timeout", "0s"},
		{"--no-such-flag"},
	} {
		code, out, errOut := mint(args...)
		g.Expect(code).To(Equal(2), "args %q", args)
		g.Expect(out).To(BeEmpty())
		g.Expect(strings.TrimSpace(errOut)).NotTo(BeEmpty())
	}
	code, _, errOut := mint("-h")
	g.Expect(code).To(Equal(0))
	g.Expect(errOut).To(ContainSubstring("usage: clearance-operator mint --connection-file FILE"))
}
