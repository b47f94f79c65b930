package load

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPhaseSummary(t *testing.T) {
	var c counters
	k := &c.kinds[kRegisterRefresh]
	k.Sent, k.Retransmitted, k.OK, k.Failed, k.Timeouts, k.Challenged = 100, 3, 90, 5, 5, 7
	for v := int64(1); v <= 100; v++ {
		k.latency.Record(v * 10)
	}
	a := &c.actions[aRefresh]
	a.Offered, a.Started, a.Busy, a.Succeeded, a.Failed = 110, 100, 10, 90, 10
	a.latency.Record(500)
	c.kinds[kFlood].Sent = 0 // silent kinds are left out

	p := c.phase(10)
	got := p.Messages("register_refresh")
	if got.SuccessRatio != 0.9 || got.PerSecond != 9 {
		t.Errorf("success ratio %v, ok/s %v; want 0.9 and 9 (challenges excluded)", got.SuccessRatio, got.PerSecond)
	}
	// Quantiles are the top of their histogram bucket (width 4 around 500 µs).
	if d := cmp.Diff(Latency{Count: 100, Mean: 505, P50: 503, P90: 903, P99: 991, P999: 1000, Max: 1000}, got.Latency); d != "" {
		t.Errorf("latency (-want +got):\n%s", d)
	}
	if _, ok := p.Kinds["flood"]; ok {
		t.Errorf("a kind with nothing sent is reported")
	}
	if r := p.Actions["refresh"]; r.PerSecond != 9 || r.Busy != 10 || r.Latency.P50 != 500 {
		t.Errorf("action: %+v", r)
	}
}

func TestSample(t *testing.T) {
	var c counters
	c.sentMsgs, c.recvMsgs = 10, 8
	c.kinds[kRegisterAuth].OK = 3
	c.kinds[kInvite].OK = 2
	c.kinds[kInvite].Timeouts = 1
	c.kinds[kBye].Failed = 4
	c.actions[aCall].Offered, c.actions[aCall].Succeeded = 6, 2
	c.finalLat.Record(100)
	c.finalLat.Record(300)
	want := Sample{T: 4, Sent: 10, Recv: 8, OK: 5, Failed: 4, Timeouts: 1, Offered: 6, Succeeded: 2, Backlog: 7, Busy: 9, P50: 100, P99: 300}
	if d := cmp.Diff(want, c.sample(4, 7, 9)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	c.reset()
	if c.sample(0, 0, 0) != (Sample{}) {
		t.Errorf("reset left counts")
	}
}
