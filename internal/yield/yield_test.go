package yield

import (
	"testing"
	"time"
)

// TestCoreBounded: a long piece of work (a slow disk) does not make the
// batch wait as long again; a piece that took nothing costs no pause.
func TestCoreBounded(t *testing.T) {
	start := time.Now()
	Core(time.Hour)
	if d := time.Since(start); d < maxPause || d > time.Second {
		t.Errorf("after an hour's piece Core paused %v, want %v (at most a second, for a loaded machine)", d, maxPause)
	}
	start = time.Now()
	Core(0)
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("after no work Core paused %v", d)
	}
}
