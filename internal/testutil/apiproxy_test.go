package testutil

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func TestAPIProxy(t *testing.T) {
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/watch" {
			// A watch: one event, flushed, then the stream stays open.
			_, _ = io.WriteString(w, "event-1\n")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = io.WriteString(w, r.Method+" "+r.URL.Path) //nolint:gosec // a test server echoing to its own client
	}))
	defer upstream.Close()
	defer close(release)

	p, err := StartAPIProxy(&rest.Config{Host: upstream.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	do := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, p.URL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	if code, body := do(http.MethodPatch, "/api/v1/namespaces/ns/secrets/token"); code != http.StatusOK || body != "PATCH /api/v1/namespaces/ns/secrets/token" {
		t.Fatalf("forwarded: %d %q", code, body)
	}
	p.FailRequests(func(r *http.Request) bool {
		return r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/secrets/token")
	})
	code, body := do(http.MethodPatch, "/api/v1/namespaces/ns/secrets/token")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"kind":"Status"`) {
		t.Fatalf("failed: %d %q", code, body)
	}
	if code, _ := do(http.MethodGet, "/api/v1/namespaces/ns/secrets/token"); code != http.StatusOK {
		t.Fatalf("a request the matcher does not select fails: %d", code)
	}
	if p.Failed() != 1 {
		t.Fatalf("Failed() = %d, want 1", p.Failed())
	}
	p.FailRequests(nil)
	if code, _ := do(http.MethodPatch, "/api/v1/namespaces/ns/secrets/token"); code != http.StatusOK {
		t.Fatalf("after FailRequests(nil): %d", code)
	}

	// Streams are forwarded as they arrive, not when they end.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+"/watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "event-1\n" {
		t.Fatalf("first watch event: %q, %v", line, err)
	}
}
