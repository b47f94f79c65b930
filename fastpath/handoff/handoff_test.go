package handoff

import (
	"net"
	"net/netip"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		msg  string
		want Priority
	}{
		{"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", High},
		{"ACK sip:a@b SIP/2.0\r\n\r\n", High},
		{"BYE sip:a@b SIP/2.0\r\n\r\n", High},
		{"CANCEL sip:a@b SIP/2.0\r\n\r\n", High},
		{"INVITE sip:a@b SIP/2.0\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>;tag=2\r\n\r\n", High},
		{"INFO sip:a@b SIP/2.0\r\nt: <sip:a@b>;TAG=2\r\n\r\n", High},
		{"INFO sip:a@b SIP/2.0\r\nTO \t: <sip:a@b>;tag=2\r\n\r\n", High},
		{"INFO sip:a@b SIP/2.0\r\nT:<sip:a@b>;tag=2\r\n\r\n", High},
		{"INFO sip:a@b SIP/2.0\r\n To: <sip:a@b>;tag=2\r\n\r\n", Low},
		{"INFO sip:a@b SIP/2.0\r\nTo x: <sip:a@b>;tag=2\r\n\r\n", Low},
		{"INVITE sip:a@b SIP/2.0\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\n\r\n", Low},
		{"REGISTER sip:b SIP/2.0\r\nTo: <sip:a@b>;tag=2\r\n\r\n", Low},
		{"OPTIONS sip:b SIP/2.0\r\n\r\n", Low},
		{"\r\n\r\n", Low},
		{"junk", Low},
		{"MESSAGE sip:a@b SIP/2.0\r\nTopic: x;tag=1\r\nTo: <sip:a@b>\r\n\r\n", Low},
	}
	for _, tt := range tests {
		if got := Classify([]byte(tt.msg)); got != tt.want {
			t.Errorf("Classify(%q) = %v, want %v", tt.msg, got, tt.want)
		}
	}
}

func newConn(t *testing.T, size int) *Conn {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := New(netip.MustParseAddrPort("127.0.0.1:5060"), size)
	if err := c.SetSocket(dupFD(t, pc)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Past capacity new requests are shed first; responses keep their own
// reserve and are read first.
func TestShedLowestFirst(t *testing.T) {
	c := newConn(t, 8)
	src := netip.MustParseAddrPort("192.0.2.9:5060")
	for i := 0; i < 20; i++ {
		c.Push([]byte("REGISTER sip:b SIP/2.0\r\n\r\n"), src)
	}
	if got := c.Shed(Low); got != 14 {
		t.Errorf("shed low = %d, want 14 (capacity 6)", got)
	}
	if c.Push([]byte("SIP/2.0 200 OK\r\n\r\n"), src) != Queued {
		t.Fatal("a response was shed while only new requests filled the queue")
	}
	buf := make([]byte, 100)
	n, addr, err := c.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "SIP/2.0 200 OK\r\n\r\n" || addr.String() != src.String() {
		t.Fatalf("first read %q from %v (%v), want the response", buf[:n], addr, err)
	}
	if c.Queued(Low) != 6 || c.Shed(High) != 0 {
		t.Errorf("queued low %d shed high %d", c.Queued(Low), c.Shed(High))
	}
	c.Close()
	for c.Queued(Low) > 0 {
		<-c.q[Low]
	}
	if _, _, err := c.ReadFrom(buf); err != net.ErrClosed {
		t.Errorf("read after close: %v", err)
	}
}

// Classify runs on every datagram the fast path hands off, before the
// queue: it must not allocate.
func BenchmarkClassify(b *testing.B) {
	msg := []byte("INVITE sip:bob@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=1928301774\r\n" +
		"Call-ID: a84b4c76e66710@pc33.example.com\r\n" +
		"CSeq: 314159 INVITE\r\n" +
		"Contact: <sip:alice@198.51.100.7>\r\n" +
		"To: <sip:bob@example.com>\r\n" +
		"Content-Length: 0\r\n\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		Classify(msg)
	}
}

// A filter sees each datagram, with its source, before the queue: what it
// consumes is never queued and never shed; what it leaves is queued as
// without a filter.
func TestFilterBeforeQueue(t *testing.T) {
	c := newConn(t, 4) // three places for new requests
	src := netip.MustParseAddrPort("192.0.2.9:5060")
	var seen []netip.AddrPort
	c.SetFilter(func(data []byte, remote netip.AddrPort) bool {
		seen = append(seen, remote)
		return hasPrefix(data, "REGISTER ")
	})
	for range 10 {
		if got := c.Push([]byte("REGISTER sip:b SIP/2.0\r\n\r\n"), src); got != Filtered {
			t.Fatalf("REGISTER: %v, want Filtered", got)
		}
	}
	if got := c.Push([]byte("INVITE sip:a@b SIP/2.0\r\n\r\n"), src); got != Queued {
		t.Fatalf("INVITE: %v, want Queued", got)
	}
	if c.Queued(Low) != 1 || c.Shed(Low) != 0 {
		t.Errorf("queued %d, shed %d: want only the INVITE queued", c.Queued(Low), c.Shed(Low))
	}
	if len(seen) != 11 || seen[0] != src {
		t.Errorf("filter saw %d datagrams (first from %v), want 11 from %v", len(seen), seen, src)
	}
	buf := make([]byte, 100)
	n, _, err := c.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "INVITE sip:a@b SIP/2.0\r\n\r\n" {
		t.Fatalf("read %q (%v), want the INVITE", buf[:n], err)
	}
}
