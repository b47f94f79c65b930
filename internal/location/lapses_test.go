package location

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestLapsesHeld: a binding Options.Holds keeps stays past its expiry
// without OnExpire, pass after pass, beside its AOR's other bindings that
// do lapse; once no longer held it lapses at the next pass, with exactly
// one OnExpire. This is the standby box of a pair holding a
// binding until the active box removes it, or until it becomes active.
func TestLapsesHeld(t *testing.T) {
	c := newClock()
	var ex expirations
	var active atomic.Bool
	holds := func(b Binding) bool { return !active.Load() && b.Contact != "sip:ours@x" }
	m := openTest(t, Options{Now: c.Now, OnExpire: ex.on, Holds: holds, Shards: 2})
	t0 := c.Now()
	put(t, m, Binding{AOR: "a@x", Contact: "sip:ours@x", Expires: t0.Add(10 * time.Second), CSeq: 1},
		Binding{AOR: "a@x", Contact: "sip:held@x", Expires: t0.Add(10 * time.Second), CSeq: 1},
		Binding{AOR: "a@x", Contact: "sip:live@x", Expires: t0.Add(100 * time.Second), CSeq: 1})
	put(t, m, Binding{AOR: "b@x", Contact: "sip:alone@x", Expires: t0.Add(12 * time.Second), CSeq: 1})

	for s := 10; s <= 20; s++ {
		m.expire(c.Advance(t0.Add(time.Duration(s) * time.Second).Sub(c.Now())))
	}
	if diff := cmp.Diff(map[string]int{"sip:ours@x": 1}, ex.snapshot()); diff != "" {
		t.Errorf("standby: OnExpire calls (-want +got):\n%s", diff)
	}
	if aors, n := m.Len(); aors != 2 || n != 3 {
		t.Errorf("standby: Len = %d AORs, %d bindings; want 2, 3 (held, live, alone)", aors, n)
	}

	active.Store(true)
	m.expire(c.Advance(time.Second))
	m.expire(c.Advance(time.Second)) // no second call
	want := map[string]int{"sip:ours@x": 1, "sip:held@x": 1, "sip:alone@x": 1}
	if diff := cmp.Diff(want, ex.snapshot()); diff != "" {
		t.Errorf("active: OnExpire calls (-want +got):\n%s", diff)
	}
	if got := m.Lookup("a@x"); len(got) != 1 || got[0].Contact != "sip:live@x" {
		t.Errorf("active: a@x holds %v, want only sip:live@x", got)
	}
	if aors, n := m.Len(); aors != 1 || n != 1 {
		t.Errorf("active: Len = %d AORs, %d bindings; want 1, 1", aors, n)
	}
}

// TestLapsesAtLoad: bindings found lapsed when the file is opened are
// held too while Holds keeps them (a standby restarting must not
// de-register them upstream), and lapse once it lets them go.
func TestLapsesAtLoad(t *testing.T) {
	c := newClock()
	path := tempDB(t)
	m, err := Open(Options{Path: path, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	put(t, m, Binding{AOR: "a@x", Contact: "sip:gone@x", Expires: c.Now().Add(5 * time.Second), CSeq: 1},
		Binding{AOR: "a@x", Contact: "sip:live@x", Expires: c.Now().Add(time.Hour), CSeq: 1})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	c.Advance(10 * time.Second)

	var ex expirations
	var active atomic.Bool
	m = openTest(t, Options{Path: path, Now: c.Now, OnExpire: ex.on, Holds: func(Binding) bool { return !active.Load() }})
	time.Sleep(50 * time.Millisecond) // the expiry goroutine's first delivery, if it made one
	m.expire(c.Now())
	if got := ex.snapshot(); len(got) != 0 {
		t.Errorf("declined at load: OnExpire calls %v, want none", got)
	}
	active.Store(true)
	m.expire(c.Advance(time.Second))
	if diff := cmp.Diff(map[string]int{"sip:gone@x": 1}, ex.snapshot()); diff != "" {
		t.Errorf("accepted: OnExpire calls (-want +got):\n%s", diff)
	}
}

// TestLapsesAdopt: a set read from the shared backing keeps a binding past
// its expiry when Holds is set, for the expiry pass to ask about: dropped
// on adoption, it would leave without OnExpire on the box that acts for
// it (a standby that became active before the old box removed it).
func TestLapsesAdopt(t *testing.T) {
	c := newClock()
	var ex expirations
	var active atomic.Bool
	m := openTest(t, Options{Now: c.Now, OnExpire: ex.on, Holds: func(Binding) bool { return !active.Load() }})
	old := Binding{AOR: "a@x", Contact: "sip:old@x", Expires: c.Now().Add(5 * time.Second), CSeq: 1}
	live := Binding{AOR: "a@x", Contact: "sip:live@x", Expires: c.Now().Add(time.Hour), CSeq: 1}
	_, blob, err := buildSet(old.AOR, []Binding{old, live}, c.Now())
	if err != nil {
		t.Fatal(err)
	}
	v, _ := appendValue(nil, blob)
	c.Advance(10 * time.Second)
	m.adopt(old.AOR, v, nil)
	if _, n := m.Len(); n != 2 {
		t.Fatalf("adopted %d bindings, want both (one lapsed, held)", n)
	}
	m.expire(c.Now())
	if got := ex.snapshot(); len(got) != 0 {
		t.Fatalf("standby: OnExpire calls %v", got)
	}
	active.Store(true)
	m.expire(c.Advance(time.Second))
	if diff := cmp.Diff(map[string]int{"sip:old@x": 1}, ex.snapshot()); diff != "" {
		t.Errorf("active: OnExpire calls (-want +got):\n%s", diff)
	}
}
