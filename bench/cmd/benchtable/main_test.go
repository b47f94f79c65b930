package main

import (
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/bench/load"
)

// TestLastPerRate: a retried rung is one point, its last attempt.
func TestLastPerRate(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	run := func(rate float64, s int) *load.Result {
		return &load.Result{Rate: rate, Started: t0.Add(time.Duration(s) * time.Second)}
	}
	first, retry := run(8000, 10), run(8000, 20)
	got := lastPerRate([]*load.Result{run(16000, 30), retry, run(4000, 0), first})
	if len(got) != 3 || got[0].Rate != 4000 || got[1] != retry || got[2].Rate != 16000 {
		for _, r := range got {
			t.Logf("%.0f at %v", r.Rate, r.Started)
		}
		t.Fatalf("want 4000, 8000 (the retry), 16000")
	}
}
