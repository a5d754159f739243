package clearancetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault describes misbehaviour injected into token endpoint responses.
// Exactly one effect applies:
//
//   - replace: Status is set; the request is not processed and the response
//     is Status, Header and Body;
//   - drop: Drop is set; the connection is closed without a response;
//   - mutate: Override or Remove is set; the request is processed normally
//     and, only if it succeeds, members of the JSON response are replaced,
//     added (Override) or deleted (Remove); rejections are left alone and do
//     not use up the fault;
//   - delay: only Latency is set; the request is processed normally after it.
//
// Latency also delays the other effects. Faults apply to the token endpoint
// only; discovery and JWKS are never faulted.
type Fault struct {
	// Count is how many requests the fault affects; 0 means every request
	// until ClearFaults.
	Count int
	// Probability, if in (0,1), applies the fault to that fraction of
	// requests at random (Count then bounds the number of hits); 0 means always.
	Probability float64
	// Latency is waited (in real time) before responding; at most 10 minutes.
	Latency time.Duration
	Status  int
	Header  map[string]string
	Body    string
	// Override maps response members to new values, e.g.
	// {"expires_in": "3600"} or {"token_type": "mac"}.
	Override map[string]any
	Remove   []string
	Drop     bool
}

type faultKind int

const (
	faultDelay faultKind = iota
	faultReplace
	faultDrop
	faultMutate
)

func (f *Fault) kind() faultKind {
	switch {
	case f.Status != 0:
		return faultReplace
	case f.Drop:
		return faultDrop
	case len(f.Override) > 0 || len(f.Remove) > 0:
		return faultMutate
	default:
		return faultDelay
	}
}

// Validate reports whether the fault is well-formed.
func (f *Fault) Validate() error {
	effects := 0
	if f.Status != 0 {
		effects++
		if f.Status < 100 || f.Status > 599 {
			return errors.New("fault status must be between 100 and 599")
		}
	}
	if f.Drop {
		effects++
	}
	if len(f.Override) > 0 || len(f.Remove) > 0 {
		effects++
	}
	switch {
	case effects > 1:
		return errors.New("a fault has exactly one of status, drop or override/remove")
	case effects == 0 && f.Latency <= 0:
		return errors.New("a fault needs a status, drop, override/remove or latency")
	case f.Count < 0:
		return errors.New("fault count must not be negative")
	case f.Probability < 0 || f.Probability > 1 || math.IsNaN(f.Probability):
		return errors.New("fault probability must be within [0, 1]")
	case f.Latency < 0 || f.Latency > maxFaultLatency:
		return fmt.Errorf("fault latency must be within [0, %s]", maxFaultLatency)
	case len(f.Body) > 1<<20:
		return errors.New("fault body must not exceed 1 MiB")
	}
	for k := range f.Header {
		if k == "" || strings.ContainsAny(k, "\r\n: ") {
			return errors.New("fault header names must be valid")
		}
	}
	return nil
}

// Times returns a copy of f that affects the next n requests.
func (f Fault) Times(n int) Fault { f.Count = n; return f }

// WithProbability returns a copy of f that affects a fraction p of requests.
func (f Fault) WithProbability(p float64) Fault { f.Probability = p; return f }

// WithLatency returns a copy of f that also waits d before acting.
func (f Fault) WithLatency(d time.Duration) Fault { f.Latency = d; return f }

// FaultStatus answers with status and body; the content type is JSON when the
// body looks like a JSON object, plain text otherwise.
func FaultStatus(status int, body string) Fault {
	ct := "text/plain; charset=utf-8"
	if strings.HasPrefix(strings.TrimSpace(body), "{") {
		ct = "application/json; charset=utf-8"
	}
	return Fault{Status: status, Body: body, Header: map[string]string{"Content-Type": ct}}
}

// FaultServerError answers with a 5xx status and an RFC 6749-style JSON body.
func FaultServerError(status int) Fault {
	return FaultStatus(status, `{"error":"temporarily_unavailable","error_description":"injected fault"}`)
}

// FaultRateLimited answers 429 with a Retry-After header of retryAfter
// (rounded up to whole seconds, as the header requires).
func FaultRateLimited(retryAfter time.Duration) Fault {
	f := FaultStatus(http.StatusTooManyRequests, `{"error":"too_many_requests","error_description":"injected fault"}`)
	secs := int64(math.Ceil(retryAfter.Seconds()))
	f.Header["Retry-After"] = strconv.FormatInt(max(secs, 0), 10)
	return f
}

// FaultHTML answers with status and an HTML page, as a proxy or a login
// portal in front of the STS might (including with status 200).
func FaultHTML(status int) Fault {
	return Fault{
		Status: status,
		Header: map[string]string{"Content-Type": "text/html; charset=utf-8"},
		Body:   "<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body><h1>Please try again later</h1></body></html>",
	}
}

// FaultMissingAccessToken answers 200 with a token response lacking access_token.
func FaultMissingAccessToken() Fault { return Fault{Remove: []string{"access_token"}} }

// FaultTokenType answers 200 with a valid token but the given token_type.
func FaultTokenType(tokenType string) Fault {
	return Fault{Override: map[string]any{"token_type": tokenType}}
}

// FaultExpiresIn answers 200 with a valid token but expires_in set to v
// (e.g. 0, -1, "3600", 1e12).
func FaultExpiresIn(v any) Fault { return Fault{Override: map[string]any{"expires_in": v}} }

// FaultLatency delays responses by d, then processes requests normally.
func FaultLatency(d time.Duration) Fault { return Fault{Latency: d} }

// FaultDrop closes the connection without answering.
func FaultDrop() Fault { return Fault{Drop: true} }

// faultJSON is the admin endpoint's wire form of a Fault.
type faultJSON struct {
	Count       int               `json:"count,omitempty"`
	Probability float64           `json:"probability,omitempty"`
	Latency     string            `json:"latency,omitempty"`
	Status      int               `json:"status,omitempty"`
	Header      map[string]string `json:"header,omitempty"`
	Body        string            `json:"body,omitempty"`
	Override    map[string]any    `json:"override,omitempty"`
	Remove      []string          `json:"remove,omitempty"`
	Drop        bool              `json:"drop,omitempty"`
}

// MarshalJSON encodes the fault as the admin endpoint accepts it, with
// latency as a Go duration string such as "250ms".
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{
		Count: f.Count, Probability: f.Probability, Status: f.Status, Header: f.Header,
		Body: f.Body, Override: f.Override, Remove: f.Remove, Drop: f.Drop,
	}
	if f.Latency > 0 {
		j.Latency = f.Latency.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes the admin endpoint's form (see MarshalJSON).
func (f *Fault) UnmarshalJSON(data []byte) error {
	var j faultJSON
	// UseNumber keeps override values exact: {"expires_in": 9223372036854775807}
	// must come back out verbatim, not rounded through float64.
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	var lat time.Duration
	if j.Latency != "" {
		var err error
		if lat, err = time.ParseDuration(j.Latency); err != nil {
			return fmt.Errorf("fault latency: %w", err)
		}
	}
	*f = Fault{
		Count: j.Count, Probability: j.Probability, Latency: lat, Status: j.Status, Header: j.Header,
		Body: j.Body, Override: j.Override, Remove: j.Remove, Drop: j.Drop,
	}
	return nil
}

// faultSet holds active faults in injection order; the first matching one wins.
type faultSet struct {
	mu     sync.Mutex
	active []*activeFault
}

type activeFault struct {
	f         Fault
	remaining int // -1: unlimited
}

// maxActiveFaults bounds the fault list so a runaway admin client cannot grow it forever.
const maxActiveFaults = 1000

func (fs *faultSet) add(f Fault) error {
	if err := f.Validate(); err != nil {
		return err
	}
	rem := f.Count
	if rem == 0 {
		rem = -1
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.active) >= maxActiveFaults {
		return fmt.Errorf("too many active faults (max %d)", maxActiveFaults)
	}
	fs.active = append(fs.active, &activeFault{f: f, remaining: rem})
	return nil
}

func (fs *faultSet) clear() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.active = nil
}

func (fs *faultSet) pending() []Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := make([]Fault, 0, len(fs.active))
	for _, a := range fs.active {
		f := a.f
		if a.remaining > 0 {
			f.Count = a.remaining
		}
		out = append(out, f)
	}
	return out
}

// take consumes and returns the first fault whose kind satisfies want and
// whose probability draw hits.
func (fs *faultSet) take(want func(faultKind) bool) (Fault, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for i, a := range fs.active {
		if !want(a.f.kind()) {
			continue
		}
		// Sampling which requests fail is not a security decision.
		if p := a.f.Probability; p > 0 && p < 1 && rand.Float64() >= p { //nolint:gosec // fault sampling
			continue
		}
		if a.remaining > 0 {
			a.remaining--
			if a.remaining == 0 {
				fs.active = append(fs.active[:i], fs.active[i+1:]...)
			}
		}
		return a.f, true
	}
	return Fault{}, false
}

// InjectFault adds a fault. Faults are tried in injection order; the first one
// that matches a request applies.
func (s *Server) InjectFault(f Fault) error { return s.faults.add(f) }

// ClearFaults removes all injected faults.
func (s *Server) ClearFaults() { s.faults.clear() }

// PendingFaults returns the active faults, with Count showing what is left.
func (s *Server) PendingFaults() []Fault { return s.faults.pending() }
