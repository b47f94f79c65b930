package trust

import (
	"net/netip"
	"testing"
)

// FuzzContains compares the List against the obvious linear scan over the
// prefixes it was built from.
func FuzzContains(f *testing.F) {
	f.Add([]byte{10, 0, 0, 0}, uint8(24), []byte{10, 0, 0, 200}, []byte{192, 0, 2, 1}, uint8(32))
	f.Add(make([]byte, 16), uint8(0), []byte{1, 2, 3, 4}, []byte{0xff, 0xff, 0, 0}, uint8(8))
	f.Fuzz(func(t *testing.T, a []byte, abits uint8, probe []byte, b []byte, bbits uint8) {
		var ps []netip.Prefix
		for _, in := range []struct {
			raw  []byte
			bits uint8
		}{{a, abits}, {b, bbits}} {
			addr, ok := netip.AddrFromSlice(in.raw)
			if !ok {
				continue
			}
			if p := netip.PrefixFrom(addr, int(in.bits)%(addr.BitLen()+1)); p.IsValid() {
				ps = append(ps, p)
			}
		}
		addr, ok := netip.AddrFromSlice(probe)
		if !ok {
			return
		}
		want := false
		for _, p := range ps {
			q := p
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				q = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			if q.Contains(addr.Unmap()) {
				want = true
			}
		}
		if got := New(ps...).Contains(addr); got != want {
			t.Fatalf("Contains(%v) over %v = %v, want %v", addr, ps, got, want)
		}
	})
}
