package location

import (
	"testing"
	"time"
)

// TestAdopt: a set read from the shared backing replaces the local view
// (and OnChange names its AOR) unless the AOR has an unwritten local
// change; an absent key empties the AOR; the same bytes change nothing.
func TestAdopt(t *testing.T) {
	var changed []string
	m := openTest(t, Options{OnChange: func(aor string) { changed = append(changed, aor) }})
	exp := time.Now().Add(time.Hour)
	x := typical(1, exp)
	value := func(bs ...Binding) []byte {
		_, blob, err := buildSet(x.AOR, bs, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		v, _ := appendValue(nil, blob)
		return v
	}

	m.adopt(x.AOR, value(x), nil)
	if got := m.Lookup(x.AOR); len(got) != 1 || got[0].Contact != x.Contact {
		t.Fatalf("after adopting one binding: %v", got)
	}
	if len(changed) != 1 {
		t.Fatalf("OnChange calls %v, want one", changed)
	}
	m.adopt(x.AOR, value(x), nil)
	if len(changed) != 1 || m.Stats().Followed != 1 {
		t.Fatalf("adopting the same set again changed the view (OnChange %v)", changed)
	}
	y := x
	y.Contact = "sip:y@192.0.2.2"
	m.adopt(x.AOR, value(x, y), nil)
	if _, n := m.Len(); n != 2 {
		t.Fatalf("after adopting two bindings the store counts %d", n)
	}

	// An unwritten local change wins over what the backing holds.
	s := m.shard(x.AOR)
	s.mu.Lock()
	s.dirty = map[string]struct{}{x.AOR: {}}
	s.mu.Unlock()
	m.adopt(x.AOR, nil, nil)
	if got := m.Lookup(x.AOR); len(got) != 2 {
		t.Fatalf("a notice overwrote an unwritten local change: %d bindings left", len(got))
	}
	// A value read while this edge was writing the AOR may predate that
	// write: read again, change nothing.
	s.mu.Lock()
	s.dirty = map[string]struct{}{}
	s.inflight = map[string]struct{}{x.AOR: {}}
	s.mu.Unlock()
	if m.adopt(x.AOR, nil, nil) {
		t.Fatal("a value read while the AOR was being written was adopted")
	}
	s.mu.Lock()
	s.inflight = map[string]struct{}{}
	s.mu.Unlock()
	settled := m.settledNow()
	s.mu.Lock()
	s.settled++
	s.mu.Unlock()
	if m.adopt(x.AOR, nil, settled) || len(m.Lookup(x.AOR)) != 2 {
		t.Fatal("a value read across a write of its shard was adopted")
	}

	m.adopt(x.AOR, nil, nil)
	if aors, n := m.Len(); aors != 0 || n != 0 {
		t.Fatalf("after adopting an absent key: %d AORs, %d bindings", aors, n)
	}
	if st := m.Stats(); st.Expired != 0 {
		t.Errorf("bindings another edge removed counted as expired: %d", st.Expired)
	}

	m.adopt(x.AOR, []byte{99, 1, 2}, nil)
	if st := m.Stats(); st.SkippedAtLoad != 1 {
		t.Errorf("an undecodable value: skipped %d, want 1", st.SkippedAtLoad)
	}
}

// TestRedisKey: the key of an AOR names it back, whatever it holds.
func TestRedisKey(t *testing.T) {
	r := &redisBacking{opts: RedisOptions{KeyPrefix: DefaultRedisKeyPrefix}}
	for _, aor := range []string{"alice@example.com", "a}b@x", "{x}@y", ""} {
		k := r.key(aor)
		got, ok := r.aorOf(k)
		if !ok || got != aor {
			t.Errorf("aorOf(key(%q)) = %q, %v", aor, got, ok)
		}
	}
	if _, ok := r.aorOf("other:alice"); ok {
		t.Error("a key without the prefix named an AOR")
	}
}

// TestAppendValueUntil: the value's latest expiry is the last binding's.
func TestAppendValueUntil(t *testing.T) {
	now := time.Now()
	a, b := typical(1, now.Add(time.Hour)), typical(1, now.Add(2*time.Hour))
	b.Contact = "sip:b@x"
	_, blob, err := buildSet(a.AOR, []Binding{a, b}, now)
	if err != nil {
		t.Fatal(err)
	}
	v, until := appendValue(nil, blob)
	if want := unixSeconds(b.Expires); until != want {
		t.Errorf("until %d, want %d", until, want)
	}
	if v[0] != formatV2 || len(v) != len(blob)-setHeader+1 {
		t.Errorf("value is not the version byte and the records")
	}
}
