package ban

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type fakeBlocker struct{ added []string }

func (f *fakeBlocker) Add(p netip.Prefix, until time.Time) error {
	f.added = append(f.added, p.String()+" until "+until.UTC().Format("15:04:05"))
	return nil
}

func TestFailure(t *testing.T) {
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	b := &fakeBlocker{}
	tr, err := New(Config{Failures: 3, Window: time.Minute, Duration: 15 * time.Minute, Blocker: b, MaxSources: 3, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("198.51.100.7")
	v6 := netip.MustParseAddr("2001:db8::7")
	steps := []struct {
		src     netip.Addr
		advance time.Duration
		want    bool
	}{
		{a, 0, false},
		{a, 10 * time.Second, false},
		{a, 61 * time.Second, false}, // window ended: counting starts again
		{a, time.Second, false},
		{a, time.Second, true}, // third within the window
		{a, time.Second, false},
		{netip.MustParseAddr("::ffff:198.51.100.8"), 0, false}, // unmapped to IPv4
		{v6, 0, false},
		{netip.MustParseAddr("192.0.2.9"), 0, false}, // full: not tracked
		{v6, 0, false},
		{v6, 0, true},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		if got := tr.Failure(s.src); got != s.want {
			t.Errorf("step %d (%v): banned = %v, want %v", i, s.src, got, s.want)
		}
	}
	want := []string{"198.51.100.7/32 until 10:16:13", "2001:db8::7/128 until 10:16:14"}
	if diff := cmp.Diff(want, b.added); diff != "" {
		t.Errorf("bans (-want +got):\n%s", diff)
	}
}

func TestNewRejects(t *testing.T) {
	for _, c := range []Config{{}, {Failures: 1, Window: time.Second, Duration: time.Second}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
