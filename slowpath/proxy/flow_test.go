package proxy

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/location"
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
