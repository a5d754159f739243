package clearance

import (
	"context"
	"testing"

	testingclock "k8s.io/utils/clock/testing"
)

// BenchmarkMint measures one token request end to end: assertion signing
// (RS256, 2048-bit) plus the HTTP exchange with an in-process STS over a
// keep-alive connection. The STS does not verify, so only client cost and the
// loopback round trip are measured.
func BenchmarkMint(b *testing.B) {
	clk := testingclock.NewFakeClock(testNow)
	sts := newTestSTS(b, &testKey(b).PublicKey, clk.Now, nil)
	sts.verify = false
	conn := mustConnection(b, nil, sts.base())
	c := NewClient(WithClock(clk), WithEgress(loopbackEgress))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Mint(ctx, MintRequest{Connection: conn}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadConnectionFileCached measures LoadConnectionFile for a file that
// is already cached (the reconcile hot path): SHA-256 of ~3 KiB plus a copy.
func BenchmarkLoadConnectionFileCached(b *testing.B) {
	data := connectionFileJSON(b, testKey(b), nil)
	c := NewClient()
	if _, err := c.LoadConnectionFile(data); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.LoadConnectionFile(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseConnectionFile is the uncached cost, for comparison.
func BenchmarkParseConnectionFile(b *testing.B) {
	data := connectionFileJSON(b, testKey(b), nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := ParseConnectionFile(data); err != nil {
			b.Fatal(err)
		}
	}
}
