package slowpath

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// options is a request over TCP whose Via names sentBy, not the address it
// comes from.
func options(sentBy, callID string) []byte {
	return []byte("OPTIONS sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + sentBy + ";branch=z9hG4bK-" + callID + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:x@example.com>;tag=" + callID + "\r\nTo: <sip:example.com>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
}

// listenVictim is a TCP listener standing for the address an attacker
// writes in Via; reached counts the connections it accepted.
func listenVictim(t *testing.T) (net.Listener, *atomic.Int64) {
	t.Helper()
	victim, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Close() })
	reached := new(atomic.Int64)
	go func() {
		for {
			c, err := victim.Accept()
			if err != nil {
				return
			}
			reached.Add(1)
			c.Close()
		}
	}()
	return victim, reached
}

// TestResponseNeverReflects sends requests over TCP whose connection is
// gone before the answer, with a Via naming another listening address, or
// a DNS name. sipgo (v1.7) would dial that address, or look the name up
// and dial the result, to deliver the response: a reflector for anyone
// who can open a TCP connection. The request is followed in the same
// segment by bytes that are no SIP and by the connection's end, so sipgo
// hands the request on just before its reader sees the end. Over TCP and
// TLS the guarded dialer and resolver stop it (no tombstone there: see
// entomb), and both refusals are counted.
func TestResponseNeverReflects(t *testing.T) {
	port := freeTCPPort(t)
	startServerWith(t, fmt.Sprintf("listen:\n  tcp: [\"127.0.0.1:%d\"]\n", port))

	victim, reached := listenVictim(t)

	dials, lookups := reflectDials.Get(), reflectLookups.Get()
	for i := range 20 {
		sentBy := victim.Addr().String()
		if i%2 == 1 {
			// A name: the guarded resolver must refuse it before any
			// packet (localhost would resolve from /etc/hosts, so the dial
			// guard is tested by the address, the resolver by this name).
			sentBy = "reflect-" + strconv.Itoa(i) + ".attacker.invalid:5060"
		}
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		msg := append(options(sentBy, "reflect-"+strconv.Itoa(i)), "\x01\x02 not SIP\r\n\r\n"...)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && (reflectDials.Get() == dials || reflectLookups.Get() == lookups) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if n := reached.Load(); n != 0 {
		t.Errorf("the address written in Via got %d connections from pinhole", n)
	}
	if reflectDials.Get() == dials {
		t.Error("no dial to the Via address was refused: the test did not reach sipgo's fallback")
	}
	if reflectLookups.Get() == lookups {
		t.Error("no look-up of the Via name was refused: the test did not reach sipgo's fallback")
	}
}

// TestGuardsRefuseForeignLookups: behind the tombstones, the resolver and
// the dialers handed to sipgo refuse every look-up and connection that is
// not for a request of pinhole's own, before a packet leaves, and count it.
func TestGuardsRefuseForeignLookups(t *testing.T) {
	victim, reached := listenVictim(t)
	ctx := context.Background()
	dials, lookups := reflectDials.Get(), reflectLookups.Get()

	d := streamDialer(nil)
	if _, err := d.DialContext(ctx, "tcp", victim.Addr().String()); !errors.Is(err, errNotOwn) {
		t.Errorf("dial for an answer: %v, want it refused", err)
	}
	if _, err := guardedResolver().LookupHost(ctx, "reflect.attacker.invalid"); err == nil || !strings.Contains(err.Error(), errNotOwn.Error()) {
		t.Errorf("look-up for an answer: %v, want it refused", err)
	}
	if reflectDials.Get() != dials+1 || reflectLookups.Get() == lookups {
		t.Errorf("refusals counted: dials %d, look-ups %d", reflectDials.Get()-dials, reflectLookups.Get()-lookups)
	}
	c, err := d.DialContext(own(ctx), "tcp", victim.Addr().String())
	if err != nil {
		t.Fatalf("dial for pinhole's own request: %v", err)
	}
	c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for reached.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := reached.Load(); n != 1 {
		t.Errorf("the victim saw %d connections, want only pinhole's own one", n)
	}
}

// TestWebSocketAnswerNeverReflects does the same over WS and WSS, whose
// requests sipgo also hands on before its reader sees the connection end.
// sipgo dials WSS with a dialer of its own that pinhole cannot guard, so
// an address written in Via is the one that would get the connection; the
// tombstone a connection leaves in sipgo's pool keeps the answer from
// looking any further. Each request is followed at once by the
// connection's end: a message sipgo cannot parse (which it would end the
// connection on, were it not dropped before), a WebSocket Close, or the
// TCP connection closing.
func TestWebSocketAnswerNeverReflects(t *testing.T) {
	ports := map[string]int{"ws": freeTCPPort(t), "wss": freeTCPPort(t)}
	startServerWith(t, fmt.Sprintf("listen:\n  ws: [\"127.0.0.1:%d\"]\n  wss: [\"127.0.0.1:%d\"]\n", ports["ws"], ports["wss"]))

	victim, reached := listenVictim(t)

	ends := map[string]func(net.Conn) error{
		"garbage": func(c net.Conn) error { return wsutil.WriteClientText(c, []byte("\x01\x02 not SIP\r\n\r\n")) },
		"close":   func(c net.Conn) error { return ws.WriteFrame(c, ws.MaskFrame(ws.NewCloseFrame(nil))) },
		"tcp":     func(net.Conn) error { return nil },
	}
	laid := tombstonesLaid.Get()
	for _, scheme := range []string{"ws", "wss"} {
		for how, end := range ends {
			d := ws.Dialer{Protocols: sip.WebSocketProtocols, TLSConfig: &tls.Config{InsecureSkipVerify: true}, Timeout: 5 * time.Second}
			for i := range 10 {
				c, _, _, err := d.Dial(context.Background(), fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[scheme]))
				if err != nil {
					t.Fatalf("%s: %v", scheme, err)
				}
				msg := options(victim.Addr().String(), fmt.Sprintf("ws-reflect-%s-%s-%d", scheme, how, i))
				msg = bytes.Replace(msg, []byte("SIP/2.0/TCP"), []byte("SIP/2.0/"+strings.ToUpper(scheme)), 1)
				if err := wsutil.WriteClientText(c, msg); err != nil {
					t.Fatal(err)
				}
				if err := end(c); err != nil {
					t.Fatal(err)
				}
				c.Close()
			}
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && tombstonesLaid.Get() < laid+60 {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if n := reached.Load(); n != 0 {
		t.Errorf("the address written in Via got %d connections from pinhole", n)
	}
	if got := tombstonesLaid.Get() - laid; got < 60 {
		t.Errorf("%d tombstones laid for 60 connections that ended", got)
	}
}

// TestWebSocketSanity: a WebSocket message meets the same sanity filter as
// a datagram, and its refusal is answered in a frame on the connection; a
// message that is no SIP is dropped and the connection stays open for the
// next one (sipgo would have ended it).
func TestWebSocketSanity(t *testing.T) {
	port := freeTCPPort(t)
	startServerWith(t, fmt.Sprintf("listen:\n  ws: [\"127.0.0.1:%d\"]\n", port))
	d := ws.Dialer{Protocols: sip.WebSocketProtocols, Timeout: 5 * time.Second}
	c, _, _, err := d.Dial(context.Background(), fmt.Sprintf("ws://127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	register := func(callID string, extra string) []byte {
		return []byte("REGISTER sip:example.com SIP/2.0\r\n" +
			"Via: SIP/2.0/WS abc.invalid;branch=z9hG4bK-" + callID + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:ws@example.com>;tag=" + callID + "\r\nTo: <sip:ws@example.com>\r\n" +
			extra + "Call-ID: " + callID + "\r\nCSeq: 1 REGISTER\r\nContact: <sip:ws@abc.invalid;transport=ws>\r\nContent-Length: 0\r\n\r\n")
	}
	// Two From fields (RFC 3261 §7.3): 400, in a frame.
	if err := wsutil.WriteClientText(c, register("ws-dup", "From: <sip:mallory@example.com>;tag=x\r\n")); err != nil {
		t.Fatal(err)
	}
	got, err := wsutil.ReadServerText(c)
	if err != nil || !bytes.HasPrefix(got, []byte("SIP/2.0 400 ")) {
		t.Fatalf("a REGISTER with two From fields got %q, %v; want a 400 frame", got, err)
	}
	if err := wsutil.WriteClientText(c, []byte("\x01\x02 not SIP\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := wsutil.WriteClientText(c, register("ws-ok", "")); err != nil {
		t.Fatal(err)
	}
	got, err = wsutil.ReadServerText(c)
	if err != nil || !bytes.HasPrefix(got, []byte("SIP/2.0 200 ")) {
		t.Fatalf("a REGISTER after a message that is no SIP got %q, %v; want 200 on the same connection", got, err)
	}
}
