package capture

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCallID(t *testing.T) {
	tests := []struct{ msg, want string }{
		{"REGISTER sip:x SIP/2.0\r\nVia: a\r\nCall-ID: abc@h\r\n\r\n", "abc@h"},
		{"SIP/2.0 200 OK\r\ni:  compact \t\r\n\r\n", "compact"},
		{"OPTIONS sip:x SIP/2.0\r\nCALL-id :spaced\r\n\r\n", "spaced"},
		{"OPTIONS sip:x SIP/2.0\nCall-ID: bare-lf\n\n", "bare-lf"},
		{"OPTIONS sip:x SIP/2.0\r\nVia: a\r\n\r\nCall-ID: in-body\r\n", ""},
		{"OPTIONS sip:x SIP/2.0\r\nCall-ID:\r\n\r\n", ""},
		{"OPTIONS sip:x SIP/2.0\r\nX-Call-ID: other\r\nCall-ID: mine\r\n\r\n", "mine"},
		{"INVITE sip:call-id:x SIP/2.0\r\n\r\n", ""},
		{"", ""},
	}
	for _, tc := range tests {
		if got := string(CallID([]byte(tc.msg))); got != tc.want {
			t.Errorf("CallID(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}

// FuzzCallID: the value found is a trimmed piece of one header line, and
// finding it never panics.
func FuzzCallID(f *testing.F) {
	f.Add(readMsg(f, "register.sip"))
	f.Add([]byte("SIP/2.0 200 OK\r\ni: x\r\n\r\n"))
	f.Add([]byte("\r\n:\n i :"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		v := CallID(msg)
		if v == nil {
			return
		}
		if len(v) == 0 || bytes.ContainsAny(v, "\r\n") || v[0] == ' ' || v[len(v)-1] == ' ' || !bytes.Contains(msg, v) {
			t.Fatalf("CallID(%q) = %q", msg, v)
		}
	})
}

func TestSampled(t *testing.T) {
	id := []byte("a84b4c76e66710@pc33")
	if !Sampled(id, 10000) || Sampled(id, 0) || Sampled(nil, 9999) || !Sampled(nil, 10000) {
		t.Fatal("the edges (0 %, 100 %, no Call-ID) are wrong")
	}
	// The same Call-ID always gets the same answer, and the share of
	// calls kept follows the rate.
	for _, rate := range []uint32{100, 2500, 5000} {
		kept := 0
		for i := range 20000 {
			cid := []byte("call-" + strconv.Itoa(i) + "@host")
			s := Sampled(cid, rate)
			if s != Sampled(cid, rate) {
				t.Fatal("not deterministic")
			}
			if s {
				kept++
			}
		}
		want := 20000 * int(rate) / 10000
		if kept < want*8/10 || kept > want*12/10 {
			t.Errorf("rate %d: kept %d of 20000, want about %d", rate, kept, want)
		}
	}
}

// udpCollector is a real UDP socket standing for a Homer collector.
func udpCollector(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readPacket(t *testing.T, c *net.UDPConn) decoded {
	t.Helper()
	buf := make([]byte, 1<<16)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("collector read: %v", err)
	}
	d, err := decodeHEP(buf[:n])
	if err != nil {
		t.Fatalf("collector got no HEP: %v", err)
	}
	return d
}

func message(callID string) []byte {
	return []byte("OPTIONS sip:pinhole SIP/2.0\r\nCall-ID: " + callID + "\r\nCSeq: 1 OPTIONS\r\n\r\n")
}

var (
	device = netip.MustParseAddrPort("192.0.2.7:5062")
	edge   = netip.MustParseAddrPort("192.0.2.1:5060")
)

// A full queue drops and counts instead of waiting: with the sender not
// yet running, a queue of 2 takes two messages and drops the third; once
// the sender runs, the collector receives exactly the two queued.
func TestQueueFullDrops(t *testing.T) {
	col := udpCollector(t)
	c, err := New(Config{
		Collectors: []Collector{{Network: "udp", Addr: col.LocalAddr().String()}},
		CaptureID:  7, Sample: 10000, QueueSize: 2, Received: true, Sent: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tap := c.NewTap()
	for i := range 3 {
		tap.Capture(Received, UDP, device, edge, message("call-"+strconv.Itoa(i)))
	}
	if s := c.Stats(0); s.Captured != 2 || s.Dropped != 1 || s.Queued != 2 {
		t.Fatalf("stats %+v, want 2 captured and queued, 1 dropped", s)
	}
	c.Start()
	defer c.Close()
	for i := range 2 {
		d := readPacket(t, col)
		if want := "call-" + strconv.Itoa(i); string(d.CallID) != want || string(d.Payload) != string(message(want)) {
			t.Fatalf("packet %d: Call-ID %q payload %q", i, d.CallID, d.Payload)
		}
		if d.Src != device || d.Dst != edge || d.CaptureID != 7 || d.Protocol != 17 {
			t.Fatalf("packet %d: %+v", i, d)
		}
	}
	_ = col.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := col.Read(make([]byte, 100)); err == nil {
		t.Fatalf("a third packet (%d bytes): the dropped message was sent", n)
	}
	var w strings.Builder
	c.WriteMetrics(&w)
	for _, line := range []string{
		`pinhole_capture_dropped_total{collector="udp:` + col.LocalAddr().String() + `",reason="queue_full"} 1`,
		`pinhole_capture_captured_total{collector="udp:` + col.LocalAddr().String() + `"} 2`,
	} {
		if !strings.Contains(w.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, w.String())
		}
	}
	// The buffers came back: the queue takes messages again.
	waitFor(t, func() bool { return c.Stats(0).Sent == 2 })
	tap.Capture(Sent, UDP, edge, device, message("again"))
	if d := readPacket(t, col); string(d.CallID) != "again" || d.Src != edge {
		t.Fatalf("after the drain: %+v", d)
	}
}

// Sampling is per call, and directions can be left out.
func TestTapSamplesAndDirections(t *testing.T) {
	col := udpCollector(t)
	c, err := New(Config{
		Collectors: []Collector{{Network: "udp", Addr: col.LocalAddr().String()}},
		Sample:     5000, QueueSize: 100, Received: true, Sent: false,
	})
	if err != nil {
		t.Fatal(err)
	}
	tap := c.NewTap()
	var in, out string
	for i := 0; in == "" || out == ""; i++ {
		id := "call-" + strconv.Itoa(i)
		if Sampled([]byte(id), 5000) {
			in = id
		} else {
			out = id
		}
	}
	tap.Capture(Received, UDP, device, edge, message(out))
	tap.Capture(Sent, UDP, edge, device, message(in)) // direction off
	tap.Capture(Received, UDP, device, edge, []byte("\r\n\r\n"))
	tap.Capture(Received, UDP, device, edge, message(in))
	if s := c.Stats(0); s.Captured != 1 || c.SampledOut() != 1 {
		t.Fatalf("captured %d, sampled out %d; want 1 and 1", s.Captured, c.SampledOut())
	}
}

// A nil tap (capture off) and a sampled-out message cost no allocation;
// nor does a captured one once the collector's buffers exist.
func TestTapAllocatesNothing(t *testing.T) {
	var off *Tap
	msg := message("x")
	if n := testing.AllocsPerRun(100, func() {
		off.Capture(Received, UDP, device, edge, msg)
		off.Exchange(UDP, edge, device, msg, msg)
	}); n != 0 {
		t.Errorf("capture off: %v allocations", n)
	}
	col := udpCollector(t)
	c, err := New(Config{Collectors: []Collector{{Network: "udp", Addr: col.LocalAddr().String()}}, Sample: 100, QueueSize: 4, Received: true, Sent: true})
	if err != nil {
		t.Fatal(err)
	}
	tap := c.NewTap()
	var outID, inID []byte
	for i := 0; outID == nil || inID == nil; i++ {
		id := []byte("call-" + strconv.Itoa(i))
		if Sampled(id, 100) {
			inID = id
		} else {
			outID = id
		}
	}
	out, in := message(string(outID)), message(string(inID))
	if n := testing.AllocsPerRun(100, func() { tap.Exchange(UDP, edge, device, out, out) }); n != 0 {
		t.Errorf("sampled out: %v allocations", n)
	}
	// Warm the pool, then the queue cycles through it (drops past 4,
	// buffers never made again).
	for range 4 {
		tap.Capture(Received, UDP, device, edge, in)
	}
	if n := testing.AllocsPerRun(100, func() { tap.Capture(Received, UDP, device, edge, in) }); n != 0 {
		t.Errorf("sampled in: %v allocations", n)
	}
}

// A TCP collector that is down at first is dialled again with backoff:
// once it listens, the packets arrive framed back to back.
func TestTCPCollectorReconnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down
	c, err := New(Config{Collectors: []Collector{{Network: "tcp", Addr: addr}}, Sample: 10000, QueueSize: 16, Received: true, Sent: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	defer c.Close()
	tap := c.NewTap()
	tap.Capture(Received, TCP, device, edge, message("lost"))
	waitFor(t, func() bool { return c.Stats(0).SendErrors == 1 })
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken again meanwhile: %v", addr, err)
	}
	defer ln.Close()
	deadline := time.Now().Add(5 * time.Second)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	for i := 0; c.Stats(0).Sent == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("never reconnected: %+v", c.Stats(0))
		}
		tap.Capture(Received, TCP, device, edge, message("call-"+strconv.Itoa(i)))
		time.Sleep(50 * time.Millisecond)
	}
	conn := <-accepted
	if conn == nil {
		t.Fatal("accept failed")
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	var hdr [6]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, binary.BigEndian.Uint16(hdr[4:]))
	copy(pkt, hdr[:])
	if _, err := io.ReadFull(conn, pkt[6:]); err != nil {
		t.Fatal(err)
	}
	d, err := decodeHEP(pkt)
	if err != nil || d.Protocol != 6 || !strings.HasPrefix(string(d.CallID), "call-") {
		t.Fatalf("first packet over TCP: %+v (%v)", d, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}

// BenchmarkTapExchange is what a loop pays per answered refresh: capture
// off (a nil tap), a call sampled out at 1 %, and a call captured (both
// messages encoded and queued; the collector drains them).
func BenchmarkTapExchange(b *testing.B) {
	req := readMsg(b, "register.sip")
	col, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer col.Close()
	go func() {
		buf := make([]byte, 1<<16)
		for {
			if _, err := col.Read(buf); err != nil {
				return
			}
		}
	}()
	for _, bc := range []struct {
		name string
		rate uint32
		off  bool
	}{{"off", 0, true}, {"sampled-out", 100, false}, {"captured", 10000, false}} {
		b.Run(bc.name, func(b *testing.B) {
			var tap *Tap
			if !bc.off {
				c, err := New(Config{Collectors: []Collector{{Network: "udp", Addr: col.LocalAddr().String()}}, Sample: bc.rate, QueueSize: 4096, Received: true, Sent: true})
				if err != nil {
					b.Fatal(err)
				}
				c.Start()
				defer c.Close()
				tap = c.NewTap()
				if bc.rate == 100 && Sampled(CallID(req), 100) {
					b.Fatal("the test message's call is sampled at 1 %")
				}
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				tap.Exchange(UDP, edge, device, req, req)
			}
		})
	}
}
