package clearancetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Admin endpoints (all under AdminPath, loopback peers only; request bodies
// must be application/json, which a browser cannot send cross-origin without
// a CORS preflight that the emulator never approves):
//
//	GET    /_emulator                 list of endpoints
//	GET    /_emulator/faults          active faults
//	POST   /_emulator/faults          add a fault (a Fault object, or an array of them)
//	DELETE /_emulator/faults          clear faults
//	GET    /_emulator/stats           counters (Stats)
//	DELETE /_emulator/stats           reset counters and request history
//	GET    /_emulator/requests        recent requests (Request records)
//	POST   /_emulator/revoke          {"client_id": "151@tenant123"}
//	POST   /_emulator/trust           body: a connection file; trusts its public key
//	POST   /_emulator/clients         {"service_name": "...", "tenant": "..."} (optional);
//	                                  returns a new connection file (contains a private key)
//	GET    /_emulator/settings        token_ttl, max_assertion_lifetime, clock_offset, now
//	POST   /_emulator/settings        change any of token_ttl, max_assertion_lifetime, clock_offset
//	POST   /_emulator/stop-listening  {"duration": "5s"}: refuse connections, then resume
const adminMaxBody = MaxConnectionFileSize + 4096

func (s *Server) handleAdmin(w http.ResponseWriter, r *http.Request) {
	if !loopbackPeer(r.RemoteAddr) {
		adminError(w, http.StatusForbidden, "admin endpoints answer loopback clients only")
		return
	}
	var body []byte
	if r.Method == http.MethodPost {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			adminError(w, http.StatusUnsupportedMediaType, "admin requests must be application/json")
			return
		}
		if body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, adminMaxBody)); err != nil {
			adminError(w, http.StatusBadRequest, "could not read the request body")
			return
		}
	}
	route := strings.TrimPrefix(r.URL.Path, AdminPath)
	switch route + " " + r.Method {
	case " GET", "/ GET":
		adminJSON(w, http.StatusOK, map[string]any{"endpoints": []string{
			"GET|POST|DELETE " + AdminPath + "/faults", "GET|DELETE " + AdminPath + "/stats",
			"GET " + AdminPath + "/requests", "POST " + AdminPath + "/revoke", "POST " + AdminPath + "/trust",
			"POST " + AdminPath + "/clients", "GET|POST " + AdminPath + "/settings",
			"POST " + AdminPath + "/stop-listening",
		}})
	case "/faults GET":
		adminJSON(w, http.StatusOK, map[string]any{"faults": s.PendingFaults()})
	case "/faults POST":
		s.adminAddFaults(w, body)
	case "/faults DELETE":
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	case "/stats GET":
		adminJSON(w, http.StatusOK, s.Stats())
	case "/stats DELETE":
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	case "/requests GET":
		adminJSON(w, http.StatusOK, map[string]any{"requests": s.Requests()})
	case "/revoke POST":
		var req struct {
			ClientID string `json:"client_id"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.ClientID == "" {
			adminError(w, http.StatusBadRequest, `body must be {"client_id": "<id>@<tenant>"}`)
			return
		}
		if !s.Revoke(req.ClientID) {
			adminError(w, http.StatusNotFound, "unknown client")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case "/trust POST":
		id, err := s.TrustConnectionFile(body)
		if err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		adminJSON(w, http.StatusCreated, map[string]string{"client_id": id})
	case "/clients POST":
		s.adminNewClient(w, body)
	case "/settings GET":
		adminJSON(w, http.StatusOK, s.settings())
	case "/settings POST":
		s.adminSettings(w, body)
	case "/stop-listening POST":
		s.adminStopListening(w, body)
	default:
		adminError(w, http.StatusNotFound, "no such admin endpoint or method")
	}
}

func loopbackPeer(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) adminAddFaults(w http.ResponseWriter, body []byte) {
	var faults []Fault
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := decodeStrict(trimmed, &faults); err != nil {
			adminError(w, http.StatusBadRequest, "invalid fault list: "+err.Error())
			return
		}
	} else {
		var f Fault
		if err := decodeStrict(trimmed, &f); err != nil {
			adminError(w, http.StatusBadRequest, "invalid fault: "+err.Error())
			return
		}
		faults = []Fault{f}
	}
	for i := range faults { // validate all before adding any
		if err := faults[i].Validate(); err != nil {
			adminError(w, http.StatusBadRequest, fmt.Sprintf("fault %d: %v", i, err))
			return
		}
	}
	for _, f := range faults {
		if err := s.InjectFault(f); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	adminJSON(w, http.StatusCreated, map[string]any{"faults": s.PendingFaults()})
}

// decodeStrict decodes JSON keeping numbers exact (so an override such as
// {"expires_in": 9223372036854775807} is sent back verbatim).
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

func (s *Server) adminNewClient(w http.ResponseWriter, body []byte) {
	var req struct {
		ServiceName string `json:"service_name"`
		Tenant      string `json:"tenant"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			adminError(w, http.StatusBadRequest, `body must be {"service_name": "...", "tenant": "..."} or empty`)
			return
		}
	}
	var opts []ConnectionFileOption
	if req.ServiceName != "" {
		opts = append(opts, WithFileServiceName(req.ServiceName))
	}
	if req.Tenant != "" {
		opts = append(opts, WithFileTenant(req.Tenant))
	}
	cf, err := s.NewConnectionFile(opts...)
	if err != nil {
		adminError(w, http.StatusBadRequest, err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Client-Id", cf.ClientID())
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(cf.Data) // a failed write means the client went away
}

type settingsJSON struct {
	TokenTTL             string `json:"token_ttl,omitempty"`
	MaxAssertionLifetime string `json:"max_assertion_lifetime,omitempty"`
	ClockOffset          string `json:"clock_offset,omitempty"`
	Now                  string `json:"now,omitempty"`
}

func (s *Server) settings() settingsJSON {
	return settingsJSON{
		TokenTTL:             s.TokenTTL().String(),
		MaxAssertionLifetime: s.MaxAssertionLifetime().String(),
		ClockOffset:          s.ClockOffset().String(),
		Now:                  s.Now().UTC().Format(time.RFC3339Nano),
	}
}

func (s *Server) adminSettings(w http.ResponseWriter, body []byte) {
	var req settingsJSON
	if err := json.Unmarshal(body, &req); err != nil {
		adminError(w, http.StatusBadRequest, "invalid settings: "+err.Error())
		return
	}
	var ttl, life, off time.Duration
	var err error
	if req.TokenTTL != "" {
		if ttl, err = time.ParseDuration(req.TokenTTL); err != nil || ttl <= 0 {
			adminError(w, http.StatusBadRequest, "token_ttl must be a positive Go duration")
			return
		}
	}
	if req.MaxAssertionLifetime != "" {
		if life, err = time.ParseDuration(req.MaxAssertionLifetime); err != nil || life <= 0 {
			adminError(w, http.StatusBadRequest, "max_assertion_lifetime must be a positive Go duration")
			return
		}
	}
	if req.ClockOffset != "" {
		if off, err = time.ParseDuration(req.ClockOffset); err != nil {
			adminError(w, http.StatusBadRequest, "clock_offset must be a Go duration")
			return
		}
	}
	if req.TokenTTL != "" {
		s.SetTokenTTL(ttl)
	}
	if req.MaxAssertionLifetime != "" {
		s.SetMaxAssertionLifetime(life)
	}
	if req.ClockOffset != "" {
		s.SetClockOffset(off)
	}
	adminJSON(w, http.StatusOK, s.settings())
}

func (s *Server) adminStopListening(w http.ResponseWriter, body []byte) {
	var req struct {
		Duration string `json:"duration"`
	}
	d, err := time.Duration(0), json.Unmarshal(body, &req)
	if err == nil {
		d, err = time.ParseDuration(req.Duration)
	}
	if err != nil || d <= 0 || d > maxFaultLatency {
		adminError(w, http.StatusBadRequest, fmt.Sprintf(`body must be {"duration": "<Go duration in (0, %s]>"}`, maxFaultLatency))
		return
	}
	adminJSON(w, http.StatusAccepted, map[string]string{"resume_in": d.String()})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	// The response is flushed to the socket before the listener and all
	// connections (this one included) are closed.
	go func() {
		if err := s.stopListeningFor(d); err != nil && s.cfg.logger != nil {
			s.cfg.logger.Error("sts-emulator: stop listening failed", "error", err)
		}
	}()
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		adminError(w, http.StatusInternalServerError, "could not encode the response")
		return
	}
	// An explicit length makes a flushed response complete on the wire, which
	// stop-listening relies on: it closes this connection right after.
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client went away
}

func adminError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(map[string]string{"error": msg}) //nolint:errchkjson // a map of strings always encodes
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client went away
}
