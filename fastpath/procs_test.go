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
	if got, want := runtime.GOMAXPROCS(0), 1+spareProcs; got != want {
		t.Fatalf("one loop: GOMAXPROCS %d, want %d", got, want)
	}
	reserveProcs(3, log)
	if got, want := runtime.GOMAXPROCS(0), 3+spareProcs; got != want {
		t.Fatalf("three loops: GOMAXPROCS %d, want %d", got, want)
	}
	reserveProcs(1, log) // never lowered
	if got, want := runtime.GOMAXPROCS(0), 3+spareProcs; got != want {
		t.Fatalf("GOMAXPROCS lowered to %d, want %d", got, want)
	}
}
