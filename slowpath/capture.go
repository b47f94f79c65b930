package slowpath

import (
	"net"
	"net/netip"
	"syscall"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/capture"
)

// The slow path hands the HEP capture (docs/capture.md) every SIP message
// where it is whole and in clear:
//   - received over UDP, WS and WSS: in the read filter, which sees each
//     datagram and each WebSocket message (decrypted) before anything
//     else (filter.go);
//   - received over TCP and TLS: in SaneConn, which frames each message
//     out of the decrypted stream (stream.go);
//   - sent over UDP: through the socket sipgo, the stateless path and the
//     sanity filter write to (capturedPacketConn);
//   - sent over TCP and TLS: through the accepted connection, below TLS
//     (capturedConn); over WS and WSS, each frame's payload (wsframe.go).
// Connections pinhole dials itself (a TCP upstream) are sipgo's own and
// not seen; neither are the NAT pinger's OPTIONS, written on the raw socket.

// SetCapture hands the slow path a capture tap; call it before Start.
// Without one (capture off) every hook below is a nil check.
func (s *Server) SetCapture(c *capture.Capturer) { s.tap = c.NewTap() }

// addrPort is a's address and port, IPv4 unmapped; zero for other types.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func transportOf(name string) capture.Transport {
	if name == "UDP" {
		return capture.UDP
	}
	return capture.TCP // TCP, TLS, WS, WSS: HEP v3 has no TLS or WebSocket flag
}

// captureRead captures a message from the read filter: UDP datagrams and
// WebSocket messages (TCP and TLS are SaneConn's).
func (s *Server) captureRead(p sip.TransportReadProps, data []byte) {
	if s.tap == nil || p.Transport == "TCP" || p.Transport == "TLS" {
		return
	}
	s.tap.Capture(capture.Received, transportOf(p.Transport), addrPort(p.RemoteAddr), addrPort(p.LocalAddr), data)
}

// capturedPacketConn captures every datagram written to a UDP listener.
type capturedPacketConn struct {
	net.PacketConn
	tap   *capture.Tap
	local netip.AddrPort
}

func (c *capturedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(b, addr)
	if err == nil {
		c.tap.Capture(capture.Sent, capture.UDP, c.local, addrPort(addr), b)
	}
	return n, err
}

// SyscallConn gives the NAT pinger the listener's socket, as without
// capture (udpsock.go).
func (c *capturedPacketConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.PacketConn.(syscall.Conn)
	if !ok {
		return nil, syscall.EINVAL
	}
	return sc.SyscallConn()
}

func (s *Server) capturePacketConn(pc net.PacketConn) net.PacketConn {
	if s.tap == nil {
		return pc
	}
	return &capturedPacketConn{PacketConn: pc, tap: s.tap, local: addrPort(pc.LocalAddr())}
}

// capturedConn captures what is written to an accepted TCP or TLS
// connection, in clear: sipgo writes each message with one Write
// (TCPConnection.WriteMsg, v1.7), as SaneConn writes its refusals.
type capturedConn struct {
	net.Conn
	tap           *capture.Tap
	local, remote netip.AddrPort
}

func (c *capturedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.tap.Capture(capture.Sent, capture.TCP, c.local, c.remote, b[:n])
	}
	return n, err
}
