package slowpath

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// TestClosedWebSocketFlow: a browser registers over WebSocket and closes
// its tab. A call to it must not make pinhole dial the browser's old
// address (a listener the test puts there counts any connection): the
// binding is reachable only through the connection it came on, so the
// caller is answered at once, and the binding leaves the store
// (docs/nat.md, "Flows over connections").
func TestClosedWebSocketFlow(t *testing.T) {
	udp := fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t))
	wsPort := freeTCPPort(t)
	s := startServerWith(t, fmt.Sprintf("listen:\n  udp: [%q]\n  ws: [\"127.0.0.1:%d\"]\n", udp, wsPort))

	// The browser connects from an address of its own (all of 127/8 is
	// local): its port, once the tab closed, is then no other test's to
	// take before this one listens there. From 127.0.0.1 an ephemeral
	// port now and then went to a parallel test in between.
	browser := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 77)}}
	d := ws.Dialer{Protocols: sip.WebSocketProtocols, Timeout: 5 * time.Second, NetDial: browser.DialContext}
	c, _, _, err := d.Dial(context.Background(), fmt.Sprintf("ws://127.0.0.1:%d", wsPort))
	if err != nil {
		t.Fatal(err)
	}
	reg := "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK-tab-1\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:tab@example.com>;tag=tab\r\nTo: <sip:tab@example.com>\r\n" +
		"Call-ID: tab-1\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:r4nd0m@df7jal23ls0d.invalid;transport=ws>;expires=600\r\nContent-Length: 0\r\n\r\n"
	if err := wsutil.WriteClientText(c, []byte(reg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := wsutil.ReadServerText(c)
	if err != nil || !strings.HasPrefix(string(res), "SIP/2.0 200") {
		t.Fatalf("REGISTER over WS: %q, %v", res, err)
	}
	old := netip.MustParseAddrPort(c.LocalAddr().String())
	flow := location.Flow{Transport: location.TransportWS, Remote: old}
	if !s.flowOpen(flow) {
		t.Fatal("the open WebSocket connection is not found in sipgo's pool")
	}

	// The tab closes. The connection is reset rather than closed, so that
	// no TIME_WAIT holds the old port and the test can listen there.
	_ = ws.WriteFrame(c, ws.MaskFrame(ws.NewCloseFrame(nil)))
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for s.flowOpen(flow) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.flowOpen(flow) {
		t.Fatal("the closed connection still counts as open")
	}
	// Its binding leaves the store.
	for deadline := time.Now().Add(3 * time.Second); len(s.store.Lookup("tab@example.com")) > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if bs := s.store.Lookup("tab@example.com"); len(bs) > 0 {
		t.Fatalf("the closed tab's binding is still held: %+v", bs)
	}
	// Whoever holds the browser's old address now would get pinhole's
	// connection (once pinhole's end of the old one has closed too).
	var l net.Listener
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if l, err = net.Listen("tcp", old.String()); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("listen on the browser's old address: %v", err)
	}
	defer l.Close()
	dialled := make(chan struct{}, 1)
	go func() {
		if conn, err := l.Accept(); err == nil {
			conn.Close()
			dialled <- struct{}{}
		}
	}()

	caller, err := net.Dial("udp", udp)
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	local := caller.LocalAddr().String()
	invite := "INVITE sip:tab@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-call-1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=c1\r\nTo: <sip:tab@example.com>\r\n" +
		"Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@" + local + ">\r\nContent-Length: 0\r\n\r\n"
	if _, err := caller.Write([]byte(invite)); err != nil {
		t.Fatal(err)
	}
	_ = caller.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	for {
		n, err := caller.Read(buf)
		if err != nil {
			t.Fatalf("no final answer to the INVITE: %v", err)
		}
		if line, _, _ := strings.Cut(string(buf[:n]), "\r\n"); !strings.HasPrefix(line, "SIP/2.0 1") {
			// 404 here: without a credentials file, a user without
			// bindings is unknown; with one it would be 480.
			if line != "SIP/2.0 404 Not Found" && line != "SIP/2.0 480 Temporarily Unavailable" {
				t.Fatalf("INVITE to the closed tab: %q, want 404 or 480", line)
			}
			break
		}
	}
	select {
	case <-dialled:
		t.Fatal("pinhole connected to the closed tab's old address")
	case <-time.After(300 * time.Millisecond):
	}
}

// registerTCP registers user over a new TCP connection, with a Contact
// naming contactHost ("": the connection's own address), and returns the
// connection.
func registerTCP(t *testing.T, server, user, contactHost string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", server, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if contactHost == "" {
		contactHost = c.LocalAddr().String()
	}
	reg := "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + c.LocalAddr().String() + ";branch=z9hG4bK-" + user + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:" + user + "@example.com>;tag=" + user + "\r\nTo: <sip:" + user + "@example.com>\r\n" +
		"Call-ID: " + user + "\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:" + user + "@" + contactHost + ";transport=tcp>;expires=600\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(reg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
		t.Fatalf("REGISTER over TCP for %s: %q, %v", user, buf[:n], err)
	}
	return c
}

// TestClosedTCPFlowBindings: when a phone's TCP connection closes, its
// binding leaves the store, whether its Contact names another address or
// the very address it connected from. When pinhole itself stops, every
// connection ends and no binding is removed: they must survive a restart.
func TestClosedTCPFlowBindings(t *testing.T) {
	port := freeTCPPort(t)
	server := fmt.Sprintf("127.0.0.1:%d", port)
	s := startServerWith(t, fmt.Sprintf("listen:\n  tcp: [%q]\n", server))

	elsewhere := registerTCP(t, server, "elsewhere", "10.1.2.3:5060")
	here := registerTCP(t, server, "here", "")
	elsewhere.Close()
	here.Close()
	for _, aor := range []string{"elsewhere@example.com", "here@example.com"} {
		for deadline := time.Now().Add(3 * time.Second); len(s.store.Lookup(aor)) > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if bs := s.store.Lookup(aor); len(bs) > 0 {
			t.Errorf("%s: the binding outlived its connection: %+v", aor, bs)
		}
	}

	// pinhole stops with a phone connected: its binding must survive.
	kept := registerTCP(t, server, "kept", "10.1.2.4:5060")
	defer kept.Close()
	removed := flowClosedRemoved.Get()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(flowClosedDelay + 200*time.Millisecond)
	if n := flowClosedRemoved.Get() - removed; n != 0 {
		t.Errorf("%d bindings removed while pinhole stopped", n)
	}
}
