package proxy

import (
	"errors"
	"github.com/pinhole-sip/pinhole/internal/location"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFlowParamRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		flow location.Flow
		want string // encoded form, "" to skip the check
	}{
		{
			name: "udp v4",
			flow: location.Flow{Transport: location.TransportUDP, Remote: netip.MustParseAddrPort("203.0.113.7:40123"), Local: netip.MustParseAddrPort("198.51.100.1:5060")},
			want: "ahfqa4ihts54mm3eaej4i",
		},
		{
			name: "tcp v6 remote, v4 local",
			flow: location.Flow{Transport: location.TransportTCP, Remote: netip.MustParseAddrPort("[2001:db8::1]:5062"), Local: netip.MustParseAddrPort("10.0.0.1:5060")},
		},
		{
			name: "wss both v6",
			flow: location.Flow{Transport: location.TransportWSS, Remote: netip.MustParseAddrPort("[2001:db8::2]:443"), Local: netip.MustParseAddrPort("[::1]:8443")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := FlowParam(tt.flow)
			if tt.want != "" && s != tt.want {
				t.Errorf("FlowParam = %q, want %q", s, tt.want)
			}
			got, err := ParseFlowParam(s)
			if err != nil {
				t.Fatalf("ParseFlowParam(%q): %v", s, err)
			}
			if diff := cmp.Diff(tt.flow, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFlowParamUnmapsIPv4(t *testing.T) {
	mapped := location.Flow{Transport: location.TransportUDP, Remote: netip.MustParseAddrPort("[::ffff:192.0.2.1]:5060"), Local: netip.MustParseAddrPort("[::ffff:127.0.0.1]:5060")}
	plain := location.Flow{Transport: location.TransportUDP, Remote: netip.MustParseAddrPort("192.0.2.1:5060"), Local: netip.MustParseAddrPort("127.0.0.1:5060")}
	if a, b := FlowParam(mapped), FlowParam(plain); a != b {
		t.Errorf("mapped %q != plain %q", a, b)
	}
}

func TestParseFlowParamRejects(t *testing.T) {
	valid := FlowParam(location.Flow{Transport: location.TransportUDP, Remote: netip.MustParseAddrPort("203.0.113.7:40123"), Local: netip.MustParseAddrPort("198.51.100.1:5060")})
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"upper case", "AHFQA4IHTS54MM3EAEJ4I"},
		{"truncated", valid[:len(valid)-3]},
		{"trailing garbage", valid + "aa"},
		{"non-canonical last char", valid[:len(valid)-1] + "f"},
		{"padding", valid + "==="},
		{"transport zero", FlowParam(location.Flow{Transport: 0, Remote: netip.MustParseAddrPort("192.0.2.1:1"), Local: netip.MustParseAddrPort("192.0.2.2:2")})},
		{"transport 9", FlowParam(location.Flow{Transport: 9, Remote: netip.MustParseAddrPort("192.0.2.1:1"), Local: netip.MustParseAddrPort("192.0.2.2:2")})},
		{"too long", string(make([]byte, 100))},
		{"not base32", "hello world!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFlowParam(tt.in)
			if !errors.Is(err, ErrFlowParam) {
				t.Errorf("ParseFlowParam(%q) = %+v, %v; want ErrFlowParam", tt.in, f, err)
			}
		})
	}
}

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
