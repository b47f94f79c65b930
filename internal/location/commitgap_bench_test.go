package location

import (
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkCommitGap applies new registrations at a steady 4 000 a second
// (paced, as devices arrive, not as fast as the loop can go) and reports
// the process's CPU time per registration, with the write-through
// transactions starting as soon as the previous one ends ("none") and at
// most every boltCommitGap ("gap"). CPU time, not wall time: the pace
// fixes the wall time, the commits' fsyncs and copy-on-write pages are
// what the gap saves. Run with -benchtime 8000x (two seconds each).
func BenchmarkCommitGap(b *testing.B) {
	for _, c := range []struct {
		name string
		gap  time.Duration
	}{{"none", 0}, {"gap", boltCommitGap}} {
		b.Run(c.name, func(b *testing.B) {
			m, err := Open(Options{Path: tempDB(b), FlushInterval: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			m.commitGap = c.gap
			const rate = 4000
			exp := time.Now().Add(time.Hour)
			var wg sync.WaitGroup
			before := cpuTime()
			start := time.Now()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if ahead := time.Until(start.Add(time.Duration(i) * time.Second / rate)); ahead > time.Millisecond {
					time.Sleep(ahead)
				}
				bd := typical(i, exp)
				_, cm, err := m.Apply(bd.AOR, func([]Binding) ([]Binding, error) { return []Binding{bd}, nil })
				if err != nil {
					b.Fatal(err)
				}
				wg.Add(1)
				cm.Then(func(error) { wg.Done() })
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-before)/float64(b.N)/1e3, "cpu-µs/op")
			st := m.Stats()
			b.ReportMetric(float64(st.Writes)/float64(max(st.Commits, 1)), "writes/commit")
		})
	}
}

// cpuTime is the process's user and system CPU time so far, in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
