package slowpath

import (
	"net"
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// A datagram of a listener whose read filter already ran in the fast
// path's loop reaches sipgo untouched: a second pass would answer a
// keepalive twice, or queue a REGISTER twice. Another listener's is
// still filtered (the keepalive answered and consumed).
func TestFilterReadSkipsLoopFiltered(t *testing.T) {
	var s Server
	inLoop := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
	other := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5070}
	s.inLoops.add(netip.MustParseAddrPort("127.0.0.1:5060"))
	remote := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 5060}
	keepalive := []byte("\r\n\r\n")

	out, err := s.filterRead(sip.TransportReadProps{Transport: "UDP", LocalAddr: inLoop, RemoteAddr: remote}, keepalive)
	if err != nil || string(out) != string(keepalive) {
		t.Errorf("loop-filtered listener: filterRead = %q, %v; want the datagram as it is", out, err)
	}
	out, err = s.filterRead(sip.TransportReadProps{Transport: "UDP", LocalAddr: other, RemoteAddr: remote}, keepalive)
	if err != nil || len(out) != 0 {
		t.Errorf("other listener: filterRead = %q, %v; want the keepalive consumed", out, err)
	}
}
