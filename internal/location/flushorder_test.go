package location

import (
	"slices"
	"testing"
	"time"
)

// recordingBacking passes batches to a backing and keeps their AORs.
type recordingBacking struct {
	backing
	batches [][]string
}

func (r *recordingBacking) write(batch []setWrite, through bool) error {
	var aors []string
	for _, p := range batch {
		aors = append(aors, p.aor)
	}
	r.batches = append(r.batches, aors)
	return r.backing.write(batch, through)
}

// TestFlushWritesInKeyOrder: the write-behind of refreshes made in any
// order reaches the file in key order, chunk after chunk, so that each
// bbolt transaction rewrites one run of neighbouring pages rather than
// most of the tree (BenchmarkFlushRefreshes); and every refreshed AOR is
// written once, with its new expiry.
func TestFlushWritesInKeyOrder(t *testing.T) {
	path := tempDB(t)
	m, err := Open(Options{Path: path, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	const n = 2*flushChunkAORs + 100 // three chunks
	bs := make([]Binding, n)
	for i := range bs {
		bs[i] = typical(i, exp)
	}
	putAll(t, m, bs)
	rec := &recordingBacking{backing: m.back}
	m.back = rec
	later := exp.Add(time.Hour)
	for i := range n {
		bn := &bs[(i*7919)%n] // every AOR, in an order unrelated to the keys'
		if !m.Touch(refresh(*bn, bn.CSeq+1, later)) {
			t.Fatalf("Touch %s failed", bn.AOR)
		}
	}
	if err := m.flush(false); err != nil {
		t.Fatal(err)
	}
	var all []string
	for i, b := range rec.batches {
		if len(b) > flushChunkAORs {
			t.Errorf("batch %d holds %d AORs, more than a chunk", i, len(b))
		}
		all = append(all, b...)
	}
	if len(rec.batches) != 3 || !slices.IsSorted(all) || len(all) != n {
		t.Errorf("%d batches, %d AORs, in key order: %v", len(rec.batches), len(all), slices.IsSorted(all))
	}
	m.back = rec.backing
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// What the file holds is the refreshed state.
	m2, err := Open(Options{Path: path, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	for _, i := range []int{0, n / 2, n - 1} {
		got := m2.Lookup(bs[i].AOR)
		if len(got) != 1 || !got[0].Expires.Equal(later) {
			t.Errorf("%s after reopening: %+v, want one binding expiring %v", bs[i].AOR, got, later)
		}
	}
}
