package location

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// expirations records OnExpire calls.
type expirations struct {
	mu  sync.Mutex
	got map[string]int // contact → calls
}

func (e *expirations) on(b Binding) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.got == nil {
		e.got = map[string]int{}
	}
	e.got[b.Contact]++
}

func (e *expirations) snapshot() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for k, v := range e.got {
		out[k] = v
	}
	return out
}

func TestExpiry(t *testing.T) {
	c := newClock()
	var ex expirations
	m := openTest(t, Options{Now: c.Now, OnExpire: ex.on, Shards: 2})
	t0 := c.Now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	put(t, m, Binding{AOR: "a@x", Contact: "sip:a10@x", Expires: at(10), CSeq: 1},
		Binding{AOR: "a@x", Contact: "sip:a20@x", Expires: at(20), CSeq: 1})
	put(t, m, Binding{AOR: "b@x", Contact: "sip:touched@x", Expires: at(10), CSeq: 1})
	put(t, m, Binding{AOR: "c@x", Contact: "sip:updated@x", Expires: at(10), CSeq: 1})
	put(t, m, Binding{AOR: "d@x", Contact: "sip:shortened@x", Expires: at(30), CSeq: 1})

	c.Advance(5 * time.Second)
	if !m.Touch(Refresh{AOR: "b@x", Contact: "sip:touched@x", CSeq: 2, Expires: at(40)}) {
		t.Fatal("Touch failed")
	}
	put(t, m, Binding{AOR: "c@x", Contact: "sip:updated@x", Expires: at(40), CSeq: 2})
	put(t, m, Binding{AOR: "d@x", Contact: "sip:shortened@x", Expires: at(15), CSeq: 2})

	steps := []struct {
		at   int
		want map[string]int
	}{
		{9, map[string]int{}},
		{10, map[string]int{"sip:a10@x": 1}},
		{14, map[string]int{"sip:a10@x": 1}},
		{15, map[string]int{"sip:a10@x": 1, "sip:shortened@x": 1}},
		{25, map[string]int{"sip:a10@x": 1, "sip:shortened@x": 1, "sip:a20@x": 1}},
		{39, map[string]int{"sip:a10@x": 1, "sip:shortened@x": 1, "sip:a20@x": 1}},
		{40, map[string]int{"sip:a10@x": 1, "sip:shortened@x": 1, "sip:a20@x": 1, "sip:touched@x": 1, "sip:updated@x": 1}},
		{100, map[string]int{"sip:a10@x": 1, "sip:shortened@x": 1, "sip:a20@x": 1, "sip:touched@x": 1, "sip:updated@x": 1}},
	}
	for _, st := range steps {
		now := c.Advance(at(st.at).Sub(c.Now()))
		// Lookup hides lapsed bindings before any expiry pass runs.
		for _, aor := range []string{"a@x", "b@x", "c@x", "d@x"} {
			for _, b := range m.Lookup(aor) {
				if !b.Expires.After(now) {
					t.Errorf("t+%d: Lookup returned lapsed %s", st.at, b.Contact)
				}
			}
		}
		m.expire(now)
		m.expire(now) // a second pass must not repeat a call
		if diff := cmp.Diff(st.want, ex.snapshot()); diff != "" {
			t.Errorf("t+%d: OnExpire calls (-want +got):\n%s", st.at, diff)
		}
	}
	if a, b := m.Len(); a != 0 || b != 0 {
		t.Errorf("Len = %d, %d after everything lapsed", a, b)
	}
	if got := m.Stats().Expired; got != 5 {
		t.Errorf("Stats.Expired = %d, want 5", got)
	}
}

// TestExpiryByUpdate: a lapsed binding the expiry pass has not reached
// leaves at the next Update of its AOR, and still gets its OnExpire.
func TestExpiryByUpdate(t *testing.T) {
	c := newClock()
	var ex expirations
	m := openTest(t, Options{Now: c.Now, OnExpire: ex.on})
	put(t, m, Binding{AOR: "a@x", Contact: "sip:old@x", Expires: c.Now().Add(time.Second)})
	c.Advance(2 * time.Second)
	put(t, m, Binding{AOR: "a@x", Contact: "sip:new@x", Expires: c.Now().Add(time.Hour)})
	m.expire(c.Now())
	if diff := cmp.Diff(map[string]int{"sip:old@x": 1}, ex.snapshot()); diff != "" {
		t.Errorf("OnExpire calls (-want +got):\n%s", diff)
	}
	if _, n := m.Len(); n != 1 {
		t.Errorf("Len bindings = %d, want 1", n)
	}
}

// TestExpiryMany checks the heap against a brute-force model with many
// AORs, refreshes in both directions and removals.
func TestExpiryMany(t *testing.T) {
	c := newClock()
	var ex expirations
	m := openTest(t, Options{Now: c.Now, OnExpire: ex.on, Shards: 4})
	t0 := c.Now()
	want := map[string]int{}
	expires := map[string]time.Time{}
	for i := range 2000 {
		b := typical(i, t0.Add(time.Duration(1+i%97)*time.Second))
		put(t, m, b)
		expires[b.Contact] = b.Expires
		switch i % 5 {
		case 0: // later
			b.Expires = b.Expires.Add(time.Duration(i%13) * time.Second)
			b.CSeq++
			put(t, m, b)
		case 1: // earlier
			b.Expires = b.Expires.Add(-time.Duration(i%7) * time.Second)
			if !b.Expires.After(t0) {
				b.Expires = t0.Add(time.Second)
			}
			m.Touch(refresh(b, b.CSeq+1, b.Expires))
		case 2: // removed: never expires
			if _, err := m.Update(b.AOR, func([]Binding) ([]Binding, error) { return nil, nil }); err != nil {
				t.Fatal(err)
			}
			delete(expires, b.Contact)
			continue
		}
		expires[b.Contact] = b.Expires
	}
	for s := 1; s <= 120; s++ {
		now := c.Advance(time.Second)
		m.expire(now)
		for contact, exp := range expires {
			if !exp.After(now) {
				want[contact] = 1
			}
		}
		if diff := cmp.Diff(want, ex.snapshot()); diff != "" {
			t.Fatalf("t+%d: OnExpire calls (-want +got):\n%s", s, diff)
		}
	}
}

// TestExpiryActsFor: with ActsFor, a lapsed binding another edge owns
// leaves this view without OnExpire and without a write to the backing
// (its owner writes the removal); an owned one gets both, and an AOR with
// both kinds lapsed is written once, for the owned one.
func TestExpiryActsFor(t *testing.T) {
	c := newClock()
	var ex expirations
	mine := func(b Binding) bool { return b.Edge == "" || b.Edge == "a" }
	m, err := Open(Options{Path: tempDB(t), FlushInterval: time.Hour, Now: c.Now, OnExpire: ex.on, ActsFor: mine})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	soon := c.Now().Add(10 * time.Second)
	put(t, m, Binding{AOR: "theirs@x", Contact: "sip:theirs@x", Expires: soon, Edge: "b"})
	put(t, m, Binding{AOR: "mine@x", Contact: "sip:mine@x", Expires: soon, Edge: "a"})
	put(t, m, Binding{AOR: "old@x", Contact: "sip:old@x", Expires: soon})
	put(t, m, Binding{AOR: "both@x", Contact: "sip:both-b@x", Expires: soon, Edge: "b"},
		Binding{AOR: "both@x", Contact: "sip:both-a@x", Expires: soon, Edge: "a"})
	if m.anyDirty() {
		t.Fatal("written-through registrations left dirty")
	}
	now := c.Advance(11 * time.Second)
	m.expire(now)
	want := map[string]int{"sip:mine@x": 1, "sip:old@x": 1, "sip:both-a@x": 1}
	if diff := cmp.Diff(want, ex.snapshot()); diff != "" {
		t.Errorf("OnExpire calls (-want +got):\n%s", diff)
	}
	if a, n := m.Len(); a != 0 || n != 0 {
		t.Errorf("view holds %d AORs, %d bindings after all lapsed; want none", a, n)
	}
	if got := m.Stats().Expired; got != 5 {
		t.Errorf("Stats.Expired = %d, want 5 (the view drops every lapsed binding)", got)
	}
	var dirty []string
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for aor := range s.dirty {
			dirty = append(dirty, aor)
		}
		s.mu.Unlock()
	}
	slices.Sort(dirty)
	if diff := cmp.Diff([]string{"both@x", "mine@x", "old@x"}, dirty); diff != "" {
		t.Errorf("AORs to write (-want +got):\n%s", diff)
	}
}
