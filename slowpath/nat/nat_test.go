package nat

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name      string
		transport string
		via       string
		contact   string
		source    string
		want      Reason
	}{
		{"public and honest", "UDP", "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1;rport", "sip:a@198.51.100.7:5060", "198.51.100.7:5060", NotNATed},
		{"default port", "UDP", "SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1", "sip:a@198.51.100.7", "198.51.100.7:5060", NotNATed},
		{"private contact", "UDP", "SIP/2.0/UDP 192.168.1.2:5060;branch=z9hG4bK1;rport", "sip:a@192.168.1.2:5060", "203.0.113.9:40123", PrivateContact},
		{"cgnat contact", "UDP", "SIP/2.0/UDP 100.72.1.2:5060;branch=z9hG4bK1", "sip:a@100.72.1.2:5060", "203.0.113.9:40123", PrivateContact},
		{"port translated only", "UDP", "SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK1;rport", "sip:a@203.0.113.9:5060", "203.0.113.9:40123", ViaMismatch},
		{"via host name", "UDP", "SIP/2.0/UDP phone.example.com:5060;branch=z9hG4bK1", "sip:a@phone.example.com", "198.51.100.7:5060", ViaMismatch},
		{"contact port differs", "UDP", "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1", "sip:a@198.51.100.7:5070", "198.51.100.7:5060", ContactMismatch},
		{"private on both sides is a LAN", "UDP", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1", "sip:a@10.0.0.2:5060", "10.0.0.2:5060", NotNATed},
		{"tcp is always a flow", "TCP", "SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK1", "sip:a@198.51.100.7:5060;transport=tcp", "198.51.100.7:5060", Stream},
		{"ipv6", "UDP", "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1", "sip:a@[2001:db8::1]:5060", "[2001:db8::1]:5060", NotNATed},
		{"ipv6 ula", "UDP", "SIP/2.0/UDP [fd00::1]:5060;branch=z9hG4bK1", "sip:a@[fd00::1]:5060", "[2001:db8::9]:5060", PrivateContact},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := "REGISTER sip:example.com SIP/2.0\r\nVia: " + tt.via + "\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContact: <" + tt.contact + ">\r\nContent-Length: 0\r\n\r\n"
			msg, err := sip.ParseMessage([]byte(raw))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			req := msg.(*sip.Request)
			req.SetTransport(tt.transport)
			src := netip.MustParseAddrPort(tt.source)
			got := Detect(req, src, &req.Contact().Address)
			if got != tt.want {
				t.Errorf("Detect = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestParseAddrPort(t *testing.T) {
	for in, want := range map[string]string{
		"1.2.3.4:5":             "1.2.3.4:5",
		"[::ffff:1.2.3.4]:5060": "1.2.3.4:5060",
		"[2001:db8::1]:5060":    "[2001:db8::1]:5060",
	} {
		got, ok := ParseAddrPort(in)
		if !ok || got.String() != want {
			t.Errorf("ParseAddrPort(%q) = %v, %v; want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "x", "1.2.3.4", "1.2.3.4:99999", "host:5060"} {
		if _, ok := ParseAddrPort(in); ok {
			t.Errorf("ParseAddrPort(%q) accepted", in)
		}
	}
}
