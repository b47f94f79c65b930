package gcpace

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestObserve(t *testing.T) {
	const MiB = 1 << 20
	for _, tt := range []struct {
		name   string
		allocs []uint64 // cumulative, one per tick
		free   uint64   // free heap at the last tick
		want   bool
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
				got = r.observe(a, tt.free)
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

// TestStepReturnsFreeHeap frees 256 MiB the runtime would otherwise keep
// (a GC percent of 100 000 puts the heap goal far above it, as a storm's
// goal stays above the memory it freed) and checks a quiet window
// returns it.
func TestStepReturnsFreeHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100000))
	r := NewReleaser(2 * time.Second)
	r.tick = time.Millisecond // the window counts ticks, not time: Step is called by hand
	r.window = 2 * time.Millisecond
	garbage := make([][]byte, 256)
	for i := range garbage {
		garbage[i] = make([]byte, 1<<20)
		for j := 0; j < len(garbage[i]); j += 4096 {
			garbage[i][j] = 1 // resident
		}
	}
	garbage = nil
	runtime.GC()
	s := []metrics.Sample{{Name: freeMetric}}
	metrics.Read(s)
	if s[0].Value.Uint64() < 128<<20 {
		t.Fatalf("the runtime returned the garbage by itself (%d MiB free left) under its goal", s[0].Value.Uint64()>>20)
	}
	for range 3 {
		r.Step()
	}
	if r.Releases() != 1 {
		t.Fatalf("%d releases after a quiet window over %d MiB free, want 1", r.Releases(), s[0].Value.Uint64()>>20)
	}
	if r.ReleasedBytes() < 128<<20 {
		t.Fatalf("released %d MiB, want at least 128", r.ReleasedBytes()>>20)
	}
	metrics.Read(s)
	if s[0].Value.Uint64() >= releaseFloor {
		t.Fatalf("%d MiB still free after the release", s[0].Value.Uint64()>>20)
	}
}
