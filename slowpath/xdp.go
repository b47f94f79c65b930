package slowpath

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"
)

// Hooks for the kernel fast path and the NAT pinger (docs/xdp.md,
// docs/natping.md). They are set before Start and may be left unset.

// Intercept sees every UDP datagram before the sanity filter and sipgo;
// returning true consumes it. The NAT pinger uses it to take the answers to
// its pings when XDP does not swallow them first: no transaction waits for
// them, and sipgo would log each one.
type Intercept func(local, remote netip.AddrPort, msg []byte) bool

// AuthFailure is told the source of every REGISTER whose credentials were
// wrong (403), to feed the kernel blocklist (package ban).
type AuthFailure func(src netip.Addr)

var crlfPong = []byte("\r\n")

type hooks struct {
	intercept   atomic.Pointer[Intercept]
	authFailure atomic.Pointer[AuthFailure]
}

// SetIntercept installs fn (see Intercept).
func (s *Server) SetIntercept(fn Intercept) { s.hooks.intercept.Store(&fn) }

// SetAuthFailure installs fn (see AuthFailure).
func (s *Server) SetAuthFailure(fn AuthFailure) { s.hooks.authFailure.Store(&fn) }

// UDPSocket returns the UDP socket pinhole listens on at local, so that
// the NAT pinger sends from the address and port a device registered to.
func (s *Server) UDPSocket(local netip.AddrPort) (syscall.RawConn, error) {
	pc := s.udp.get(local.String())
	if pc == nil {
		return nil, fmt.Errorf("no UDP listener on %v", local)
	}
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("UDP listener on %v has no file descriptor", local)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("UDP listener on %v: %w", local, err)
	}
	return rc, nil
}

// keepaliveAnswered counts double-CRLF pings answered here, where XDP did
// not answer them first (it is off, or not on the interface they came in).
var keepaliveAnswered = metrics.GetOrCreateCounter(`pinhole_keepalive_answered_total{path="userspace"}`)

// filterUDP answers double-CRLF keepalives, runs the intercept hook, then
// the sanity filter.
func (s *Server) filterUDP(p sip.TransportReadProps, data []byte) ([]byte, error) {
	if p.Transport == "UDP" && string(data) == "\r\n\r\n" {
		// RFC 5626 §4.4.1: a double-CRLF ping gets a single CRLF pong, from
		// the socket it arrived on.
		if c := s.udp.get(p.LocalAddr.String()); c != nil {
			if _, err := c.WriteTo(crlfPong, p.RemoteAddr); err == nil {
				keepaliveAnswered.Inc()
			}
		}
		return nil, nil
	}
	if fn := s.hooks.intercept.Load(); fn != nil && p.Transport == "UDP" {
		local, lok := p.LocalAddr.(*net.UDPAddr)
		remote, rok := p.RemoteAddr.(*net.UDPAddr)
		if lok && rok && (*fn)(unmapped(local.AddrPort()), unmapped(remote.AddrPort()), data) {
			return nil, nil
		}
	}
	return s.readFilter(p, data)
}

// authFailed reports a 403 to the AuthFailure hook.
func (s *Server) authFailed(req *sip.Request) {
	fn := s.hooks.authFailure.Load()
	if fn == nil {
		return
	}
	if src, err := netip.ParseAddrPort(req.Source()); err == nil {
		(*fn)(src.Addr())
	}
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
