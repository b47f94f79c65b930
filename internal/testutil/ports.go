package testutil

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
)

// FreePort returns a port on ip that is free for both UDP and TCP at the
// time of the call, since pinhole serves SIP on both with one number. The
// port is released before returning, so another process can still take it;
// on loopback with ephemeral ports that race is rare and fails loudly.
func FreePort(t testing.TB, ip netip.Addr) int {
	t.Helper()
	for range 32 {
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			t.Fatalf("find a free UDP port on %s: %v", ip, err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(port)))
		u.Close()
		if err != nil {
			continue // taken for TCP: try another
		}
		l.Close()
		return port
	}
	t.Fatalf("no port on %s free for both UDP and TCP after 32 tries", ip)
	return 0
}

// Loopback is 127.0.0.1, the address tests use for peers on the host.
var Loopback = netip.MustParseAddr("127.0.0.1")
