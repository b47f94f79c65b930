package gcpace

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestObserve(t *testing.T) {
	const MiB = 1 << 20
	for _, tt := range []struct {
		name        string
		allocs      []uint64 // cumulative, one per tick
		reclaimable uint64   // at the last tick
		want        bool
	}{
		{"quiet after a storm", []uint64{900 * MiB, 901 * MiB, 901 * MiB, 902 * MiB}, 100 * MiB, true},
		{"window not yet full", []uint64{900 * MiB, 901 * MiB, 902 * MiB}, 100 * MiB, false},
		{"steady load reuses the free pages", []uint64{0, 50 * MiB, 100 * MiB, 150 * MiB}, 100 * MiB, false},
		{"allocated exactly what lies free", []uint64{0, 0, 0, 100 * MiB}, 100 * MiB, false},
		{"too little free to be worth a collection", []uint64{0, 0, 0, 0}, releaseFloor - 1, false},
		{"the floor itself", []uint64{0, 0, 0, 0}, releaseFloor, true},
		// Only the last window counts: a storm four ticks ago is over.
		{"old storm slid out of the window", []uint64{0, 800 * MiB, 801 * MiB, 801 * MiB, 802 * MiB}, 100 * MiB, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReleaser(3 * time.Second) // three ticks of a second
			var got bool
			for i, a := range tt.allocs {
				got = r.observe(a, tt.reclaimable)
				if got && i < len(tt.allocs)-1 {
					t.Fatalf("released at tick %d of %d", i, len(tt.allocs))
				}
			}
			if got != tt.want {
				t.Fatalf("observe = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestForgetWaitsAWindow(t *testing.T) {
	r := NewReleaser(2 * time.Second)
	for range 3 {
		r.observe(0, 64<<20)
	}
	r.forget()
	if r.observe(0, 64<<20) || r.observe(0, 64<<20) {
		t.Fatal("released again before a full window after a release")
	}
	if !r.observe(0, 64<<20) {
		t.Fatal("no release after a full quiet window")
	}
}

func TestNewReleaserOff(t *testing.T) {
	if r := NewReleaser(0); r != nil {
		t.Fatal("a Releaser for a window of 0")
	}
	var r *Releaser
	if r.Releases() != 0 || r.ReleasedBytes() != 0 {
		t.Fatal("a nil Releaser reports releases")
	}
}

// TestStepReturnsFreeHeap makes 128 MiB of garbage the runtime would
// otherwise keep (a GC percent of 100 000 puts the heap goal far above it,
// as a storm's goal stays above the memory it freed) and checks a quiet
// window returns it: once collected (free heap), and once not yet
// collected (a quiet pinhole's garbage waits for the two-minute GC).
func TestStepReturnsFreeHeap(t *testing.T) {
	for _, collected := range []bool{true, false} {
		t.Run(fmt.Sprintf("collected=%v", collected), func(t *testing.T) {
			defer debug.SetGCPercent(debug.SetGCPercent(100000))
			runtime.GC() // nothing left over from the case before
			r := NewReleaser(2 * time.Second)
			r.tick = time.Millisecond // the window counts ticks, not time: Step is called by hand
			r.window = 2 * time.Millisecond
			makeGarbage(128)
			if collected {
				runtime.GC()
			}
			s := []metrics.Sample{{Name: freeMetric}, {Name: objectsMetric}, {Name: liveMetric}}
			metrics.Read(s)
			had := reclaimable(s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64())
			if had < 64<<20 {
				t.Fatalf("only %d MiB reclaimable after 128 MiB of garbage", had>>20)
			}
			for range 3 {
				r.Step()
			}
			if r.Releases() != 1 {
				t.Fatalf("%d releases after a quiet window over %d MiB reclaimable, want 1", r.Releases(), had>>20)
			}
			if r.ReleasedBytes() < 64<<20 {
				t.Fatalf("released %d MiB of %d, want at least 64", r.ReleasedBytes()>>20, had>>20)
			}
			metrics.Read(s)
			if left := reclaimable(s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()); left >= releaseFloor {
				t.Fatalf("%d MiB still reclaimable after the release", left>>20)
			}
		})
	}
}

// makeGarbage allocates n MiB, made resident, and drops it.
func makeGarbage(n int) {
	garbage := make([][]byte, n)
	for i := range garbage {
		garbage[i] = make([]byte, 1<<20)
		for j := 0; j < len(garbage[i]); j += 4096 {
			garbage[i][j] = 1
		}
	}
	runtime.KeepAlive(garbage)
}

func TestReclaimable(t *testing.T) {
	for _, tt := range []struct{ free, objects, live, want uint64 }{
		{10, 100, 100, 10}, // just collected: only the free heap
		{10, 150, 100, 60}, // 50 of garbage since
		{10, 90, 100, 10},  // sweeping ran ahead of the live figure
	} {
		if got := reclaimable(tt.free, tt.objects, tt.live); got != tt.want {
			t.Errorf("reclaimable(%d, %d, %d) = %d, want %d", tt.free, tt.objects, tt.live, got, tt.want)
		}
	}
}
