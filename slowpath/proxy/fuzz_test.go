package proxy

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// FuzzParseFlowParam: whatever comes in a Route header, decoding never
// panics and what it accepts encodes back to the same text.
func FuzzParseFlowParam(f *testing.F) {
	f.Add("ahfqa4ihts54mm3eaej4i")
	f.Add(FlowParam(location.Flow{Transport: location.TransportWSS, Remote: netip.MustParseAddrPort("[2001:db8::2]:443"), Local: netip.MustParseAddrPort("[::1]:8443")}))
	f.Add("")
	f.Add("zzzzzzzz")
	f.Fuzz(func(t *testing.T, s string) {
		fl, err := ParseFlowParam(s)
		if err != nil {
			return
		}
		if got := FlowParam(fl); got != s {
			t.Fatalf("ParseFlowParam(%q) = %+v, which encodes as %q", s, fl, got)
		}
	})
}

// FuzzFlowParamRoundTrip: every flow pinhole can hold survives the trip.
func FuzzFlowParamRoundTrip(f *testing.F) {
	f.Add(uint8(1), []byte{203, 0, 113, 7}, uint16(40123), []byte{198, 51, 100, 1}, uint16(5060))
	f.Add(uint8(5), make([]byte, 16), uint16(1), []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(443))
	f.Fuzz(func(t *testing.T, tr uint8, ra []byte, rp uint16, la []byte, lp uint16) {
		r, ok1 := netip.AddrFromSlice(ra)
		l, ok2 := netip.AddrFromSlice(la)
		if !ok1 || !ok2 || tr < uint8(location.TransportUDP) || tr > uint8(location.TransportWSS) {
			return
		}
		in := location.Flow{Transport: location.Transport(tr), Remote: netip.AddrPortFrom(r.Unmap(), rp), Local: netip.AddrPortFrom(l.Unmap(), lp)}
		got, err := ParseFlowParam(FlowParam(in))
		if err != nil {
			t.Fatalf("ParseFlowParam(FlowParam(%+v)): %v", in, err)
		}
		if got != in {
			t.Fatalf("round trip: got %+v, want %+v", got, in)
		}
	})
}

// FuzzMediaMark: the relay mark of a Record-Route entry (mr) and a
// message's Content-Type come from outside; reading them never panics, and
// a mark that is accepted prints back as it came.
func FuzzMediaMark(f *testing.F) {
	for _, s := range []string{"0", "3", "4", "", "00", "-1", "\xff"} {
		f.Add(s, "application/sdp")
	}
	f.Add("1", "Application/SDP; charset=utf-8")
	f.Add("2", "multipart/mixed;boundary=x")
	f.Add("2", ";;;")
	f.Fuzz(func(t *testing.T, mr, ct string) {
		if fl, ok := parseMediaFlags(mr); ok && fl.String() != mr {
			t.Fatalf("parseMediaFlags(%q) = %d, which prints as %q", mr, fl, fl.String())
		}
		u := sip.Uri{UriParams: sip.HeaderParams{{K: paramFtag, V: "a"}, {K: paramMedia, V: mr}}}
		if dm := dialogMediaOf(&u); dm != nil && dm.ftag != "a" {
			t.Fatalf("dialogMediaOf lost the ftag: %+v", dm)
		}
		h := sip.ContentTypeHeader(ct)
		_ = isSDP([]byte("v=0\r\n"), &h)
	})
}

// FuzzParseBranch: whatever a response's top Via carries, splitting it
// never panics, and what it accepts is written back exactly as it came
// (the MAC covers the fields, so two spellings of one branch would let a
// branch be altered without failing it).
func FuzzParseBranch(f *testing.F) {
	f.Add("z9hG4bK.abcdefgh")
	f.Add("z9hG4bK.abcdefghijkl.0123456789abcdef")
	f.Add("z9hG4bK.abcdefghijkl..ahfqa4ihts54mm3eaej4i.abcdefghijklmnop")
	f.Add("z9hG4bK.abcdefghijkl.0123456789abcdef..abcdefghijklmnop")
	// A signed branch as signBranch writes it: a keyed token, the
	// signed loop hash, a flow and the MAC.
	f.Add("z9hG4bK.cwgr76u5xr2pu5nt.37822ca39b55f248.ahfqa4ibtra4mm3eaej4i.llmewd2gni2buopk")
	f.Add("z9hG4bK-ph0123456789abcdef")
	f.Add("z9hG4bK....")
	f.Fuzz(func(t *testing.T, s string) {
		b, ok := parseBranch(s)
		if !ok {
			return
		}
		if got := b.String(); got != s {
			t.Fatalf("parseBranch(%q) = %+v, which writes as %q", s, b, got)
		}
		if again, ok := parseBranch(b.String()); !ok || again != b {
			t.Fatalf("parseBranch(%q) = %+v, then %+v, %v", s, b, again, ok)
		}
	})
}
