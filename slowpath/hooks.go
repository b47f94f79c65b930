package slowpath

import (
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

// hooks are everything the daemon can plug into the slow path: the kernel
// fast path and the NAT pinger (docs/xdp.md, docs/natping.md) and the
// userspace fast path (docs/fastpath.md). Each is set before Start and may
// be left unset; atomic pointers let the read paths check them without a
// lock.
type hooks struct {
	intercept   atomic.Pointer[Intercept]
	authFailure atomic.Pointer[AuthFailure]
	listenUDP   atomic.Pointer[func(netip.AddrPort) (net.PacketConn, error)]
	committed   atomic.Pointer[registrar.Committed]
	changed     atomic.Pointer[func(aor string)]
	settle      atomic.Pointer[func(aor string)]
	rawFill     atomic.Pointer[RawFill]
}

// RawFill is told the bytes of a REGISTER the raw 200 means to answer
// (slowpath/raw200.go) and returns what to tell, once that 200 is sent,
// its bytes and the flow: the fast path fills its cache from them as
// Committed does from sipgo's objects. ok false: it cannot read this
// request as sipgo would, and the 200 is built through sipgo instead,
// which tells Committed.
type RawFill = func(req []byte) (fill func(res []byte, flow location.Flow), ok bool)

// Intercept sees every UDP datagram before the sanity filter and sipgo;
// returning true consumes it. The NAT pinger uses it to take the answers to
// its pings when XDP does not swallow them first: no transaction waits for
// them, and sipgo would log each one.
type Intercept func(local, remote netip.AddrPort, msg []byte) bool

// AuthFailure is told the source of every REGISTER, and of every request
// the proxy authenticates, whose credentials were wrong (403), to feed the
// kernel blocklist (package ban).
type AuthFailure func(src netip.Addr)

// SetIntercept installs fn (see Intercept).
func (s *Server) SetIntercept(fn Intercept) { s.hooks.intercept.Store(&fn) }

// SetAuthFailure installs fn (see AuthFailure).
func (s *Server) SetAuthFailure(fn AuthFailure) { s.hooks.authFailure.Store(&fn) }

// SetUDPListen makes Start open each UDP listener with fn instead of a
// socket of its own: the fast path owns the sockets and hands sipgo what
// it does not answer through the PacketConn fn returns.
func (s *Server) SetUDPListen(fn func(netip.AddrPort) (net.PacketConn, error)) {
	s.hooks.listenUDP.Store(&fn)
}

// SetCommitted installs fn, told of every 200 the registrar or the
// mid-registrar sent to a REGISTER (the fast path fills its cache).
func (s *Server) SetCommitted(fn func(*sip.Request, *sip.Response, location.Flow)) {
	c := registrar.Committed(fn)
	s.hooks.committed.Store(&c)
}

// SetRawFill installs fn (see RawFill). With a Committed hook and none of
// these, REGISTERs with credentials are answered through sipgo: Committed
// needs its objects.
func (s *Server) SetRawFill(fn RawFill) { s.hooks.rawFill.Store(&fn) }

// SetBindingChanged installs fn, told the AOR of every change of a
// binding in the location store (the fast path forgets the AOR).
func (s *Server) SetBindingChanged(fn func(aor string)) { s.hooks.changed.Store(&fn) }

// SetSettle installs fn, called with the AOR before the registrar reads
// or changes its bindings (the fast path writes the refreshes it absorbed
// to the store first).
func (s *Server) SetSettle(fn func(aor string)) { s.hooks.settle.Store(&fn) }

// intercepted runs the Intercept hook on a UDP datagram.
func (s *Server) intercepted(p sip.TransportReadProps, data []byte) bool {
	fn := s.hooks.intercept.Load()
	if fn == nil || p.Transport != "UDP" {
		return false
	}
	local, lok := p.LocalAddr.(*net.UDPAddr)
	remote, rok := p.RemoteAddr.(*net.UDPAddr)
	return lok && rok && (*fn)(unmapped(local.AddrPort()), unmapped(remote.AddrPort()), data)
}

// unmapped makes the hook see an IPv4 peer as IPv4 even when it came in on
// a dual-stack socket (as ::ffff:a.b.c.d).
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
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

// Digest is the current digest check (nil without authentication), which
// the fast path's loops run on the same nonces and replay memory as the
// registrar and the proxy.
func (s *Server) Digest() *digest.Verifier {
	if a := s.ops.authn.Load(); a != nil {
		return a.Verifier()
	}
	return nil
}

func (s *Server) committed(req *sip.Request, res *sip.Response, flow location.Flow) {
	s.conns.registered(req, flow)
	if fn := s.hooks.committed.Load(); fn != nil {
		(*fn)(req, res, flow)
	}
}

func (s *Server) settle(aor string) {
	if fn := s.hooks.settle.Load(); fn != nil {
		(*fn)(aor)
	}
}

func (s *Server) bindingChanged(aor string) {
	if fn := s.hooks.changed.Load(); fn != nil {
		(*fn)(aor)
	}
}
