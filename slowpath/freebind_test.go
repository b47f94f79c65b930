package slowpath

import (
	"log/slog"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pinhole-sip/pinhole/internal/config"
)

// nonLocal is an address of TEST-NET-1 (RFC 5737), on no interface of a
// test machine: binding it fails without IP_FREEBIND (or the
// ip_nonlocal_bind sysctl). Nothing is ever sent to it.
const nonLocal = "192.0.2.77"

// TestListenFreeBind: pinhole's own UDP and TCP listeners bind an address
// the box does not hold (a VIP held by the other box of a pair), with
// IP_FREEBIND set on the socket (the stream budget's listener hides its
// descriptor: that the bind succeeded shows it, with the sysctl off, as
// on a default host); and the kernel refuses to send from the
// UDP one while the address is elsewhere, so a standby leaks nothing.
func TestListenFreeBind(t *testing.T) {
	pc, err := listenUDP(net.JoinHostPort(nonLocal, "0"))
	if err != nil {
		t.Fatalf("UDP listener on a non-local address: %v", err)
	}
	defer pc.Close()
	if got := freeBindOpt(t, pc.(syscall.Conn)); got != 1 {
		t.Errorf("UDP listener: IP_FREEBIND = %d, want 1", got)
	}
	if _, err := pc.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err == nil {
		t.Error("a datagram left from an address the box does not hold")
	}

	cfg, err := config.Parse(config.Default(), "default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg, log: slog.New(slog.DiscardHandler)}
	s.streams = s.newStreamBudget()
	ln, err := s.listenStream("TCP", net.JoinHostPort(nonLocal, "0"))
	if err != nil {
		t.Fatalf("TCP listener on a non-local address: %v", err)
	}
	defer ln.Close()
	if got := ln.Addr().(*net.TCPAddr).IP.String(); got != nonLocal {
		t.Errorf("TCP listener bound %s, want %s", got, nonLocal)
	}
}

func freeBindOpt(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatalf("get IP_FREEBIND: %v", gerr)
	}
	return v
}
