package gcpace

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestPercent(t *testing.T) {
	cfg := Config{Percent: 50, Min: 64 << 20}
	for _, tt := range []struct {
		live uint64
		want int
	}{
		{0, maxPercent},
		{1 << 20, maxPercent}, // 1 MiB live: 64 MiB of room would be 6400 %
		{32 << 20, 200},       // the floor: 64 MiB on 32
		{128 << 20, 50},       // where the floor and the percent meet
		{450 << 20, 50},       // a million bindings and users
		{64 << 30, 50},        // very large: still half
	} {
		if got := Percent(cfg, tt.live); got != tt.want {
			t.Errorf("Percent(%d MiB live) = %d, want %d", tt.live>>20, got, tt.want)
		}
	}
	if got := Percent(Config{Percent: 1, Min: 0}, 1<<30); got != minPercent {
		t.Errorf("a 1 %% headroom gave %d, want the floor %d", got, minPercent)
	}
}

func TestNewHonoursGOGC(t *testing.T) {
	t.Setenv("GOGC", "200")
	if p := New(Config{Percent: 50, Min: 1}); p != nil {
		t.Fatal("a Pacer was made although GOGC is set")
	}
	t.Setenv("GOGC", "")
	if p := New(Config{Percent: 0}); p != nil {
		t.Fatal("a Pacer was made for Percent 0")
	}
}

// TestStepSetsRuntimePercent checks the runtime's GC percent follows the
// live heap after a collection.
func TestStepSetsRuntimePercent(t *testing.T) {
	t.Setenv("GOGC", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	p := New(Config{Percent: 50, Min: 1})
	hold := make([]byte, 64<<20) // live heap well above the floor
	hold[len(hold)-1] = 1
	runtime.GC()
	p.Step()
	runtime.KeepAlive(hold)
	if got := gcPercentNow(); got != 50 {
		t.Fatalf("GC percent %d after a Step over %d MiB live, want 50", got, 64)
	}
	if p.Percent() != 50 {
		t.Fatalf("Percent() = %d, want 50", p.Percent())
	}
	q := New(Config{Percent: 50, Min: 1 << 40})
	runtime.GC()
	q.Step()
	if got := gcPercentNow(); got != maxPercent {
		t.Fatalf("GC percent %d with a 1 TiB floor, want %d", got, maxPercent)
	}
}
