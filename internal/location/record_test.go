package location

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRecordRoundTrip(t *testing.T) {
	exp := time.Unix(1_750_000_000, 0)
	for _, tt := range []struct {
		name string
		in   []Binding
	}{
		{"typical with instance", []Binding{typical(2, exp)}},
		{"typical without instance", []Binding{typical(3, exp)}},
		{"zero flow and times", []Binding{{AOR: "a@x", Contact: "sip:a@x"}}},
		{"extremes", []Binding{{AOR: "a@x", Contact: "c", RegID: 1<<32 - 1, CSeq: 1<<32 - 1, Q: 1<<16 - 1,
			Expires: time.Unix(1<<32-1, 0), Updated: time.Unix(1, 0), NAT: true,
			Flow: Flow{Transport: TransportWSS, Remote: netip.MustParseAddrPort("[fe80::1%a-long-zone-name]:65535"), Local: netip.MustParseAddrPort("[::ffff:1.2.3.4]:0")}}}},
		{"several", []Binding{typical(4, exp), typical(5, exp.Add(time.Second)), {AOR: "user000004@example.com", Contact: "x", Path: "<sip:p;lr>"}}},
		{"owned by an edge", []Binding{withEdge(typical(2, exp), "edge-a")}},
		{"owner and upstream tail", []Binding{{AOR: "a@x", Contact: "c", Edge: "b", UpExpires: exp, Upstream: 2}}},
		{"owners mixed", []Binding{withEdge(typical(4, exp), "a"), typical(5, exp), withEdge(typical(6, exp), "b")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.in {
				tt.in[i].AOR = tt.in[0].AOR
			}
			v := encodeValue(tt.in)
			got, err := decodeValue(tt.in[0].AOR, v)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.in, got, addrPortEqual); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordSize(t *testing.T) {
	// The figure docs/location.md quotes: 7 bytes per IPv4 address where
	// netip.AddrPort takes 32, and the whole typical record.
	exp := time.Unix(1_750_000_000, 0)
	withInstance, without := typical(2, exp), typical(3, exp)
	for _, tt := range []struct {
		b    Binding
		want int
	}{
		{withInstance, 164},
		{without, 119},
	} {
		if got := recordSize(&tt.b); got != tt.want {
			t.Errorf("recordSize(%s) = %d, want %d", tt.b.Contact, got, tt.want)
		}
		if got, want := len(appendEntry(nil, &tt.b)), tt.want+uvarintLen(uint64(tt.want)); got != want {
			t.Errorf("appendEntry length = %d, want %d", got, want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := encodeValue([]Binding{typical(2, time.Unix(1_750_000_000, 0))})
	mut := func(f func(v []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, v := range map[string][]byte{
		"nil":                nil,
		"version 0":          mut(func(v []byte) []byte { v[0] = 0; return v }),
		"no records":         {formatV1},
		"short length":       {formatV1, 3, 0, 0, 0},
		"length too big":     mut(func(v []byte) []byte { v[1] = 0xff; return v }),
		"flags":              mut(func(v []byte) []byte { v[3+offFlags] = 0x20; return v }),
		"edge flag, no edge": mut(func(v []byte) []byte { v[3+offFlags] |= flagEdge; return v }),
		"empty edge":         mut(func(v []byte) []byte { v[3+offFlags] |= flagEdge; v[1]++; return append(v, 0) }),
		"transport 6":        mut(func(v []byte) []byte { v[3+offFlags] = 6; return v }),
		"truncated":          good[:len(good)-1],
		"addr kind":          mut(func(v []byte) []byte { v[3+fixedLen+3] = 5; return v }),
	} {
		if _, err := decodeValue("a@x", v); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: error = %v, want ErrCorrupt", name, err)
		}
	}
}

func withEdge(b Binding, edge string) Binding {
	b.Edge = edge
	return b
}

// TestRecordEdgeCompatible: a binding without an owner is written exactly
// as before owners were recorded, so a box with no cluster.edge_id keeps
// its file readable by an older pinhole, and an old record (no flag)
// decodes as owned by whoever holds it.
func TestRecordEdgeCompatible(t *testing.T) {
	exp := time.Unix(1_750_000_000, 0)
	b := typical(2, exp)
	plain := encodeValue([]Binding{b})
	if plain[3+offFlags]&flagEdge != 0 { // version, two length bytes, record
		t.Fatalf("a binding without an edge sets flagEdge")
	}
	got, err := decodeValue(b.AOR, plain)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Edge != "" {
		t.Errorf("old record decodes with Edge %q, want \"\"", got[0].Edge)
	}
	owned := encodeValue([]Binding{withEdge(b, "a")})
	if want := len(plain) + 2; len(owned) != want {
		t.Errorf("owner \"a\" makes the value %d bytes, want %d (one length byte and the id)", len(owned), want)
	}
}

// TestTouchKeepsEdge: a refresh the fast path absorbs rewrites only the
// fixed words of the record, so the owner survives it, in memory and in
// the file it is flushed to.
func TestTouchKeepsEdge(t *testing.T) {
	path := tempDB(t)
	m, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	b := withEdge(typical(1, exp), "edge-a")
	put(t, m, b)
	if !m.Touch(refresh(b, b.CSeq+1, exp.Add(time.Minute))) {
		t.Fatal("Touch refused the binding's own refresh")
	}
	if got := m.Lookup(b.AOR); len(got) != 1 || got[0].Edge != "edge-a" || got[0].CSeq != b.CSeq+1 {
		t.Fatalf("after Touch: %+v", got)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	again := openTest(t, Options{Path: path})
	if got := again.Lookup(b.AOR); len(got) != 1 || got[0].Edge != "edge-a" {
		t.Fatalf("reopened: %+v", got)
	}
}
