//go:build integration

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// TestMemoryReleasedAfterStorm: 5 000 devices register within a second
// or two (sipload's avalanche), then nothing. Within memory.release_after
// of quiet (5 s here) pinhole hands the storm's free heap back: the
// release counters move, by at least the 16 MiB floor, and the process's
// anonymous memory falls. With the runtime alone the free pages stay
// resident up to the next heap goal (docs/operations.md, "Memory").
func TestMemoryReleasedAfterStorm(t *testing.T) {
	metricsAddr := fmt.Sprintf("%s:%d", testutil.Loopback, testutil.FreePort(t, testutil.Loopback))
	cfg := testutil.DefaultConfig(t)
	cfg.Log.Level = "info" // 5 000 registrations: debug lines would be the load
	cfg.Metrics.Listen = metricsAddr
	cfg.Memory.ReleaseAfter = 5 * time.Second
	p := testutil.StartPinhole(t, nil, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// One batch socket on a free port: the default base port may be
	// another run's.
	port := testutil.FreePort(t, testutil.Loopback)
	out, err := exec.CommandContext(ctx, siploadBinary(t), "-server", p.Config.Listen.UDP[0], "-domain", domain,
		"-sockets", "1", "-port-base", strconv.Itoa(port), "-scenario", "avalanche", "-devices", "5000", "-rate", "5000", "-duration", "40s", "-warmup", "0s", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("sipload: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "5000 of 5000 devices registered") {
		t.Fatalf("the avalanche did not complete:\n%s", out)
	}
	releases, released := metricUint(t, metricsAddr, "pinhole_gc_releases_total"), metricUint(t, metricsAddr, "pinhole_gc_released_bytes_total")
	anon := anonymousKB(t, p.PID())

	// A full quiet window, then a second for the releaser's tick, with
	// room for a loaded machine.
	deadline := time.Now().Add(20 * time.Second)
	for metricUint(t, metricsAddr, "pinhole_gc_releases_total") == releases {
		if time.Now().After(deadline) {
			t.Fatalf("no release within 20 s of the storm's end (anonymous memory %d kB, heap idle %d kB of which released %d kB, allocated in all %d kB)", anon,
				metricUint(t, metricsAddr, "go_memstats_heap_idle_bytes")>>10, metricUint(t, metricsAddr, "go_memstats_heap_released_bytes")>>10,
				metricUint(t, metricsAddr, "go_memstats_alloc_bytes_total")>>10)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if got := metricUint(t, metricsAddr, "pinhole_gc_released_bytes_total") - released; got < 16<<20 {
		t.Errorf("the release after the storm returned %d kB, want at least 16 MiB", got>>10)
	}
	if after := anonymousKB(t, p.PID()); after >= anon {
		t.Errorf("anonymous memory %d kB after the release, %d kB at the storm's end: want less", after, anon)
	} else {
		t.Logf("anonymous memory %d kB at the storm's end, %d kB after the release", anon, after)
	}
}

func metricUint(t *testing.T, addr, name string) uint64 {
	t.Helper()
	v := metric(t, addr, name)
	n, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("metric %s = %q: %v", name, v, err)
	}
	return uint64(n)
}

// anonymousKB is the process's anonymous resident memory, from
// /proc/PID/smaps_rollup.
func anonymousKB(t *testing.T, pid int) uint64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatalf("read pinhole's memory: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Anonymous:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("smaps_rollup Anonymous %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("no Anonymous line in pinhole's smaps_rollup")
	return 0
}
