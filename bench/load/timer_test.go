package load

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// schedule lists the waits of a transaction that never gets a reply (or
// gets a provisional one after the first wait), ending with the timeout.
func schedule(invite bool, provisionalAfter int, t1, t2 time.Duration) (waits []time.Duration, retransmits int) {
	var last, elapsed time.Duration
	for i := 0; ; i++ {
		wait, again := retransmitAfter(invite, provisionalAfter >= 0 && i >= provisionalAfter, last, elapsed, t1, t2)
		waits = append(waits, wait)
		elapsed += wait
		if !again {
			return waits, retransmits
		}
		retransmits++
		last = wait
	}
}

func TestRetransmitSchedule(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		name        string
		invite      bool
		provisional int
		wantWaits   []time.Duration
		wantRetrans int
	}{
		// Timer E: 0.5, 1, 2, 4, 4, ... until F at 32 s (RFC 3261 §17.1.2.2):
		// 10 retransmissions, the last wait cut to end at 32 s.
		{"non-INVITE", false, -1, ms(500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000, 4000, 500), 10},
		// Timer A doubles without cap: 0.5 … 16 s, B at 32 s: 6 retransmissions.
		{"INVITE", true, -1, ms(500, 1000, 2000, 4000, 8000, 16000, 500), 6},
		// A provisional reply moves a non-INVITE to T2 at once.
		{"non-INVITE proceeding", false, 1, ms(500, 4000, 4000, 4000, 4000, 4000, 4000, 4000, 3500), 8},
		// A provisional reply stops INVITE retransmissions; the bound stays.
		{"INVITE proceeding", true, 1, ms(500, 31500), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			waits, n := schedule(tc.invite, tc.provisional, DefaultT1, DefaultT2)
			if d := cmp.Diff(tc.wantWaits, waits); d != "" {
				t.Errorf("waits (-want +got):\n%s", d)
			}
			if n != tc.wantRetrans {
				t.Errorf("retransmissions = %d, want %d", n, tc.wantRetrans)
			}
			var total time.Duration
			for _, w := range waits {
				total += w
			}
			if total != 64*DefaultT1 {
				t.Errorf("timeout after %v, want 64·T1", total)
			}
		})
	}
}

func TestWheelFiresInOrderAndOnTime(t *testing.T) {
	w := newWheel(1000)
	r := rand.New(rand.NewPCG(3, 4))
	want := map[int32]int64{}
	for i := range int32(2000) {
		at := 1000 + int64(r.IntN(3*wheelSlots)) // up to three turns away
		if i%100 == 0 {
			at = 900 // in the past: fires on the next tick
		}
		w.set(timerEntry{at: at, dev: i})
		want[i] = max(at, 1001)
	}
	got := map[int32]int64{}
	var last int64
	for now := int64(1000); now <= 1000+3*wheelSlots+10; now += 7 {
		w.advance(now, func(e timerEntry) {
			if e.at < last {
				t.Fatalf("entry for tick %d fired after tick %d", e.at, last)
			}
			last = e.at
			if _, dup := got[e.dev]; dup {
				t.Fatalf("device %d fired twice", e.dev)
			}
			if now < max(e.at, 1001) || now-7 >= max(e.at, 1001) {
				t.Fatalf("device %d due at %d fired in advance to %d", e.dev, e.at, now)
			}
			got[e.dev] = max(e.at, 1001)
		})
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("fired (-want +got):\n%s", d)
	}
}

func TestWheelRearmFromFire(t *testing.T) {
	// A timer set from inside fire for exactly one turn later lands in the
	// slot being emptied and must survive until its own tick.
	w := newWheel(0)
	w.set(timerEntry{at: 5, dev: 1})
	var fired []int64
	w.advance(3*wheelSlots, func(e timerEntry) {
		fired = append(fired, w.now)
		if len(fired) < 3 {
			w.set(timerEntry{at: w.now + wheelSlots, dev: 1})
		}
	})
	if d := cmp.Diff([]int64{5, 5 + wheelSlots, 5 + 2*wheelSlots}, fired); d != "" {
		t.Errorf("fired at (-want +got):\n%s", d)
	}
}

func TestPacer(t *testing.T) {
	const s = int64(time.Second)
	p := pacer{rate: 1000, start: 10 * s}
	tests := []struct {
		now  int64
		want uint64
	}{
		{9 * s, 0},        // before the start
		{10 * s, 1},       // the first action is due at the start
		{10*s + s/2, 500}, // 0.5 s at 1000/s: 501 due, 1 issued
		{10*s + s/2, 0},   // nothing new in the same instant
		{12 * s, 1500},    // a stalled caller gets the whole backlog: open loop
		{12*s + int64(time.Millisecond), 1},
	}
	for i, tc := range tests {
		got := p.due(tc.now)
		if got != tc.want {
			t.Fatalf("step %d: due(%d) = %d, want %d", i, tc.now, got, tc.want)
		}
		p.issued += got
	}
	if p.issued != 2002 {
		t.Errorf("issued %d over 2.001 s at 1000/s, want 2002", p.issued)
	}

	limited := pacer{rate: 100, start: 0, limit: 5}
	if got := limited.due(10 * s); got != 5 {
		t.Errorf("limited due = %d, want 5", got)
	}
	limited.issued = 5
	if !limited.done() || limited.due(20*s) != 0 {
		t.Errorf("limited pacer not done after its limit")
	}
	if (&pacer{rate: 0}).due(s) != 0 {
		t.Errorf("rate 0 issued actions")
	}
}

func BenchmarkWheel(b *testing.B) {
	b.ReportAllocs()
	w := newWheel(0)
	for i := range b.N {
		w.set(timerEntry{at: int64(i) + 500, dev: int32(i)})
		w.advance(int64(i), func(timerEntry) {})
	}
}
