package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

// EmulatorReadyLine is what hack/sts-emulator prints, followed by its base
// URL, once it accepts connections.
const EmulatorReadyLine = "sts-emulator listening on "

// StartEmulator starts the hack/sts-emulator binary with args (which should
// include --listen 127.0.0.1:0) and waits for its ready line. It returns the
// process and the base URL connection files name (server root + "/connect").
func StartEmulator(bin string, args []string, logPath string, timeout time.Duration) (*Process, string, error) {
	p, err := StartProcess(bin, args, nil, logPath)
	if err != nil {
		return nil, "", err
	}
	line, err := p.WaitForLine(EmulatorReadyLine, timeout)
	if err != nil {
		p.Kill()
		return nil, "", fmt.Errorf("sts-emulator did not start: %w\n%s", err, p.Output())
	}
	return p, strings.TrimSpace(line[strings.Index(line, EmulatorReadyLine)+len(EmulatorReadyLine):]), nil
}

// EmulatorStats reads the request counters of an emulator process from its
// loopback-only admin endpoint; baseURL is the URL StartEmulator returned.
func EmulatorStats(ctx context.Context, baseURL string) (clearancetest.Stats, error) {
	var st clearancetest.Stats
	root := strings.TrimSuffix(strings.TrimSuffix(baseURL, "/"), "/connect")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, root+clearancetest.AdminPath+"/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET %s: status %d", req.URL, resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// LoopbackEgress is the egress policy that lets an STS client reach an
// emulator: plain http, on loopback. The operator refuses both by default;
// its --sts-allow-http and --sts-allow-cidrs flags grant the same.
var LoopbackEgress = clearance.EgressOptions{Policy: clearance.DestinationPolicy{
	AllowHTTP:       true,
	AllowedPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
}}

// EmulatorEgressFlags are the manager flags that grant what LoopbackEgress
// grants, for managers run as processes against an emulator.
var EmulatorEgressFlags = []string{"--sts-allow-http", "--sts-allow-cidrs=127.0.0.0/8,::1/128"}
