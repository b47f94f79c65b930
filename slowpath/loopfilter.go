package slowpath

import (
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// loopFiltered is a UDP listener whose datagrams the fast path's event
// loops read (fastpath/handoff.Conn): it can run the read filter in the
// loop, before the datagram is queued for sipgo's reader.
type loopFiltered interface {
	SetFilter(func(data []byte, remote netip.AddrPort) bool)
}

// inLoops are the local addresses of the UDP listeners whose read filter
// runs in the fast path's event loops; sipgo's reader must not filter
// their datagrams a second time. Written at Start, read per datagram.
type inLoops struct {
	mu    sync.RWMutex
	addrs []netip.AddrPort
}

func (l *inLoops) add(ap netip.AddrPort) {
	l.mu.Lock()
	l.addrs = append(l.addrs, unmapped(ap))
	l.mu.Unlock()
}

func (l *inLoops) has(local net.Addr) bool {
	ua, ok := local.(*net.UDPAddr)
	if !ok {
		return false
	}
	ap := unmapped(ua.AddrPort()) // a net.UDPAddr may hold an IPv4 address in 16 bytes
	l.mu.RLock()
	defer l.mu.RUnlock()
	return slices.Contains(l.addrs, ap)
}

// filterInLoops makes the event loops that read pc run the read filter
// (filterRead's steps: capture, keepalives, the intercept hook, the
// sanity filter, the stateless REGISTER path) on each datagram they do
// not answer themselves, so that only what sipgo has to parse is queued
// for sipgo's reader. It reports whether pc is such a listener.
//
// Why: a first registration through the fast path went from the loop to
// sipgo's reader, which ran the filter and queued it again for a
// stateless worker: a goroutine hop, and a wake-up, that did nothing but
// move the datagram. Everything the filter does is bounded and never
// blocks (take sheds on a full queue), as the loop requires.
func (s *Server) filterInLoops(pc net.PacketConn) bool {
	lf, ok := pc.(loopFiltered)
	if !ok {
		return false
	}
	local, ok := pc.LocalAddr().(*net.UDPAddr)
	if !ok {
		return false
	}
	s.inLoops.add(local.AddrPort())
	lf.SetFilter(func(data []byte, remote netip.AddrPort) bool {
		p := sip.TransportReadProps{Transport: "UDP", LocalAddr: local, RemoteAddr: net.UDPAddrFromAddrPort(remote)}
		out, _ := s.filter(p, data)
		return len(out) == 0
	})
	return true
}
