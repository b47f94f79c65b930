// Package hist is a log-linear latency histogram in the manner of HdrHistogram:
// values are grouped by their power of two, and each power of two is split
// into a fixed number of linear sub-buckets, so every recorded value is known
// to within a constant relative error (1/SubBuckets, 1.6 % with 64) from one
// microsecond to hours, in a fixed 18 KB per histogram and with no allocation
// per Record.
//
// It is not safe for concurrent use: the load generator records from its one
// event loop and merges copies for reports.
package hist

import (
	"math"
	"math/bits"
)

// subBits sets the precision: 2^subBits linear sub-buckets per power of two.
const subBits = 6

// SubBuckets is the number of linear sub-buckets per power of two.
const SubBuckets = 1 << subBits

// maxExp bounds the magnitudes kept: values up to 2^maxExp (2^40 µs is 12
// days); larger values are clamped into the last bucket and still counted.
const maxExp = 40

const nBuckets = (maxExp - subBits + 2) * SubBuckets

// Histogram counts non-negative int64 values (the generator records
// microseconds).
type Histogram struct {
	counts [nBuckets]uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

// The zero Histogram is empty and ready to use.

// index maps v to its bucket. Values below SubBuckets get one bucket each
// (exact); above, the top subBits+1 significant bits select the bucket.
func index(v int64) int {
	if v < SubBuckets {
		return int(v)
	}
	exp := bits.Len64(uint64(v)) - 1 - subBits // ≥ 0
	if exp > maxExp-subBits {
		return nBuckets - 1
	}
	sub := int(uint64(v)>>uint(exp)) - SubBuckets // 0 … SubBuckets-1
	return (exp+1)*SubBuckets + sub
}

// lowest returns the smallest value that maps to bucket i.
func lowest(i int) int64 {
	if i < SubBuckets {
		return int64(i)
	}
	exp := i/SubBuckets - 1
	sub := i % SubBuckets
	return int64(SubBuckets+sub) << uint(exp)
}

// highest returns the largest value that maps to bucket i.
func highest(i int) int64 {
	if i+1 >= nBuckets {
		return math.MaxInt64
	}
	return lowest(i+1) - 1
}

// Record counts one value; negative values count as zero.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[index(v)]++
	h.n++
	h.sum += float64(v)
	if h.n == 1 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Min is the smallest value recorded, 0 when empty.
func (h *Histogram) Min() int64 {
	if h.n == 0 {
		return 0
	}
	return h.min
}

// Max is the largest value recorded (exact, not bucketed).
func (h *Histogram) Max() int64 { return h.max }

// Mean is the exact mean of the values recorded, 0 when empty.
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the value at quantile q (0 ≤ q ≤ 1): the highest value of
// the bucket holding the ⌈q·n⌉-th smallest value, as HdrHistogram reports it,
// clamped to the exact maximum. It is 0 when empty.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	q = math.Min(math.Max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(highest(i), h.max)
		}
	}
	return h.max
}

// Merge adds every value of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if h.n == o.n {
		h.min = o.min
	} else {
		h.min = min(h.min, o.min)
	}
	h.max = max(h.max, o.max)
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }
