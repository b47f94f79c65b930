package bpf

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/bpf/internal/frame"
)

// XDP actions, from enum xdp_action.
const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3
)

var (
	devMAC  = [6]byte{0x02, 0, 0, 0, 0, 1}
	edgeMAC = [6]byte{0x02, 0, 0, 0, 0, 2}
	dev4    = netip.MustParseAddrPort("198.51.100.7:40123")
	edge4   = netip.MustParseAddrPort("192.0.2.1:5060")
	dev6    = netip.MustParseAddrPort("[2001:db8:1::7]:40123")
	edge6   = netip.MustParseAddrPort("[2001:db8::1]:5060")
)

var equateAddrPort = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

func load(t testing.TB) *Objects {
	t.Helper()
	o, err := Load(Options{MaxSources: 1024, MaxDevices: 1024, MaxBlocked: 64})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return o
}

// udp4 and udp6 build a frame from the device to pinhole.
func udp4(payload string) frame.Frame {
	return frame.Frame{DstMAC: edgeMAC, SrcMAC: devMAC, Src: dev4, Dst: edge4, Payload: []byte(payload)}
}

func udp6(payload string) frame.Frame {
	return frame.Frame{DstMAC: edgeMAC, SrcMAC: devMAC, Src: dev6, Dst: edge6, Payload: []byte(payload)}
}

// run runs the program once on in and returns its action, its output and
// the counters that moved.
func run(t *testing.T, o *Objects, in []byte) (uint32, []byte, map[Verdict]uint64) {
	t.Helper()
	before, err := o.Counters.Sum()
	if err != nil {
		t.Fatal(err)
	}
	opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+512), Repeat: 1}
	ret, err := o.Program.Run(&opts)
	if err != nil {
		t.Fatalf("run xdp_sip: %v", err)
	}
	after, err := o.Counters.Sum()
	if err != nil {
		t.Fatal(err)
	}
	moved := map[Verdict]uint64{}
	for v, n := range after {
		if d := n - before[v]; d != 0 {
			moved[v] = d
		}
	}
	return ret, opts.DataOut, moved
}

const register = "REGISTER sip:example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 198.51.100.7:40123;branch=z9hG4bK776asdhds;rport\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: <sip:alice@example.com>\r\n" +
	"From: <sip:alice@example.com>;tag=456248\r\n" +
	"Call-ID: 843817637684230@998sdasdh09\r\n" +
	"CSeq: 1826 REGISTER\r\n" +
	"Contact: <sip:alice@198.51.100.7:40123>;expires=60\r\n" +
	"User-Agent: Linphone/5.2.0 (belle-sip/5.2.0)\r\n" +
	"Content-Length: 0\r\n\r\n"

func options(ua string) string {
	return "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 198.51.100.7:5061;branch=z9hG4bK-1\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: \"100\" <sip:100@192.0.2.1>\r\n" +
		"From: \"100\" <sip:100@192.0.2.1>;tag=6434396633623535\r\n" +
		ua + "\r\n" +
		"Call-ID: 447148431911428\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
}

func pingReply(callID string) string {
	return "SIP/2.0 200 OK\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-ping;received=192.0.2.1\r\n" +
		"From: <sip:ping@192.0.2.1>;tag=p1\r\n" +
		"To: <sip:alice@198.51.100.7>;tag=a1\r\n" +
		callID + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
}

// uaAt is an OPTIONS whose User-Agent header line starts at byte at of the
// message (at >= 40), padded before it with a Subject header.
func uaAt(at int, ua string) string {
	head := "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\n"
	pad := at - len(head) - len("Subject: \r\n")
	return head + "Subject: " + strings.Repeat("x", pad) + "\r\nUser-Agent: " + ua + "\r\nContent-Length: 0\r\n\r\n"
}

// stunRequest is a Binding Request with a transaction ID and attrs.
func stunRequest(typ uint16, attrs []byte) string {
	b := binary.BigEndian.AppendUint16(nil, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(attrs)))
	b = binary.BigEndian.AppendUint32(b, 0x2112A442)
	b = append(b, "pinhole-txid"...)
	return string(append(b, attrs...))
}

// software is a SOFTWARE attribute (RFC 5389 §15.10), padded to 4 bytes.
var software = []byte{0x80, 0x22, 0x00, 0x07, 's', 'i', 'p', 'p', '1', '.', '0', 0}

// reply is the frame the program should send back for a keepalive in f.
func reply(f frame.Frame, payload []byte) frame.Frame {
	return frame.Frame{
		DstMAC: f.SrcMAC, SrcMAC: f.DstMAC, VLANs: f.VLANs,
		Src: f.Dst, Dst: f.Src, TTL: 64, Payload: payload,
	}
}

// stunResponse is the Binding Success Response to req from src, encoded
// here independently of the C (RFC 5389 §7.3.1, §15.2).
func stunResponse(req string, src netip.AddrPort) []byte {
	cookie := []byte(req[4:8])
	txid := []byte(req[8:20])
	var attr []byte
	fam := byte(1)
	addr := src.Addr().AsSlice()
	if src.Addr().Is6() {
		fam = 2
	}
	key := append(append([]byte(nil), cookie...), txid...)
	x := make([]byte, len(addr))
	for i := range addr {
		x[i] = addr[i] ^ key[i]
	}
	attr = binary.BigEndian.AppendUint16(attr, 0x0020)
	attr = binary.BigEndian.AppendUint16(attr, uint16(4+len(x)))
	attr = append(attr, 0, fam)
	attr = binary.BigEndian.AppendUint16(attr, src.Port()^0x2112)
	attr = append(attr, x...)
	b := binary.BigEndian.AppendUint16(nil, 0x0101)
	b = binary.BigEndian.AppendUint16(b, uint16(len(attr)))
	b = append(append(append(b, cookie...), txid...), attr...)
	return b
}

// decodeXORMapped reads XOR-MAPPED-ADDRESS from a STUN response the way a
// client would.
func decodeXORMapped(t *testing.T, msg []byte) netip.AddrPort {
	t.Helper()
	if len(msg) < 20+4 || binary.BigEndian.Uint16(msg) != 0x0101 {
		t.Fatalf("not a Binding Success Response: %x", msg)
	}
	if n := int(binary.BigEndian.Uint16(msg[2:])); n != len(msg)-20 {
		t.Fatalf("STUN length %d, message has %d bytes of attributes", n, len(msg)-20)
	}
	a := msg[20:]
	if binary.BigEndian.Uint16(a) != 0x0020 {
		t.Fatalf("first attribute %#04x, want XOR-MAPPED-ADDRESS", binary.BigEndian.Uint16(a))
	}
	port := binary.BigEndian.Uint16(a[6:]) ^ 0x2112
	key := msg[4:20]
	x := a[8 : 4+int(binary.BigEndian.Uint16(a[2:]))]
	addr := make([]byte, len(x))
	for i := range x {
		addr[i] = x[i] ^ key[i]
	}
	ip, ok := netip.AddrFromSlice(addr)
	if !ok {
		t.Fatalf("bad address length %d", len(addr))
	}
	return netip.AddrPortFrom(ip, port)
}

func TestVerdictsMatchC(t *testing.T) {
	got := []xdpVerdict{}
	for _, v := range Verdicts() {
		got = append(got, xdpVerdict(v))
	}
	want := []xdpVerdict{
		xdpVerdictVERDICT_PASS, xdpVerdictVERDICT_SIP_PASSED, xdpVerdictVERDICT_KEEPALIVE_PASSED,
		xdpVerdictVERDICT_CRLF_ANSWERED, xdpVerdictVERDICT_STUN_ANSWERED, xdpVerdictVERDICT_FILLER_DROPPED,
		xdpVerdictVERDICT_NATPING_SWALLOWED, xdpVerdictVERDICT_RATELIMITED, xdpVerdictVERDICT_BLOCKLISTED,
		xdpVerdictVERDICT_SCANNER, xdpVerdictVERDICT_JUNK, xdpVerdictVERDICT_EMPTY, xdpVerdictVERDICT_MALFORMED,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Go verdicts differ from enum verdict (-C +Go):\n%s", diff)
	}
	if Verdict(xdpVerdictVERDICT_MAX) != numVerdicts {
		t.Errorf("VERDICT_MAX = %d, Go has %d verdicts", xdpVerdictVERDICT_MAX, numVerdicts)
	}
}

func TestKeepaliveAnswers(t *testing.T) {
	stun0 := stunRequest(0x0001, nil)
	stunAttrs := stunRequest(0x0001, software)
	withVLAN := func(f frame.Frame, ids ...uint16) frame.Frame { f.VLANs = ids; return f }
	padded := func(f frame.Frame) frame.Frame { f.Pad = true; return f }
	tests := []struct {
		name    string
		in      frame.Frame
		verdict Verdict
		payload []byte
	}{
		{"crlf v4 padded", padded(udp4("\r\n\r\n")), VerdictCRLFAnswered, []byte("\r\n")},
		{"crlf v6", udp6("\r\n\r\n"), VerdictCRLFAnswered, []byte("\r\n")},
		{"crlf v4 802.1Q", withVLAN(udp4("\r\n\r\n"), 100), VerdictCRLFAnswered, []byte("\r\n")},
		{"crlf v6 QinQ", withVLAN(udp6("\r\n\r\n"), 10, 20), VerdictCRLFAnswered, []byte("\r\n")},
		{"stun v4", udp4(stun0), VerdictSTUNAnswered, stunResponse(stun0, dev4)},
		{"stun v4 attributes dropped", udp4(stunAttrs), VerdictSTUNAnswered, stunResponse(stunAttrs, dev4)},
		{"stun v6", udp6(stun0), VerdictSTUNAnswered, stunResponse(stun0, dev6)},
		{"stun v6 QinQ attributes", withVLAN(udp6(stunAttrs), 1, 2), VerdictSTUNAnswered, stunResponse(stunAttrs, dev6)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := load(t)
			ret, out, moved := run(t, o, tt.in.Bytes())
			if ret != xdpTX {
				t.Fatalf("action %d, want XDP_TX", ret)
			}
			if diff := cmp.Diff(map[Verdict]uint64{tt.verdict: 1}, moved); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			got, err := frame.Decode(out)
			if err != nil {
				t.Fatalf("decode reply %x: %v", out, err)
			}
			if diff := cmp.Diff(reply(tt.in, tt.payload), got, equateAddrPort); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if tt.verdict == VerdictSTUNAnswered {
				if mapped := decodeXORMapped(t, got.Payload); mapped != tt.in.Src {
					t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", mapped, tt.in.Src)
				}
			}
			if at, ok := o.Alive.Lookup(tt.in.Src); !ok || time.Since(at).Abs() > 2*time.Second {
				t.Errorf("Alive.Lookup(%v) = %v, %v; want about now", tt.in.Src, at, ok)
			}
		})
	}
}

func TestVerdicts(t *testing.T) {
	raw := func(b []byte) func() []byte { return func() []byte { return b } }
	build := func(f frame.Frame) func() []byte { return f.Bytes }
	edit := func(f frame.Frame, fn func([]byte)) func() []byte {
		return func() []byte { b := f.Bytes(); fn(b); return b }
	}
	mod := func(f frame.Frame, fn func(*frame.Frame)) frame.Frame { fn(&f); return f }
	hopByHop := []frame.Ext{{Type: 0, Data: []byte{1, 4, 0, 0, 0, 0}}, {Type: 60, Data: make([]byte, 14)}}

	tests := []struct {
		name    string
		in      func() []byte
		setup   func(t *testing.T, o *Objects)
		action  uint32
		verdict Verdict
		alive   bool // source marked alive
	}{
		{name: "register passes", in: build(udp4(register)), action: xdpPass, verdict: VerdictSIPPassed},
		{name: "register v6 passes", in: build(udp6(register)), action: xdpPass, verdict: VerdictSIPPassed},
		{name: "register QinQ passes", in: build(mod(udp4(register), func(f *frame.Frame) { f.VLANs = []uint16{1, 2} })),
			action: xdpPass, verdict: VerdictSIPPassed},
		{name: "other port untouched", in: build(mod(udp4("junk junk junk"), func(f *frame.Frame) { f.Dst = netip.MustParseAddrPort("192.0.2.1:53") })),
			action: xdpPass, verdict: VerdictPass},
		{name: "configured port", in: build(mod(udp4("junk junk junk"), func(f *frame.Frame) { f.Dst = netip.MustParseAddrPort("192.0.2.1:5080") })),
			setup:  func(t *testing.T, o *Objects) { mustNil(t, o.Ports.Set([]uint16{5080})) },
			action: xdpDrop, verdict: VerdictJunk},
		{name: "port removed", in: build(udp4("junk junk junk")),
			setup:  func(t *testing.T, o *Objects) { mustNil(t, o.Ports.Set([]uint16{5080})) },
			action: xdpPass, verdict: VerdictPass},
		{name: "tcp untouched", in: build(mod(udp4("junk"), func(f *frame.Frame) { f.Protocol = 6 })), action: xdpPass, verdict: VerdictPass},
		{name: "arp untouched", in: raw(append(append(append([]byte{}, edgeMAC[:]...), devMAC[:]...), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1)),
			action: xdpPass, verdict: VerdictPass},
		{name: "runt ethernet", in: raw([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}), action: xdpPass, verdict: VerdictPass},
		{name: "truncated ipv4 header", in: func() []byte { return udp4("\r\n\r\n").Bytes()[:30] }, action: xdpPass, verdict: VerdictPass},
		{name: "truncated ipv6 header", in: func() []byte { return udp6("\r\n\r\n").Bytes()[:50] }, action: xdpPass, verdict: VerdictPass},
		{name: "truncated vlan tag", in: func() []byte {
			return mod(udp4("x"), func(f *frame.Frame) { f.VLANs = []uint16{1, 2} }).Bytes()[:20]
		}, action: xdpPass, verdict: VerdictPass},
		{name: "truncated udp header", in: func() []byte { return udp4("\r\n\r\n").Bytes()[:38] }, action: xdpPass, verdict: VerdictPass},
		{name: "udp payload cut short", in: func() []byte { b := udp4(register).Bytes(); return b[:len(b)-10] },
			action: xdpDrop, verdict: VerdictMalformed},
		{name: "udp length below header", in: edit(udp4("\r\n\r\n"), func(b []byte) { binary.BigEndian.PutUint16(b[38:], 7) }),
			action: xdpDrop, verdict: VerdictMalformed},
		{name: "ip total length below udp length", in: edit(udp4(register), func(b []byte) { binary.BigEndian.PutUint16(b[16:], 40) }),
			action: xdpDrop, verdict: VerdictMalformed},
		{name: "ipv6 payload length below udp length", in: edit(udp6(register), func(b []byte) { binary.BigEndian.PutUint16(b[18:], 20) }),
			action: xdpDrop, verdict: VerdictMalformed},
		{name: "ipv4 first fragment passes", in: build(mod(udp4("junk junk"), func(f *frame.Frame) { f.MoreFragments = true })), action: xdpPass, verdict: VerdictPass},
		{name: "ipv4 later fragment passes", in: build(mod(udp4("junk junk"), func(f *frame.Frame) { f.FragOffset = 100 })), action: xdpPass, verdict: VerdictPass},
		{name: "ipv6 fragment header passes", in: build(mod(udp6("junk junk"), func(f *frame.Frame) { f.IPv6Ext = []frame.Ext{{Type: 44, Data: make([]byte, 6)}} })),
			action: xdpPass, verdict: VerdictPass},
		{name: "ipv6 too many extension headers pass", in: build(mod(udp6("junk junk"), func(f *frame.Frame) {
			f.IPv6Ext = []frame.Ext{{Type: 0, Data: make([]byte, 6)}, {Type: 60, Data: make([]byte, 6)}, {Type: 43, Data: make([]byte, 6)}, {Type: 60, Data: make([]byte, 6)}}
		})), action: xdpPass, verdict: VerdictPass},
		{name: "ipv6 extension headers skipped", in: build(mod(udp6("junk junk"), func(f *frame.Frame) { f.IPv6Ext = hopByHop })),
			action: xdpDrop, verdict: VerdictJunk},
		{name: "ipv6 extension headers register", in: build(mod(udp6(register), func(f *frame.Frame) { f.IPv6Ext = hopByHop })),
			action: xdpPass, verdict: VerdictSIPPassed},
		{name: "ipv4 options skipped", in: build(mod(udp4("junk junk"), func(f *frame.Frame) { f.IPv4Options = []byte{1, 1, 1, 0} })),
			action: xdpDrop, verdict: VerdictJunk},
		{name: "ipv4 options crlf left to stack", in: build(mod(udp4("\r\n\r\n"), func(f *frame.Frame) { f.IPv4Options = []byte{1, 1, 1, 0} })),
			action: xdpPass, verdict: VerdictKeepalivePassed, alive: true},
		{name: "ipv6 extension crlf left to stack", in: build(mod(udp6("\r\n\r\n"), func(f *frame.Frame) { f.IPv6Ext = hopByHop })),
			action: xdpPass, verdict: VerdictKeepalivePassed, alive: true},
		{name: "empty payload", in: build(udp4("")), action: xdpDrop, verdict: VerdictEmpty},
		{name: "empty payload v6", in: build(udp6("")), action: xdpDrop, verdict: VerdictEmpty},
		{name: "single crlf", in: build(mod(udp4("\r\n"), func(f *frame.Frame) { f.Pad = true })), action: xdpDrop, verdict: VerdictFillerDropped, alive: true},
		{name: "nul filler", in: build(udp6("\x00")), action: xdpDrop, verdict: VerdictFillerDropped, alive: true},
		{name: "space and crlf filler", in: build(udp4(" \r\n")), action: xdpDrop, verdict: VerdictFillerDropped, alive: true},
		{name: "short junk", in: build(udp4("ab\r\n")), action: xdpDrop, verdict: VerdictJunk},
		{name: "junk", in: build(udp4("hello, is anyone there?")), action: xdpDrop, verdict: VerdictJunk},
		{name: "http on sip port", in: build(udp4("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), action: xdpDrop, verdict: VerdictJunk},
		{name: "lower-case method is junk", in: build(udp4(strings.ToLower(register))), action: xdpDrop, verdict: VerdictJunk},
		{name: "method without space is junk", in: build(udp4("REGISTERsip:x SIP/2.0\r\n\r\n")), action: xdpDrop, verdict: VerdictJunk},
		{name: "subscribe passes", in: build(udp4("SUBSCRIBE sip:x SIP/2.0\r\n\r\n")), action: xdpPass, verdict: VerdictSIPPassed},
		{name: "ack passes", in: build(udp4("ACK sip:x SIP/2.0\r\n\r\n")), action: xdpPass, verdict: VerdictSIPPassed},
		{name: "stun indication left to stack", in: build(udp4(stunRequest(0x0011, nil))), action: xdpPass, verdict: VerdictKeepalivePassed},
		{name: "stun bad length is junk", in: build(udp4(stunRequest(0x0001, nil) + "xxxx")), action: xdpDrop, verdict: VerdictJunk},
		{name: "response passes", in: build(udp4(pingReply("Call-ID: abc"))), action: xdpPass, verdict: VerdictSIPPassed},
		{name: "blocklisted v4", in: build(udp4(register)),
			setup: func(t *testing.T, o *Objects) {
				mustNil(t, o.Blocklist.Add(netip.MustParsePrefix("198.51.100.0/24"), time.Time{}))
			},
			action: xdpDrop, verdict: VerdictBlocklisted},
		{name: "blocklisted v4 keepalive", in: build(udp4("\r\n\r\n")),
			setup: func(t *testing.T, o *Objects) {
				mustNil(t, o.Blocklist.Add(netip.MustParsePrefix("198.51.100.7/32"), time.Now().Add(time.Hour)))
			},
			action: xdpDrop, verdict: VerdictBlocklisted},
		{name: "blocklisted v6", in: build(udp6(register)),
			setup: func(t *testing.T, o *Objects) {
				mustNil(t, o.Blocklist.Add(netip.MustParsePrefix("2001:db8:1::/48"), time.Time{}))
			},
			action: xdpDrop, verdict: VerdictBlocklisted},
		{name: "other prefix not blocked", in: build(udp4(register)),
			setup: func(t *testing.T, o *Objects) {
				mustNil(t, o.Blocklist.Add(netip.MustParsePrefix("198.51.101.0/24"), time.Time{}))
			},
			action: xdpPass, verdict: VerdictSIPPassed},
		{name: "expired block ignored", in: build(udp4(register)),
			setup: func(t *testing.T, o *Objects) {
				// One second after boot: long past.
				mustNil(t, o.Blocklist.v4.Put(xdpLpm4{Prefixlen: 32, Addr: dev4.Addr().As4()}, uint64(1)))
			},
			action: xdpPass, verdict: VerdictSIPPassed},
		{name: "removed block", in: build(udp4(register)),
			setup: func(t *testing.T, o *Objects) {
				p := netip.MustParsePrefix("198.51.100.0/24")
				mustNil(t, o.Blocklist.Add(p, time.Time{}))
				mustNil(t, o.Blocklist.Remove(p))
			},
			action: xdpPass, verdict: VerdictSIPPassed},
		{name: "friendly-scanner", in: build(udp4(options("User-Agent: friendly-scanner"))), action: xdpDrop, verdict: VerdictScanner},
		{name: "sipvicious any case", in: build(udp4(options("user-agent: SIPVicious 0.3.4"))), action: xdpDrop, verdict: VerdictScanner},
		{name: "sipcli without space", in: build(udp6(options("User-Agent:sipcli/v1.8"))), action: xdpDrop, verdict: VerdictScanner},
		{name: "VaxSIPUserAgent", in: build(udp4(options("User-Agent:  VaxSIPUserAgent/3.1"))), action: xdpDrop, verdict: VerdictScanner},
		{name: "scanner UA as last header", in: build(udp4("OPTIONS sip:1@x SIP/2.0\r\nUser-Agent: iWar\r\n\r\n")), action: xdpDrop, verdict: VerdictScanner},
		// UA_SCAN_LIMIT: a User-Agent line starting within the first 256
		// bytes is checked, one starting later is not (the cost bound).
		{name: "scanner UA starting at byte 248", in: build(udp4(uaAt(248, "friendly-scanner"))), action: xdpDrop, verdict: VerdictScanner},
		{name: "scanner UA starting past byte 256 passes", in: build(udp4(uaAt(264, "friendly-scanner"))), action: xdpPass, verdict: VerdictSIPPassed},
		{name: "benign UA passes", in: build(udp4(options("User-Agent: Linphone/5.2"))), action: xdpPass, verdict: VerdictSIPPassed},
		{name: "scanner string elsewhere passes", in: build(udp4(options("Subject: friendly-scanner"))), action: xdpPass, verdict: VerdictSIPPassed},
		{name: "UA in body passes", in: build(udp4("MESSAGE sip:x SIP/2.0\r\nContent-Length: 28\r\n\r\nUser-Agent: friendly-scanner")), action: xdpPass, verdict: VerdictSIPPassed},
		{name: "custom signature", in: build(udp4(options("User-Agent: Evil/1.0"))),
			setup:  func(t *testing.T, o *Objects) { mustNil(t, o.Signatures.Set([]string{"evil/"})) },
			action: xdpDrop, verdict: VerdictScanner},
		{name: "signatures cleared", in: build(udp4(options("User-Agent: friendly-scanner"))),
			setup:  func(t *testing.T, o *Objects) { mustNil(t, o.Signatures.Set([]string{})) },
			action: xdpPass, verdict: VerdictSIPPassed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := load(t)
			if tt.setup != nil {
				tt.setup(t, o)
			}
			in := tt.in()
			ret, out, moved := run(t, o, in)
			if ret != tt.action {
				t.Errorf("action %d, want %d", ret, tt.action)
			}
			if diff := cmp.Diff(map[Verdict]uint64{tt.verdict: 1}, moved); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			if ret != xdpTX {
				if diff := cmp.Diff(in, out); diff != "" {
					t.Errorf("frame modified on pass/drop (-in +out):\n%s", diff)
				}
			}
			if len(in) > 60 {
				// Every frame above sends from dev4 or dev6.
				_, ok4 := o.Alive.Lookup(dev4)
				_, ok6 := o.Alive.Lookup(dev6)
				if got := ok4 || ok6; got != tt.alive {
					t.Errorf("source alive = %v, want %v", got, tt.alive)
				}
			}
		})
	}
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestNATPingReply(t *testing.T) {
	const token = 0x0123456789abcdef
	tests := []struct {
		name    string
		in      frame.Frame
		expect  netip.AddrPort // zero: no ping expected
		action  uint32
		verdict Verdict
	}{
		{"swallowed v4", udp4(pingReply("Call-ID: " + CallID(token))), dev4, xdpDrop, VerdictNATPingSwallowed},
		{"swallowed v6", udp6(pingReply("Call-ID: " + CallID(token))), dev6, xdpDrop, VerdictNATPingSwallowed},
		{"compact form", udp4(pingReply("i:" + CallID(token))), dev4, xdpDrop, VerdictNATPingSwallowed},
		// The Call-ID must be the token alone, as natping.Token reads it:
		// a longer one, or one folded onto the next line (RFC 3261
		// §7.3.1, which sipgo joins to the value), is not our ping's.
		{"longer call-id passes", udp4(pingReply("i:" + CallID(token) + "@192.0.2.1")), dev4, xdpPass, VerdictSIPPassed},
		{"folded call-id passes", udp4(pingReply("i:" + CallID(token) + "\r\n 0")), dev4, xdpPass, VerdictSIPPassed},
		{"folded with a tab passes", udp4(pingReply("Call-ID: " + CallID(token) + "\r\n\tx")), dev4, xdpPass, VerdictSIPPassed},
		{"header name case", udp4(pingReply("CALL-ID :  " + CallID(token))), dev4, xdpDrop, VerdictNATPingSwallowed},
		{"upper-case hex", udp4(pingReply("Call-ID: ph-0123456789ABCDEF")), dev4, xdpDrop, VerdictNATPingSwallowed},
		{"other token", udp4(pingReply("Call-ID: " + CallID(token+1))), dev4, xdpPass, VerdictSIPPassed},
		{"not a token", udp4(pingReply("Call-ID: ph-0123456789abcdeX")), dev4, xdpPass, VerdictSIPPassed},
		{"other device", udp4(pingReply("Call-ID: " + CallID(token))), netip.MustParseAddrPort("198.51.100.7:40124"), xdpPass, VerdictSIPPassed},
		{"no ping expected", udp4(pingReply("Call-ID: " + CallID(token))), netip.AddrPort{}, xdpPass, VerdictSIPPassed},
		{"request with the token passes", udp4(options("Call-ID: " + CallID(token))), dev4, xdpPass, VerdictSIPPassed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := load(t)
			if tt.expect.IsValid() {
				mustNil(t, o.NATPings.Expect(tt.expect, token))
			}
			ret, _, moved := run(t, o, tt.in.Bytes())
			if ret != tt.action {
				t.Errorf("action %d, want %d", ret, tt.action)
			}
			if diff := cmp.Diff(map[Verdict]uint64{tt.verdict: 1}, moved); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			swallowed := tt.verdict == VerdictNATPingSwallowed
			if _, ok := o.NATPings.Answered(tt.in.Src); ok != swallowed {
				t.Errorf("Answered = %v, want %v", ok, swallowed)
			}
			if _, ok := o.Alive.Lookup(tt.in.Src); ok != swallowed {
				t.Errorf("alive = %v, want %v", ok, swallowed)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	o := load(t)
	mustNil(t, o.RateLimit.Set(1, 3))
	other := udp4(register)
	other.Src = netip.MustParseAddrPort("198.51.100.8:5060")
	want := []Verdict{VerdictSIPPassed, VerdictSIPPassed, VerdictSIPPassed, VerdictRateLimited, VerdictRateLimited}
	var got []Verdict
	for range want {
		_, _, moved := run(t, o, udp4(register).Bytes())
		for v := range moved {
			got = append(got, v)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verdicts of a burst (-want +got):\n%s", diff)
	}
	// Another source has its own bucket; keepalives are not limited.
	for _, in := range [][]byte{other.Bytes(), udp4("\r\n\r\n").Bytes()} {
		if _, _, moved := run(t, o, in); moved[VerdictRateLimited] != 0 {
			t.Errorf("rate limited: %v", moved)
		}
	}
	// Buckets count what they refused, for the ban on sources that keep
	// at it; a source that was never refused is not listed.
	dropped := map[netip.Addr]uint64{}
	mustNil(t, o.Buckets.Dropped(func(src netip.Addr, n uint64) { dropped[src] = n }))
	if diff := cmp.Diff(map[netip.Addr]uint64{dev4.Addr(): 2}, dropped, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("Buckets.Dropped (-want +got):\n%s", diff)
	}
	mustNil(t, o.RateLimit.Set(0, 0))
	if _, _, moved := run(t, o, udp4(register).Bytes()); moved[VerdictSIPPassed] != 1 {
		t.Errorf("with the limit off: %v", moved)
	}
}

func TestConfigErrors(t *testing.T) {
	o := load(t)
	long := strings.Repeat("x", 33)
	tests := []struct {
		name string
		err  error
	}{
		{"burst 0", o.RateLimit.Set(10, 0)},
		{"burst too big", o.RateLimit.Set(10, 2_000_000_000)},
		{"signature too long", o.Signatures.Set([]string{long})},
		{"empty signature", o.Signatures.Set([]string{""})},
		{"17 signatures", o.Signatures.Set(make([]string, 17))},
		{"port 0", o.Ports.Set([]uint16{0})},
		{"token 0", o.NATPings.Expect(dev4, 0)},
		{"block in the past", o.Blocklist.Add(netip.MustParsePrefix("192.0.2.0/24"), time.Now().Add(-time.Hour))},
		{"4in6 prefix", o.Blocklist.Add(netip.MustParsePrefix("::ffff:192.0.2.0/120"), time.Time{})},
	}
	for _, tt := range tests {
		if tt.err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestBlocklistList(t *testing.T) {
	o := load(t)
	until := time.Now().Add(time.Hour)
	mustNil(t, o.Blocklist.Add(netip.MustParsePrefix("192.0.2.9/24"), until))
	mustNil(t, o.Blocklist.Add(netip.MustParsePrefix("2001:db8::/32"), time.Time{}))
	got, err := o.Blocklist.List()
	mustNil(t, err)
	type entry struct {
		Prefix  string
		Forever bool
	}
	var prefixes []entry
	for _, e := range got {
		prefixes = append(prefixes, entry{e.Prefix.String(), e.Until.IsZero()})
		if !e.Until.IsZero() {
			// Expiry is kept in whole monotonic seconds, rounded up.
			if d := e.Until.Sub(until); d < -10*time.Millisecond || d > 1100*time.Millisecond {
				t.Errorf("%v until %v, want %v (+1s)", e.Prefix, e.Until, until)
			}
		}
	}
	want := []entry{{"192.0.2.0/24", false}, {"2001:db8::/32", true}}
	if diff := cmp.Diff(want, prefixes); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

func TestCallID(t *testing.T) {
	if got, want := CallID(0xab), "ph-00000000000000ab"; got != want {
		t.Errorf("CallID = %q, want %q", got, want)
	}
}

// BenchmarkXDP measures the program per run inside the kernel
// (BPF_PROG_TEST_RUN), without a NIC. The kernel keeps the frame between
// repeats, so a frame the program rewrites (XDP_TX) is run with repeat 1 per
// iteration and the kernel's per-run times averaged; that adds the kernel's
// timer overhead to those figures.
func BenchmarkXDP(b *testing.B) {
	for _, bc := range []struct {
		name    string
		in      []byte
		rewrite bool
	}{
		{"crlf", udp4("\r\n\r\n").Bytes(), true},
		{"stun", udp4(stunRequest(0x0001, software)).Bytes(), true},
		{"register", udp4(register).Bytes(), false},
		{"scanner", udp4(options("User-Agent: friendly-scanner")).Bytes(), false},
		{"other-port", func() []byte { f := udp4(register); f.Dst = netip.MustParseAddrPort("192.0.2.1:53"); return f.Bytes() }(), false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			o := load(b)
			var per time.Duration
			if bc.rewrite {
				for range b.N {
					ret, d, err := o.Program.Benchmark(bc.in, 1, nil)
					if err != nil || ret != xdpTX {
						b.Fatalf("run: %d, %v", ret, err)
					}
					per += d
				}
				per /= time.Duration(b.N)
			} else {
				var err error
				if _, per, err = o.Program.Benchmark(bc.in, b.N, b.ResetTimer); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/run")
		})
	}
}

// TestBucketsDroppedBatches: more buckets than one batched lookup returns
// are all read.
func TestBucketsDroppedBatches(t *testing.T) {
	o, err := Load(Options{MaxSources: 3 * bucketBatch, MaxDevices: 16, MaxBlocked: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	const n = bucketBatch + bucketBatch/2
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		mustNil(t, o.Buckets.m.Put(xdpAddr{B: a.As16()}, xdpBucket{Dropped: uint64(i % 2)}))
	}
	got := 0
	mustNil(t, o.Buckets.Dropped(func(netip.Addr, uint64) { got++ }))
	if got != n/2 {
		t.Errorf("Dropped listed %d sources, want %d", got, n/2)
	}
}
