package midreg

import (
	"context"
	"testing"
)

// BenchmarkAbsorbRefresh is the slow path's absorbed refresh: parse
// checks, store look-up, classification, store update and the 200, for one
// device, without sipgo's transport and transaction layers (measured in
// bench/). Its inverse is the absorbed refreshes per second on one core.
func BenchmarkAbsorbRefresh(b *testing.B) {
	f := newFixture(b, nil)
	f.up.grant = 1 << 30 // never near renewal
	expectStatus(b, f.register("c1", 1, deviceFlow, contactLine(dev), "Expires: 60"), 200)
	before := f.up.count()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		req := request(b, "c1", i+2, deviceFlow, contactLine(dev), "Expires: 60")
		res := f.m.Process(context.Background(), req, deviceFlow)
		if res.StatusCode != 200 {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
	b.StopTimer()
	if f.up.count() != before {
		b.Fatal("an absorbed refresh reached the upstream")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "refreshes/s")
}
