package clearancetest_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

func TestStatsCounters(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	a := newClient(t, srv, 1)
	b := newClient(t, srv, 2)
	for range 3 {
		g.Expect(request(t, srv, a, "form").Status).To(Equal(200))
	}
	g.Expect(request(t, srv, b, "json").Status).To(Equal(200))
	post(t, srv.Client(), srv.TokenEndpoint(), "form", params(b.ClientID(), "garbage"))
	post(t, srv.Client(), srv.TokenEndpoint(), "form", map[string]string{"client_id": a.ClientID(), "grant_type": "password"})
	post(t, srv.Client(), srv.TokenEndpoint(), "form", params("7@stranger", "x"))
	g.Expect(srv.InjectFault(clearancetest.FaultServerError(503).Times(1))).To(Succeed())
	request(t, srv, a, "form")

	st := srv.Stats()
	g.Expect(st.TokenRequests).To(Equal(int64(8)))
	g.Expect(st.Outcomes).To(Equal(map[string]int64{
		"success": 4, "invalid_grant": 1, "unsupported_grant_type": 1, "invalid_client": 1, "fault": 1,
	}))
	g.Expect(st.Client(a.ClientID(), "success")).To(Equal(int64(3)))
	g.Expect(st.Client(a.ClientID(), "fault")).To(Equal(int64(1)))
	g.Expect(st.Client(b.ClientID(), "invalid_grant")).To(Equal(int64(1)))
	g.Expect(st.Client(clearancetest.UnknownClient, "invalid_client")).To(Equal(int64(1)))
	g.Expect(st.Clients).NotTo(HaveKey("7@stranger"))

	// The same numbers over HTTP.
	var viaHTTP clearancetest.Stats
	g.Expect(json.Unmarshal(get(t, srv.Client(), srv.URL()+"/_emulator/stats"), &viaHTTP)).To(Succeed())
	g.Expect(viaHTTP).To(Equal(st))

	status, _ := do(t, srv.Client(), http.MethodDelete, srv.URL()+"/_emulator/stats", "", "")
	g.Expect(status).To(Equal(http.StatusNoContent))
	g.Expect(srv.Stats().TokenRequests).To(BeZero())
	g.Expect(srv.Requests()).To(BeEmpty())
}

func TestRequestsAndHook(t *testing.T) {
	g := NewWithT(t)
	var mu sync.Mutex
	var seen []clearancetest.Request
	srv := newServer(t, clearancetest.WithRequestHistory(2), clearancetest.WithRequestHook(func(r clearancetest.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r)
	}))
	cf := newClient(t, srv, 1)
	now := time.Now()
	for i, enc := range []string{"form", "json", "json"} {
		jti := []string{"j1", "j2", "j3"}[i]
		a, err := cf.SignAssertion(clearancetest.AssertionOptions{Now: now, JTI: jti, Audience: srv.TokenEndpoint()})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(post(t, srv.Client(), srv.TokenEndpoint(), enc, params(cf.ClientID(), a)).Status).To(Equal(200))
	}
	mu.Lock()
	g.Expect(seen).To(HaveLen(3))
	g.Expect(seen[0].Encoding).To(Equal("form"))
	mu.Unlock()

	reqs := srv.Requests()
	g.Expect(reqs).To(HaveLen(2), "history is bounded")
	g.Expect(reqs[0].JTI).To(Equal("j2"))
	g.Expect(reqs[1].JTI).To(Equal("j3"))
	r := reqs[1]
	g.Expect(r.Encoding).To(Equal("json"))
	g.Expect(r.ClientID).To(Equal(cf.ClientID()))
	g.Expect(r.GrantType).To(Equal(clearancetest.GrantTypeJWTBearer))
	g.Expect(r.Algorithm).To(Equal("RS256"))
	g.Expect(r.Issuer).To(Equal(cf.ClientID()))
	g.Expect(r.Audience).To(Equal([]string{srv.TokenEndpoint()}))
	g.Expect(r.IssuedAt.Unix()).To(Equal(now.Unix()))
	g.Expect(r.Expiry.Unix()).To(Equal(now.Add(time.Hour).Unix()))
	g.Expect(r.NotBefore).NotTo(BeNil())
	g.Expect(r.Status).To(Equal(200))

	var viaHTTP struct {
		Requests []clearancetest.Request `json:"requests"`
	}
	g.Expect(json.Unmarshal(get(t, srv.Client(), srv.URL()+"/_emulator/requests"), &viaHTTP)).To(Succeed())
	g.Expect(viaHTTP.Requests).To(HaveLen(2))
	g.Expect(viaHTTP.Requests[1].JTI).To(Equal("j3"))
}

func TestAdminFaults(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	u := srv.URL() + "/_emulator/faults"

	status, body := do(t, srv.Client(), http.MethodPost, u, "application/json",
		`[{"count": 1, "status": 429, "header": {"Retry-After": "3"}, "body": "{\"error\":\"slow_down\"}"},
		  {"count": 1, "override": {"expires_in": 9223372036854775807}},
		  {"count": 1, "remove": ["access_token"], "latency": "10ms"}]`)
	g.Expect(status).To(Equal(http.StatusCreated), string(body))
	var listed struct {
		Faults []clearancetest.Fault `json:"faults"`
	}
	g.Expect(json.Unmarshal(get(t, srv.Client(), u), &listed)).To(Succeed())
	g.Expect(listed.Faults).To(HaveLen(3))
	g.Expect(listed.Faults[2].Latency).To(Equal(10 * time.Millisecond))

	r := request(t, srv, cf, "form")
	g.Expect(r.Status).To(Equal(429))
	g.Expect(r.Header.Get("Retry-After")).To(Equal("3"))
	r = request(t, srv, cf, "form")
	g.Expect(r.JSON["expires_in"]).To(Equal(json.Number("9223372036854775807")), "numbers pass through exactly")
	r = request(t, srv, cf, "form")
	g.Expect(r.Status).To(Equal(200))
	g.Expect(r.JSON).NotTo(HaveKey("access_token"))

	status, _ = do(t, srv.Client(), http.MethodPost, u, "application/json", `{"status": 500}`)
	g.Expect(status).To(Equal(http.StatusCreated))
	g.Expect(request(t, srv, cf, "form").Status).To(Equal(500))
	status, _ = do(t, srv.Client(), http.MethodDelete, u, "", "")
	g.Expect(status).To(Equal(http.StatusNoContent))
	g.Expect(request(t, srv, cf, "form").Status).To(Equal(200))

	for _, bad := range []string{`{}`, `{"status": 99}`, `{"latency": "soon"}`, `[{"status": 500}, {"drop": true, "status": 500}]`, `not json`} {
		status, _ = do(t, srv.Client(), http.MethodPost, u, "application/json", bad)
		g.Expect(status).To(Equal(http.StatusBadRequest), bad)
	}
	g.Expect(srv.PendingFaults()).To(BeEmpty(), "an invalid list adds nothing")
	status, _ = do(t, srv.Client(), http.MethodPost, u, "text/plain", `{"status": 500}`)
	g.Expect(status).To(Equal(http.StatusUnsupportedMediaType))
}

func TestAdminClientsTrustRevokeSettings(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	c := srv.Client()

	// A new client over HTTP.
	status, body := do(t, c, http.MethodPost, srv.URL()+"/_emulator/clients", "application/json", `{"service_name": "demo"}`)
	g.Expect(status).To(Equal(http.StatusCreated))
	cf, err := clearancetest.ParseConnectionFile(body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cf.KeyID).To(HaveSuffix(":demo:" + cf.ServicePrincipalID))
	g.Expect(request(t, srv, cf, "form").Status).To(Equal(200))

	// Revoke over HTTP.
	status, _ = do(t, c, http.MethodPost, srv.URL()+"/_emulator/revoke", "application/json", `{"client_id": "`+cf.ClientID()+`"}`)
	g.Expect(status).To(Equal(http.StatusNoContent))
	g.Expect(request(t, srv, cf, "form").str("error")).To(Equal(clearancetest.ErrInvalidClient))
	status, _ = do(t, c, http.MethodPost, srv.URL()+"/_emulator/revoke", "application/json", `{"client_id": "nobody@x"}`)
	g.Expect(status).To(Equal(http.StatusNotFound))

	// Trust a file generated by another emulator.
	other := newServer(t)
	ocf := newClient(t, other, 2, clearancetest.WithFileTenant("acme"))
	status, body = do(t, c, http.MethodPost, srv.URL()+"/_emulator/trust", "application/json", string(ocf.Data))
	g.Expect(status).To(Equal(http.StatusCreated), string(body))
	g.Expect(string(body)).To(ContainSubstring(ocf.ClientID()))
	g.Expect(request(t, srv, ocf, "json").Status).To(Equal(200))

	// Settings.
	status, body = do(t, c, http.MethodPost, srv.URL()+"/_emulator/settings", "application/json",
		`{"token_ttl": "90s", "clock_offset": "-1m", "max_assertion_lifetime": "2h"}`)
	g.Expect(status).To(Equal(http.StatusOK), string(body))
	g.Expect(srv.TokenTTL()).To(Equal(90 * time.Second))
	g.Expect(srv.ClockOffset()).To(Equal(-time.Minute))
	g.Expect(srv.MaxAssertionLifetime()).To(Equal(2 * time.Hour))
	status, _ = do(t, c, http.MethodPost, srv.URL()+"/_emulator/settings", "application/json", `{"token_ttl": "-5s"}`)
	g.Expect(status).To(Equal(http.StatusBadRequest))
	var settings map[string]string
	g.Expect(json.Unmarshal(get(t, c, srv.URL()+"/_emulator/settings"), &settings)).To(Succeed())
	g.Expect(settings).To(HaveKeyWithValue("token_ttl", "1m30s"))

	status, _ = do(t, c, http.MethodGet, srv.URL()+"/_emulator", "", "")
	g.Expect(status).To(Equal(http.StatusOK))
	status, _ = do(t, c, http.MethodGet, srv.URL()+"/_emulator/nope", "", "")
	g.Expect(status).To(Equal(http.StatusNotFound))
}

func TestAdminStopListening(t *testing.T) {
	g := NewWithT(t)
	srv := newServer(t)
	cf := newClient(t, srv, 1)
	status, body := do(t, srv.Client(), http.MethodPost, srv.URL()+"/_emulator/stop-listening", "application/json", `{"duration": "300ms"}`)
	g.Expect(status).To(Equal(http.StatusAccepted), string(body))
	g.Eventually(srv.Listening).WithTimeout(2 * time.Second).WithPolling(5 * time.Millisecond).Should(BeFalse())
	g.Eventually(srv.Listening).WithTimeout(5 * time.Second).WithPolling(10 * time.Millisecond).Should(BeTrue())
	srv.Client().CloseIdleConnections() // the admin request's connection went down with the listener
	g.Expect(request(t, srv, cf, "form").Status).To(Equal(200))

	status, _ = do(t, srv.Client(), http.MethodPost, srv.URL()+"/_emulator/stop-listening", "application/json", `{"duration": "1h"}`)
	g.Expect(status).To(Equal(http.StatusBadRequest))
}

func TestWithoutAdmin(t *testing.T) {
	srv := newServer(t, clearancetest.WithoutAdmin())
	if status, _ := do(t, srv.Client(), http.MethodGet, srv.URL()+"/_emulator/stats", "", ""); status != http.StatusNotFound {
		t.Fatalf("status %d", status)
	}
}
