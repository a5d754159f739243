package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

// emulator talks to the STS emulator process's loopback admin endpoints.
type emulator struct {
	base string // STS base address ("<root>/connect"), as connection files list it
	root string
	hc   *http.Client
}

func newEmulator(base string) *emulator {
	return &emulator{
		base: base,
		root: strings.TrimSuffix(base, clearancetest.BasePath),
		hc:   &http.Client{Timeout: 30 * time.Second},
	}
}

func (e *emulator) do(ctx context.Context, method, path string, body []byte, want int, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.root+clearancetest.AdminPath+path, rd) //nolint:gosec // the emulator this harness started, on loopback
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.hc.Do(req) //nolint:gosec // the emulator this harness started, on loopback
	if err != nil {
		return fmt.Errorf("emulator %s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("emulator %s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("emulator %s %s: status %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("emulator %s %s: %w", method, path, err)
		}
	}
	return nil
}

// stats returns the emulator's request counters.
func (e *emulator) stats(ctx context.Context) (clearancetest.Stats, error) {
	var st clearancetest.Stats
	err := e.do(ctx, http.MethodGet, "/stats", nil, http.StatusOK, &st)
	return st, err
}

// requests returns the emulator's recent token requests, oldest first.
func (e *emulator) requests(ctx context.Context) ([]clearancetest.Request, error) {
	var out struct {
		Requests []clearancetest.Request `json:"requests"`
	}
	err := e.do(ctx, http.MethodGet, "/requests", nil, http.StatusOK, &out)
	return out.Requests, err
}

// trust makes the emulator accept the connection file's key under its client id.
func (e *emulator) trust(ctx context.Context, file []byte) error {
	return e.do(ctx, http.MethodPost, "/trust", file, http.StatusCreated, nil)
}

// addFault injects a fault into token responses.
func (e *emulator) addFault(ctx context.Context, f clearancetest.Fault) error {
	body, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return e.do(ctx, http.MethodPost, "/faults", body, http.StatusCreated, nil)
}
