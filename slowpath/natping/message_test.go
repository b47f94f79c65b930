package natping

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/bpf"
)

func TestAppendOptions(t *testing.T) {
	got := string(appendOptions(nil, "sip:alice@192.168.1.2:5060;ob", "alice@example.com",
		netip.MustParseAddrPort("192.0.2.1:5060"), "", 0x0123456789abcdef))
	want := "OPTIONS sip:alice@192.168.1.2:5060;ob SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-ph0123456789abcdef;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:pinhole@192.0.2.1>;tag=ph01234567\r\n" +
		"To: <sip:alice@example.com>\r\n" +
		"Call-ID: ph-0123456789abcdef\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("OPTIONS ping (-want +got):\n%s", diff)
	}
	// sipgo is the oracle for well-formedness; the Call-ID must be the
	// form the XDP program matches.
	msg, err := sip.ParseMessage([]byte(got))
	if err != nil {
		t.Fatalf("sipgo cannot parse the ping: %v", err)
	}
	req := msg.(*sip.Request)
	if req.CallID().Value() != bpf.CallID(0x0123456789abcdef) {
		t.Errorf("Call-ID %q, the XDP program expects %q", req.CallID().Value(), bpf.CallID(0x0123456789abcdef))
	}

	v6 := string(appendOptions(nil, "sip:a@[2001:db8::7]", "a@example.com", netip.MustParseAddrPort("[2001:db8::1]:5070"), "", 1))
	if !strings.Contains(v6, "Via: SIP/2.0/UDP [2001:db8::1]:5070;") || !strings.Contains(v6, "<sip:pinhole@[2001:db8::1]>") {
		t.Errorf("IPv6 sent-by not bracketed:\n%s", v6)
	}
	adv := string(appendOptions(nil, "sip:a@10.0.0.1", "a@example.com", netip.MustParseAddrPort("10.1.1.1:5060"), "sip.example.net", 1))
	if !strings.Contains(adv, "Via: SIP/2.0/UDP sip.example.net:5060;") {
		t.Errorf("advertised host not used:\n%s", adv)
	}
}

func reply(callID string) string {
	return "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-ph1\r\n" +
		"From: <sip:pinhole@192.0.2.1>;tag=ph1\r\nTo: <sip:a@example.com>;tag=x\r\n" +
		callID + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
}

func TestToken(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		tok  uint64
		ok   bool
	}{
		{"reply", reply("Call-ID: ph-0123456789abcdef"), 0x0123456789abcdef, true},
		{"compact and upper-case hex", reply("i: ph-0123456789ABCDEF"), 0x0123456789abcdef, true},
		{"name case and spaces", reply("call-id  :  ph-00000000000000ff"), 0xff, true},
		{"404 answers too", strings.Replace(reply("Call-ID: ph-0000000000000001"), "200 OK", "404 Not Found", 1), 1, true},
		{"request", "OPTIONS sip:a SIP/2.0\r\nCall-ID: ph-0000000000000001\r\n\r\n", 0, false},
		{"other call-id", reply("Call-ID: 843817637684230@998sdasdh09"), 0, false},
		{"short token", reply("Call-ID: ph-123"), 0, false},
		{"long token", reply("Call-ID: ph-0123456789abcdef0"), 0, false},
		{"not hex", reply("Call-ID: ph-0123456789abcdeg"), 0, false},
		{"token zero", reply("Call-ID: ph-0000000000000000"), 0, false},
		{"in the body", "SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n\r\nCall-ID: ph-0000000000000001\r\n", 0, false},
		// RFC 3261 §7.3.1: a line starting with SP or HTAB continues the
		// value, which sipgo then reads as "ph-0000000000000001 0".
		{"folded value", "SIP/2.0 200 OK\r\ni:ph-0000000000000001\r\n 0\r\n\r\n", 0, false},
		{"folded with a tab", "SIP/2.0 200 OK\r\nCall-ID: ph-0000000000000001\r\n\tx\r\n\r\n", 0, false},
		{"value on the folded line", "SIP/2.0 200 OK\r\nCall-ID:\r\n ph-0000000000000001\r\n\r\n", 0, false},
		{"no header end", "SIP/2.0 200 OK\r\nVia: x", 0, false},
		{"empty", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, ok := Token([]byte(tt.msg))
			if tok != tt.tok || ok != tt.ok {
				t.Errorf("Token = %#x, %v; want %#x, %v", tok, ok, tt.tok, tt.ok)
			}
		})
	}
}

func BenchmarkAppendOptions(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 512)
	local := netip.MustParseAddrPort("192.0.2.1:5060")
	for i := 0; b.Loop(); i++ {
		buf = appendOptions(buf[:0], "sip:alice@192.168.1.2:5060;ob", "alice@example.com", local, "", uint64(i))
	}
}

func BenchmarkToken(b *testing.B) {
	b.ReportAllocs()
	msg := []byte(reply("Call-ID: ph-0123456789abcdef"))
	for b.Loop() {
		Token(msg)
	}
}

var _ Kernel = bpf.Liveness{}
