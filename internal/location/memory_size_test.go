package location

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// maxBytesPerBinding is the budget of Go heap per typical binding.
const maxBytesPerBinding = 300

// heapPerBinding stores n typical bindings (one per AOR, the common case)
// and returns the live heap they add, per binding, after a full GC.
func heapPerBinding(tb testing.TB, n int, userAgent, edge string) float64 {
	tb.Helper()
	exp := time.Now().Add(time.Hour)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := Open(Options{})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	for i := range n {
		b := typical(i, exp)
		b.UserAgent = userAgent
		b.Edge = edge
		if _, err := m.Update(b.AOR, func([]Binding) ([]Binding, error) { return []Binding{b}, nil }); err != nil {
			tb.Fatalf("Update: %v", err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if _, got := m.Len(); got != n {
		tb.Fatalf("Len bindings = %d, want %d", got, n)
	}
	runtime.KeepAlive(m)
	m.Close()
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// TestMemoryPerBinding asserts a size, not a timing. The million-binding
// figure takes a few seconds more: PINHOLE_LOCATION_MILLION=1 go test -run TestMemoryPerBinding -v
func TestMemoryPerBinding(t *testing.T) {
	if raceEnabled {
		t.Skip("heap sizes differ under the race detector")
	}
	sizes := []int{100_000}
	if os.Getenv("PINHOLE_LOCATION_MILLION") != "" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		got := heapPerBinding(t, n, "", "")
		t.Logf("%d bindings: %.1f bytes of heap per binding", n, got)
		if got > maxBytesPerBinding {
			t.Errorf("%d bindings: %.1f bytes per binding, budget %d", n, got, maxBytesPerBinding)
		}
		// Not asserted: a User-Agent costs its length and can push the
		// record into the next size class.
		t.Logf("%d bindings with a 24-byte User-Agent: %.1f bytes per binding", n,
			heapPerBinding(t, n, "Linphone-Android/5.2.5 ", ""))
		// An edge's bindings carry its id: the id's length and one byte,
		// in the record; the decoded string aliases it (no allocation).
		owned := heapPerBinding(t, n, "", "edge-a")
		t.Logf("%d bindings owned by edge %q: %.1f bytes per binding", n, "edge-a", owned)
		if owned > maxBytesPerBinding {
			t.Errorf("%d bindings with an owner: %.1f bytes per binding, budget %d", n, owned, maxBytesPerBinding)
		}
	}
}
