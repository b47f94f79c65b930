package absorb

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cpuTimer measures a benchmark's CPU time on its own thread, reported as
// cpu-ns/op beside ns/op: on a machine shared with other work, ns/op also
// counts the time other processes held the core, cpu-ns/op does not. The
// benchmark's goroutine stays on its thread from start to report.
type cpuTimer struct {
	b       *testing.B
	total   time.Duration
	started time.Duration
	running bool
}

func startCPUTimer(b *testing.B) *cpuTimer {
	runtime.LockOSThread()
	t := &cpuTimer{b: b}
	t.start()
	return t
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) // cannot fail for this clock
	return time.Duration(ts.Nano())
}

// stop and start bracket work outside the measurement, with b's timer.
func (t *cpuTimer) stop() {
	t.b.StopTimer()
	if t.running {
		t.total += threadCPU() - t.started
		t.running = false
	}
}

func (t *cpuTimer) start() {
	t.running = true
	t.started = threadCPU()
	t.b.StartTimer()
}

// report ends the measurement.
func (t *cpuTimer) report() {
	t.stop()
	runtime.UnlockOSThread()
	t.b.ReportMetric(float64(t.total.Nanoseconds())/float64(t.b.N), "cpu-ns/op")
}
