package fastpath

import (
	"log/slog"
	"runtime"
	"testing"
)

func TestReserveProcs(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	log := slog.New(slog.DiscardHandler)

	reserveProcs(1, log)
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Fatalf("one loop: GOMAXPROCS %d, want 2", got)
	}
	reserveProcs(3, log)
	if got := runtime.GOMAXPROCS(0); got != 4 {
		t.Fatalf("three loops: GOMAXPROCS %d, want 4", got)
	}
	reserveProcs(1, log) // never lowered
	if got := runtime.GOMAXPROCS(0); got != 4 {
		t.Fatalf("GOMAXPROCS lowered to %d", got)
	}
}
