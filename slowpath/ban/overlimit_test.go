package ban

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type fakeBuckets map[netip.Addr]uint64

func (f fakeBuckets) Dropped(fn func(netip.Addr, uint64)) error {
	for a, n := range f {
		fn(a, n)
	}
	return nil
}

func TestOverlimit(t *testing.T) {
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	flood := netip.MustParseAddr("198.51.100.66")
	burst := netip.MustParseAddr("198.51.100.7")
	buckets := fakeBuckets{}
	var refused uint64
	b := &fakeBlocker{}
	o := &Overlimit{
		For: 10 * time.Second, Duration: time.Hour, Blocker: b, Buckets: buckets,
		Refused: func() (uint64, error) { return refused, nil },
		Now:     func() time.Time { return now },
	}
	steps := []struct {
		flood, burst uint64 // bucket counts at this sample
		want         int    // bans
	}{
		{100, 5, 0},  // t=0: both seen refused, streaks start
		{200, 5, 0},  // t=5: burst was not refused since, its streak ends
		{300, 9, 1},  // t=10: flood refused at every sample for 10 s: banned; burst starts again
		{400, 9, 0},  // t=15: flood starts over (the ban ended its streak); burst ends again
		{500, 12, 0}, // t=20: flood at 5 s, burst new
	}
	for i, s := range steps {
		buckets[flood], buckets[burst] = s.flood, s.burst
		refused += s.flood
		got, err := o.sample()
		if err != nil {
			t.Fatal(err)
		}
		if got != s.want {
			t.Errorf("sample %d: %d bans, want %d", i, got, s.want)
		}
		now = now.Add(5 * time.Second)
	}
	if diff := cmp.Diff([]string{"198.51.100.66/32 until 11:00:10"}, b.added); diff != "" {
		t.Errorf("bans (-want +got):\n%s", diff)
	}

	// Nobody refused since the last sample: no walk of the buckets, and
	// every streak ends.
	before := len(o.streaks)
	if _, err := o.sample(); err != nil || len(o.streaks) != 0 || before == 0 {
		t.Errorf("idle sample: err %v, streaks %d -> %d", err, before, len(o.streaks))
	}
}

func TestOverlimitRunRejects(t *testing.T) {
	if err := (&Overlimit{}).Run(context.Background()); err == nil {
		t.Error("Run without configuration succeeded")
	}
}
