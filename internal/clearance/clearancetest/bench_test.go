package clearancetest_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

// report adds throughput and CPU cost per request. cpu-µs/req covers client
// and server together (they share the process); GOMAXPROCS divided by it is
// the throughput an otherwise idle machine would reach.
func report(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	if cpu > 0 {
		perReq := cpu / time.Duration(b.N)
		b.ReportMetric(float64(perReq.Microseconds()), "cpu-µs/req")
		b.ReportMetric(float64(runtime.GOMAXPROCS(0))*float64(time.Second)/float64(perReq), "idle-capacity-req/s")
	}
}

// BenchmarkTokenEndpoint measures token requests over keep-alive HTTP, each
// with its own freshly signed assertion (unique jti). Every request costs the
// emulator one RSA-2048 verification and one RSA-2048 signature.
//
//   - presigned: assertions are signed before the timer starts, so the figure
//     is the emulator's throughput (client and server share the CPUs).
//   - sign-per-request: the client also signs inside the timed loop, as a real
//     client does, so the signature's cost shows in the throughput.
func BenchmarkTokenEndpoint(b *testing.B) {
	srv := newServer(b)
	cfs := []*clearancetest.ConnectionFile{newClient(b, srv, 1), newClient(b, srv, 2), newClient(b, srv, 3)}
	client := srv.Client()

	send := func(b *testing.B, body []byte) bool {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.TokenEndpoint(), bytes.NewReader(body))
		if err != nil {
			b.Error(err)
			return false
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body) // drain so the connection is reused
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Errorf("status %d", resp.StatusCode)
			return false
		}
		return true
	}
	body := func(b *testing.B, i int) []byte {
		cf := cfs[i%len(cfs)]
		a, err := cf.SignAssertion(clearancetest.AssertionOptions{JTI: clearancetest.NewJTI()})
		if err != nil {
			b.Fatal(err)
		}
		return []byte(url.Values{"client_id": {cf.ClientID()}, "grant_type": {clearancetest.GrantTypeJWTBearer}, "assertion": {a}}.Encode())
	}

	b.Run("presigned", func(b *testing.B) {
		bodies := make([][]byte, b.N)
		var wg sync.WaitGroup
		workers := runtime.GOMAXPROCS(0)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < b.N; i += workers {
					bodies[i] = body(b, i)
				}
			})
		}
		wg.Wait()
		var next atomic.Int64
		b.SetParallelism(8)
		b.ResetTimer()
		cpu0 := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !send(b, bodies[next.Add(1)-1]) {
					return
				}
			}
		})
		b.StopTimer()
		report(b, processCPU()-cpu0)
	})

	b.Run("sign-per-request", func(b *testing.B) {
		var next atomic.Int64
		b.SetParallelism(8)
		b.ResetTimer()
		cpu0 := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !send(b, body(b, int(next.Add(1)))) {
					return
				}
			}
		})
		b.StopTimer()
		report(b, processCPU()-cpu0)
	})
}
