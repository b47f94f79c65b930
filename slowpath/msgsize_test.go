package slowpath

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// readUntil reads datagrams on c until one starts with prefix, or fails
// the test after wait.
func readUntil(t *testing.T, c net.PacketConn, prefix string, wait time.Duration) ([]byte, net.Addr) {
	t.Helper()
	buf := make([]byte, 70000)
	deadline := time.Now().Add(wait)
	for {
		c.SetReadDeadline(deadline)
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no datagram starting %q within %s: %v", prefix, wait, err)
		}
		if strings.HasPrefix(string(buf[:n]), prefix) {
			return bytes.Clone(buf[:n]), from
		}
	}
}

func listenLoopbackUDP(t *testing.T) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRegister200WithManyContactsOverUDP registers registrar.max_contacts
// contacts of the length devices give them (an instance id each, RFC 5626 §4.1): the 200 lists every
// one (RFC 3261 §10.3 step 8) and is far over 1300 bytes, which sipgo's
// UDP writer silently refused to send.
func TestRegister200WithManyContactsOverUDP(t *testing.T) {
	_, addr := startServer(t, "registrar:\n  max_contacts: 10\n")
	c := listenLoopbackUDP(t)
	local := c.LocalAddr().String()
	var contacts strings.Builder
	for i := range 10 {
		fmt.Fprintf(&contacts, "Contact: <sip:alice-%d@%s;transport=udp;ob>;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-%012d>\";expires=600\r\n", i, local, i)
	}
	req := "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-many;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=many\r\nTo: <sip:alice@example.com>\r\n" +
		"Call-ID: many-contacts\r\nCSeq: 1 REGISTER\r\nSupported: outbound, path\r\n" + contacts.String() + "Content-Length: 0\r\n\r\n"
	dst, _ := net.ResolveUDPAddr("udp", addr)
	if _, err := c.WriteTo([]byte(req), dst); err != nil {
		t.Fatal(err)
	}
	res, _ := readUntil(t, c, "SIP/2.0 200", 5*time.Second)
	if len(res) <= 1300 {
		t.Fatalf("the 200 is %d bytes: the test must exceed sipgo's 1300-byte rule", len(res))
	}
	for i := range 10 {
		if !bytes.Contains(res, []byte("alice-"+strconv.Itoa(i)+"@")) {
			t.Errorf("contact %d missing from the 200:\n%s", i, res)
		}
	}
}

// TestLargeDatagramNotTruncated sends a 40 KB REGISTER, within
// limits.max_message_bytes (65535): sipgo's 32 KiB read buffer cut it, and
// the cut datagram was refused as truncated.
func TestLargeDatagramNotTruncated(t *testing.T) {
	_, addr := startServer(t, "")
	c := listenLoopbackUDP(t)
	local := c.LocalAddr().String()
	req := string(register("big", "big-1", 1, local))
	pad := "X-Pad: " + strings.Repeat("p", 40000) + "\r\n"
	req = strings.Replace(req, "Content-Length: 0\r\n", pad+"Content-Length: 0\r\n", 1)
	dst, _ := net.ResolveUDPAddr("udp", addr)
	if _, err := c.WriteTo([]byte(req), dst); err != nil {
		t.Fatal(err)
	}
	res, _ := readUntil(t, c, "SIP/2.0 ", 5*time.Second)
	if !bytes.HasPrefix(res, []byte("SIP/2.0 200 ")) {
		t.Fatalf("a %d-byte REGISTER got:\n%.300s", len(req), res)
	}
}

// TestLargeInviteAndResponseOverUDP relays a 3.5 KB INVITE to a device
// registered over UDP and the device's 1.7 KB 486 back to a UDP caller:
// both are over sipgo's 1300-byte rule, which failed the INVITE with 500
// and lost the 486.
func TestLargeInviteAndResponseOverUDP(t *testing.T) {
	_, addr := startServer(t, "")
	dst, _ := net.ResolveUDPAddr("udp", addr)
	dev := listenLoopbackUDP(t)
	devAddr := dev.LocalAddr().String()
	if _, err := dev.WriteTo(register("bob", "bob-reg", 1, devAddr), dst); err != nil {
		t.Fatal(err)
	}
	readUntil(t, dev, "SIP/2.0 200", 5*time.Second)

	caller := listenLoopbackUDP(t)
	callerAddr := caller.LocalAddr().String()
	body := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	for len(body) < 3500 {
		body += "a=x-padding:" + strings.Repeat("q", 60) + "\r\n"
	}
	invite := "INVITE sip:bob@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + callerAddr + ";branch=z9hG4bK-big-invite;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:carol@example.com>;tag=c1\r\nTo: <sip:bob@example.com>\r\n" +
		"Call-ID: big-invite\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@" + callerAddr + ">\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := caller.WriteTo([]byte(invite), dst); err != nil {
		t.Fatal(err)
	}
	got, from := readUntil(t, dev, "INVITE ", 5*time.Second)
	if len(got) < 3500 {
		t.Fatalf("the device got a %d-byte INVITE", len(got))
	}
	msg, err := sip.ParseMessage(got)
	if err != nil {
		t.Fatalf("the device cannot parse the INVITE: %v", err)
	}
	res := sip.NewResponseFromRequest(msg.(*sip.Request), 486, "Busy Here", nil)
	res.AppendHeader(sip.NewHeader("Warning", `399 bob "`+strings.Repeat("busy ", 340)+`"`))
	out := []byte(res.String())
	if len(out) < 1700 {
		t.Fatalf("the 486 is %d bytes, want 1.7 KB", len(out))
	}
	if _, err := dev.WriteTo(out, from); err != nil {
		t.Fatal(err)
	}
	busy, _ := readUntil(t, caller, "SIP/2.0 486", 5*time.Second)
	if len(busy) < 1700 {
		t.Errorf("the caller got a %d-byte 486", len(busy))
	}
}
