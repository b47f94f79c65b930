package location

import (
	"testing"
	"time"
)

// benchStore holds n typical bindings, one per AOR, with write-behind to a
// file when path is set.
func benchStore(b *testing.B, n int, path string) (*Memory, []Binding) {
	b.Helper()
	m, err := Open(Options{Path: path, FlushInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	exp := time.Now().Add(time.Hour)
	bs := make([]Binding, n)
	for i := range bs {
		bs[i] = typical(i, exp)
	}
	putAll(b, m, bs)
	return m, bs
}

func BenchmarkLookup(b *testing.B) {
	m, bs := benchStore(b, 100_000, "")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if len(m.Lookup(bs[i%len(bs)].AOR)) != 1 {
			b.Fatal("miss")
		}
		i++
	}
}

func BenchmarkLookupParallel(b *testing.B) {
	m, bs := benchStore(b, 100_000, "")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.Lookup(bs[i%len(bs)].AOR)
			i += 7
		}
	})
}

// BenchmarkUpdateRefresh is a REGISTER refresh through the slow path: same
// contact, higher CSeq, later expiry. It is written behind, so the file
// does not slow it down.
func BenchmarkUpdateRefresh(b *testing.B) {
	m, bs := benchStore(b, 100_000, tempDB(b))
	exp := time.Now().Add(2 * time.Hour)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		aor := bs[i%len(bs)].AOR
		if _, err := m.Update(aor, func(cur []Binding) ([]Binding, error) {
			cur[0].CSeq++
			cur[0].Expires = exp
			return cur, nil
		}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkUpdateNew is a first registration: written through, so its
// cost is bbolt's transaction and fsync shared by the parallel callers.
func BenchmarkUpdateNew(b *testing.B) {
	m, _ := benchStore(b, 0, tempDB(b))
	exp := time.Now().Add(time.Hour)
	b.ReportAllocs()
	b.SetParallelism(64) // sipgo runs a goroutine per request
	var next atomicCounter
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bn := typical(next.add(), exp)
			if _, err := m.Update(bn.AOR, func([]Binding) ([]Binding, error) { return []Binding{bn}, nil }); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkTouch(b *testing.B) {
	m, bs := benchStore(b, 100_000, tempDB(b))
	exp := time.Now().Add(2 * time.Hour)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		bn := &bs[i%len(bs)]
		bn.CSeq++
		if !m.Touch(refresh(*bn, bn.CSeq, exp)) {
			b.Fatal("Touch failed")
		}
		i++
	}
}

// BenchmarkFlushRefreshes is the write-behind of refreshes: half of a
// store of 20 000 AORs refreshed in random order (as devices refresh),
// then one flush, as the flusher does once per interval. Reported per
// AOR written. It is the load generator's refresh run (20 000 devices,
// 10 000 refreshes/s, docs/benchmarks.md) seen from the flusher.
func BenchmarkFlushRefreshes(b *testing.B) {
	m, bs := benchStore(b, 20_000, tempDB(b))
	const perFlush = 10_000
	exp := time.Now().Add(2 * time.Hour)
	b.ReportAllocs()
	i := 0
	var cpu int64
	for b.Loop() {
		b.StopTimer()
		for range perFlush {
			// A stride coprime with the store's size: every AOR in
			// turn, in an order unrelated to their keys' order.
			bn := &bs[(i*7919)%len(bs)]
			bn.CSeq++
			if !m.Touch(refresh(*bn, bn.CSeq, exp)) {
				b.Fatal("Touch failed")
			}
			i++
		}
		c0 := cpuTime()
		b.StartTimer()
		if err := m.flush(false); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += cpuTime() - c0
		b.StartTimer()
	}
	// Wall time is mostly the disk's fsync; the CPU time is what a
	// refresh costs the core the registrar shares with everything else.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perFlush), "ns/aor")
	b.ReportMetric(float64(cpu)/float64(b.N*perFlush), "cpu-ns/aor")
}
