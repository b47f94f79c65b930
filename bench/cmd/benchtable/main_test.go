package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// TestMemoryLineRestart: after a restart the growth per binding counts
// from the empty server, not from the restarted one that already holds
// the bindings it read back.
func TestMemoryLineRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "avalanche-pinhole-memory.txt")
	lines := strings.Join([]string{
		"devices 1000", "empty_heap_bytes 1000000", "empty_rss_bytes 9000000", "empty_private_rss_bytes 8000000",
		"bindings_before_restart 1000", "restart_s 0.40", "bindings_after_restart 1000",
		"before_heap_bytes 1200000", "before_rss_bytes 9500000", "before_private_rss_bytes 8400000",
		"settle_s 35", "bindings_held 1000", "peak_rss_bytes 12000000", "peak_heap_bytes 3000000",
		"after_heap_bytes 1250000", "after_rss_bytes 9600000", "after_private_rss_bytes 8500000",
	}, "\n")
	if err := os.WriteFile(path, []byte(lines+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := memoryLine(path)
	for _, want := range []string{"per binding: heap 250 B, private RSS 500 B", "restart 0.4 s, bindings 1000 before it, 1000 read back"} {
		if !strings.Contains(got, want) {
			t.Errorf("memory line %q lacks %q", got, want)
		}
	}
}

// TestMemoryLineAnonymous: the anonymous part of private RSS is shown
// beside it when the run recorded it, and the old figure stays.
func TestMemoryLineAnonymous(t *testing.T) {
	path := filepath.Join(t.TempDir(), "avalanche-pinhole-memory.txt")
	lines := strings.Join([]string{
		"devices 1000", "before_heap_bytes 1000000", "before_rss_bytes 9000000",
		"before_private_rss_bytes 8000000", "before_anon_rss_bytes 7000000",
		"settle_s 35", "bindings_held 1000", "peak_rss_bytes 12000000", "peak_heap_bytes 3000000",
		"after_heap_bytes 1250000", "after_rss_bytes 9600000", "after_private_rss_bytes 8500000",
		"after_anon_rss_bytes 7300000",
	}, "\n")
	if err := os.WriteFile(path, []byte(lines+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := memoryLine(path)
	if want := "per binding: heap 250 B, private RSS 500 B (anonymous 300 B)"; !strings.Contains(got, want) {
		t.Errorf("memory line %q lacks %q", got, want)
	}
}

// TestBackendRatios: each server on Redis is set against the same server
// on bbolt, scenario by scenario, and only when both sustained a rate.
func TestBackendRatios(t *testing.T) {
	best := map[capKey]*load.Result{
		{"fastpath", "refresh"}:       {Rate: 64000},
		{"fastpath-redis", "refresh"}: {Rate: 45200},
		{"pinhole", "register"}:       {Rate: 8000},
		{"pinhole-redis", "register"}: {Rate: 8000},
		{"pinhole-redis", "refresh"}:  {Rate: 16000}, // no bbolt run: no ratio
		{"kamailio", "register"}:      {Rate: 4000},
	}
	var b strings.Builder
	backendRatios(&b, best)
	got := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{
		"Redis Cluster against bbolt, same server, same core:",
		"register       pinhole-redis          8000/s against pinhole                8000/s: 1.00",
		"refresh        fastpath-redis        45200/s against fastpath              64000/s: 0.71",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestServerOfRedis: a run of a server on Redis is not taken for the
// same server on bbolt.
func TestServerOfRedis(t *testing.T) {
	for name, want := range map[string]string{
		"pinhole-redis-register-8000": "pinhole-redis",
		"pinhole-register-8000":       "pinhole",
		"fastpath-redis-refresh-4000": "fastpath-redis",
		"fastpath-nobatch-refresh-1":  "fastpath-nobatch",
	} {
		if got := serverOf(name); got != want {
			t.Errorf("serverOf(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestPastSaturation: the run offered twice the sustained rate is judged
// against that rate, by the actions completed per second.
func TestPastSaturation(t *testing.T) {
	dir := t.TempDir()
	write := func(name, scenario string, rate, succeeded float64) {
		body := fmt.Sprintf(`{"scenario":%q,"offered_rate":%g,"run":{"seconds":3,"actions":{%q:{"succeeded":%g,"latency":{"p99_us":150000}}}}}`,
			scenario, rate, mainAction[baseScenario(scenario)], succeeded)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("over-pinhole-register-32000.json", "register", 32000, 3*15000) // 15 000/s of 16 000: 94 %
	write("over-fastpath-register-8000.json", "register", 8000, 3*2000)   // 2 000/s of 4 000: 50 %
	write("over-kamailio-refresh-noauth-45200.json", "refresh", 45200, 0) // no sustained rate: no row
	best := map[capKey]*load.Result{
		{"pinhole", "register"}:  {Rate: 16000},
		{"fastpath", "register"}: {Rate: 4000},
	}
	var b strings.Builder
	if err := pastSaturation(&b, dir, best); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"register       pinhole                 16000      32000        15000      94%    150.00     holds",
		"register       fastpath                 4000       8000         2000      50%    150.00 collapses",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "kamailio") {
		t.Errorf("a run without a sustained rate has no row:\n%s", out)
	}
}
