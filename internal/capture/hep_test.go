package capture

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func readMsg(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppendHEP(t *testing.T) {
	msg := readMsg(t, "register.sip")
	when := time.Unix(1_800_000_000, 123_456_789)
	tests := []struct {
		name     string
		src, dst string
		tr       Transport
		family   uint8
		chunks   []uint16
		callID   string
	}{
		{"ipv4 udp", "192.0.2.1:5062", "192.0.2.9:5060", UDP, familyIPv4,
			[]uint16{1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 15, 17}, "a84b4c76e66710@pc33"},
		{"ipv6 tcp", "[2001:db8::1]:40000", "[2001:db8::2]:5061", TCP, familyIPv6,
			[]uint16{1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 15, 17}, "x"},
		{"mapped ipv4 is ipv4", "[::ffff:192.0.2.1]:5062", "192.0.2.9:5060", UDP, familyIPv4,
			[]uint16{1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 15, 17}, "y"},
		{"mixed families go ipv6", "192.0.2.1:5062", "[2001:db8::2]:5060", UDP, familyIPv6,
			[]uint16{1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 15, 17}, "z"},
		{"no call-id, no correlation chunk", "192.0.2.1:5062", "192.0.2.9:5060", UDP, familyIPv4,
			[]uint16{1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 15}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Message{
				Src: netip.MustParseAddrPort(tc.src), Dst: netip.MustParseAddrPort(tc.dst),
				Transport: tc.tr, Time: when, CaptureID: 4242, CallID: []byte(tc.callID), Payload: msg,
			}
			prefix := []byte("keep")
			b, err := AppendHEP(prefix, &m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte("keepHEP3")) {
				t.Fatalf("appended %q, want after the prefix", b[:12])
			}
			d, err := decodeHEP(b[4:])
			if err != nil {
				t.Fatal(err)
			}
			want := decoded{
				Family: tc.family, Protocol: uint8(tc.tr), ProtoType: 1,
				Src: unmapPort(m.Src), Dst: unmapPort(m.Dst),
				Seconds: 1_800_000_000, Micros: 123_456, CaptureID: 4242,
				Payload: msg, CallID: m.CallID, Chunks: tc.chunks,
			}
			if tc.family == familyIPv6 {
				want.Src = netip.AddrPortFrom(netip.AddrFrom16(m.Src.Addr().As16()), m.Src.Port())
				want.Dst = netip.AddrPortFrom(netip.AddrFrom16(m.Dst.Addr().As16()), m.Dst.Port())
			}
			if len(m.CallID) == 0 {
				want.CallID = nil
			}
			if diff := cmp.Diff(want, d, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
}

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// The HEP length field is 16 bits: a message that cannot fit is refused,
// the buffer left as it was.
func TestAppendHEPTooLarge(t *testing.T) {
	// IPv4 without a Call-ID: 99 bytes of header and chunks around the payload.
	m := Message{Src: netip.MustParseAddrPort("192.0.2.1:1"), Dst: netip.MustParseAddrPort("192.0.2.2:2"), Payload: make([]byte, 65535-99)}
	b, err := AppendHEP(nil, &m)
	if err != nil || len(b) != 65535 {
		t.Fatalf("the largest packet: %d bytes, %v; want 65535", len(b), err)
	}
	m.Payload = make([]byte, 65535-98)
	if b, err := AppendHEP([]byte("x"), &m); err != ErrTooLarge || string(b) != "x" {
		t.Fatalf("got %d bytes, %v; want ErrTooLarge and the buffer untouched", len(b), err)
	}
}

func TestAppendHEPAllocatesNothing(t *testing.T) {
	msg := readMsg(t, "register.sip")
	m := Message{Src: netip.MustParseAddrPort("192.0.2.1:1"), Dst: netip.MustParseAddrPort("192.0.2.2:2"), Payload: msg, CallID: []byte("abc")}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf, _ = AppendHEP(buf[:0], &m) }); n != 0 {
		t.Errorf("%v allocations per packet, want 0", n)
	}
}

// FuzzHEPRoundTrip: whatever the message and addresses, the packet reads
// back to the same fields, or the encoder refused it as too large.
func FuzzHEPRoundTrip(f *testing.F) {
	f.Add([]byte("REGISTER sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n"), []byte("a"), []byte{192, 0, 2, 1}, []byte{192, 0, 2, 2}, uint16(5060), uint16(5062), uint32(7), true)
	f.Add([]byte{}, []byte{}, make([]byte, 16), []byte{0xff, 0, 0, 0}, uint16(0), uint16(65535), uint32(0), false)
	f.Fuzz(func(t *testing.T, payload, callID, src, dst []byte, sport, dport uint16, id uint32, udp bool) {
		s, ok1 := netip.AddrFromSlice(src)
		d, ok2 := netip.AddrFromSlice(dst)
		if !ok1 || !ok2 {
			return
		}
		tr := TCP
		if udp {
			tr = UDP
		}
		m := Message{Src: netip.AddrPortFrom(s, sport), Dst: netip.AddrPortFrom(d, dport), Transport: tr,
			Time: time.Unix(1_700_000_000, 5000), CaptureID: id, CallID: callID, Payload: payload}
		b, err := AppendHEP(nil, &m)
		if err == ErrTooLarge {
			if len(payload)+len(callID) < 65535-150 {
				t.Fatalf("refused a %d-byte payload", len(payload))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeHEP(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Payload, payload) || !bytes.Equal(got.CallID, callID) || got.CaptureID != id || got.Protocol != uint8(tr) {
			t.Fatalf("round trip changed the message: %+v", got)
		}
		if got.Src.Addr().Unmap() != s.Unmap() || got.Dst.Addr().Unmap() != d.Unmap() || got.Src.Port() != sport || got.Dst.Port() != dport {
			t.Fatalf("addresses %v %v, want %v %v", got.Src, got.Dst, m.Src, m.Dst)
		}
		if !got.time().Equal(time.Unix(1_700_000_000, 5000)) {
			t.Fatalf("time %v", got.time())
		}
	})
}
