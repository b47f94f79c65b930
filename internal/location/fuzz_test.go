package location

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// FuzzDecode: any bytes decode or fail with ErrCorrupt, never panic, and
// what decodes re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	exp := time.Unix(1_750_000_000, 0)
	f.Add(encodeValue([]Binding{typical(2, exp)}))
	f.Add(encodeValue([]Binding{typical(3, exp), typical(4, exp)}))
	f.Add(encodeValue([]Binding{{Contact: "c", Flow: Flow{Remote: netip.MustParseAddrPort("[fe80::1%z]:1")}}}))
	f.Add([]byte{formatV1})
	f.Add(encodeValue([]Binding{withEdge(typical(2, exp), "edge-a"), {Contact: "c", Edge: "b", UpExpires: exp, Upstream: 1}}))
	f.Fuzz(func(t *testing.T, v []byte) {
		in := append([]byte(nil), v...)
		bs, err := decodeValue("a@x", in)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		again := encodeValue(bs)
		bs2, err := decodeValue("a@x", again)
		if err != nil {
			t.Fatalf("re-encoded value does not decode: %v", err)
		}
		if diff := cmp.Diff(bs, bs2, addrPortEqual); diff != "" {
			t.Fatalf("re-decode differs (-first +second):\n%s", diff)
		}
	})
}

// FuzzAdopt: a value read from a shared Redis Cluster is written by
// another edge, maybe another version of pinhole or something else
// entirely: any bytes are adopted or skipped, never a panic, and the
// store's counts match what Lookup and Range see afterwards.
func FuzzAdopt(f *testing.F) {
	exp := time.Now().Add(time.Hour)
	seed := func(bs ...Binding) []byte {
		_, blob, err := buildSet(bs[0].AOR, bs, time.Now())
		if err != nil {
			f.Fatal(err)
		}
		v, _ := appendValue(nil, blob)
		return v
	}
	a, b := typical(1, exp), typical(1, exp.Add(time.Minute))
	b.Contact = "sip:b@x"
	f.Add(seed(a))
	f.Add(seed(a, b))
	f.Add(encodeValue([]Binding{typical(3, exp)}))
	f.Add(seed(withEdge(a, "edge-a"), withEdge(b, "edge-b")))
	f.Add([]byte{formatV2})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		m, err := Open(Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.adopt(a.AOR, v, nil)
		m.adopt(a.AOR, v, nil) // the same value again changes nothing
		_, n := m.Len()
		if got := len(m.Lookup(a.AOR)); got != n {
			t.Fatalf("Len counts %d bindings, Lookup sees %d", n, got)
		}
		ranged := 0
		m.Range(func(Binding) bool { ranged++; return true })
		if ranged != n {
			t.Fatalf("Len counts %d bindings, Range sees %d", n, ranged)
		}
		if st := m.Stats(); st.Followed > 1 {
			t.Fatalf("adopting one value twice changed the view %d times", st.Followed)
		}
		m.adopt(a.AOR, nil, nil)
		if aors, n := m.Len(); aors != 0 || n != 0 {
			t.Fatalf("after an absent key: %d AORs, %d bindings", aors, n)
		}
	})
}
