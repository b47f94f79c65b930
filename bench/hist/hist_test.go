package hist

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIndexRoundTrip(t *testing.T) {
	// Every value lies within its bucket's bounds, buckets are contiguous,
	// and the relative width stays within 1/SubBuckets.
	for i := 0; i < nBuckets-1; i++ {
		lo, hi := lowest(i), highest(i)
		if index(lo) != i || index(hi) != i {
			t.Fatalf("bucket %d: [%d,%d] maps to %d,%d", i, lo, hi, index(lo), index(hi))
		}
		if lowest(i+1) != hi+1 {
			t.Fatalf("bucket %d ends at %d, next starts at %d", i, hi, lowest(i+1))
		}
		if lo >= SubBuckets && float64(hi-lo+1)/float64(lo) > 1.0/SubBuckets+1e-12 {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d", i, lo, hi, SubBuckets)
		}
	}
	if got := index(1 << 62); got != nBuckets-1 {
		t.Errorf("huge value in bucket %d, want the last", got)
	}
}

func TestQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values []int64
		want   map[float64]int64
	}{
		{"empty", nil, map[float64]int64{0.5: 0, 1: 0}},
		{"exact below SubBuckets", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, map[float64]int64{0: 1, 0.5: 5, 0.9: 9, 0.99: 10, 1: 10}},
		{"one value", []int64{1000}, map[float64]int64{0.5: 1000, 0.999: 1000}},
		{"negative is zero", []int64{-5}, map[float64]int64{0.5: 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			for _, v := range tc.values {
				h.Record(v)
			}
			got := map[float64]int64{}
			for q := range tc.want {
				got[q] = h.Quantile(q)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("quantiles (-want +got):\n%s", d)
			}
		})
	}
}

func TestQuantileAgainstSort(t *testing.T) {
	// Against the exact order statistic of random log-normal-ish latencies,
	// every reported quantile is ≥ the exact one and within the precision.
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var vals []int64
	for range 100000 {
		v := int64(r.ExpFloat64() * float64(r.IntN(100000)+1))
		vals = append(vals, v)
		h.Record(v)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1} {
		rank := int(float64(len(vals))*q+0.999999) - 1
		rank = max(rank, 0)
		exact := vals[rank]
		got := h.Quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/SubBuckets+1 {
			t.Errorf("q%.3f = %d, exact %d", q, got, exact)
		}
	}
	if h.Min() != vals[0] || h.Max() != vals[len(vals)-1] || h.Count() != uint64(len(vals)) {
		t.Errorf("min/max/count = %d/%d/%d, want %d/%d/%d", h.Min(), h.Max(), h.Count(), vals[0], vals[len(vals)-1], len(vals))
	}
}

func TestMerge(t *testing.T) {
	var a, b, all Histogram
	for v := int64(0); v < 5000; v += 7 {
		if v%2 == 0 {
			a.Record(v + 100)
		} else {
			b.Record(v + 100)
		}
		all.Record(v + 100)
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	if d := cmp.Diff(all, m, cmp.AllowUnexported(Histogram{})); d != "" {
		t.Errorf("merge (-want +got):\n%s", d)
	}
	m.Reset()
	if m.Count() != 0 || m.Quantile(0.5) != 0 || m.Min() != 0 {
		t.Errorf("reset left %d values", m.Count())
	}
}

func BenchmarkRecord(b *testing.B) {
	b.ReportAllocs()
	var h Histogram
	for i := range b.N {
		h.Record(int64(i & 0xfffff))
	}
}
