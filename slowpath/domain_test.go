package slowpath

import (
	"net"
	"strings"
	"testing"
	"time"
)

// TestTrailingDotDomain checks that a domain written with the trailing dot
// of a fully qualified name is the served domain: the REGISTER binds the
// same AOR, and a call to that form of the domain reaches the device
// instead of being treated as foreign.
func TestTrailingDotDomain(t *testing.T) {
	s, addr := startServer(t, "")
	dst, _ := net.ResolveUDPAddr("udp", addr)
	dev := listenLoopbackUDP(t)
	devAddr := dev.LocalAddr().String()
	reg := strings.ReplaceAll(string(register("bob", "dot-reg", 1, devAddr)), "@example.com>", "@Example.COM.>")
	reg = strings.Replace(reg, "REGISTER sip:example.com ", "REGISTER sip:example.com. ", 1)
	if _, err := dev.WriteTo([]byte(reg), dst); err != nil {
		t.Fatal(err)
	}
	readUntil(t, dev, "SIP/2.0 200", 5*time.Second)
	if got := s.Store().Lookup("bob@example.com"); len(got) != 1 {
		t.Fatalf("bindings of bob@example.com: %+v", got)
	}
	if got := s.Store().Lookup("bob@example.com."); len(got) != 0 {
		t.Fatalf("the trailing dot made an AOR of its own: %+v", got)
	}

	caller := listenLoopbackUDP(t)
	ca := caller.LocalAddr().String()
	invite := "INVITE sip:bob@example.com. SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + ca + ";branch=z9hG4bK-dot-invite;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:carol@example.com.>;tag=c1\r\nTo: <sip:bob@example.com.>\r\n" +
		"Call-ID: dot-invite\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@" + ca + ">\r\nContent-Length: 0\r\n\r\n"
	if _, err := caller.WriteTo([]byte(invite), dst); err != nil {
		t.Fatal(err)
	}
	readUntil(t, dev, "INVITE sip:bob@", 5*time.Second)
}
