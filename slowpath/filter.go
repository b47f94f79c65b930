package slowpath

import (
	"net"
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/slowpath/sanity"
)

// sanityVerdicts counts datagrams refused before parsing, by reason.
// Only refusals are counted, so a flood of good traffic touches nothing.
var sanityVerdicts = func() (c [sanity.NumReasons]*metrics.Counter) {
	for i := range c {
		c[i] = metrics.GetOrCreateCounter(`pinhole_sanity_refused_total{reason="` + sanity.Reason(i).String() + `"}`)
	}
	return c
}()

// udpSockets maps a listener's local address to its socket, so the read
// filter can answer a malformed request from the socket it arrived on.
type udpSockets struct {
	mu    sync.RWMutex
	conns map[string]net.PacketConn
}

func (u *udpSockets) add(c net.PacketConn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conns == nil {
		u.conns = map[string]net.PacketConn{}
	}
	u.conns[c.LocalAddr().String()] = c
}

func (u *udpSockets) get(addr string) net.PacketConn {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return u.conns[addr]
}

// readFilter vets every UDP datagram before sipgo parses it (see package
// sanity). It never returns an error: sipgo stops reading a socket whose
// filter does.
func (s *Server) readFilter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	if p.Transport != "UDP" {
		// Stream transports are framed and size-limited by sipgo's parser.
		return data, nil
	}
	v := sanity.Check(nil, data, *s.ops.limits.Load())
	switch v.Action {
	case sanity.Pass:
		return data, nil
	case sanity.Reply:
		if c := s.udp.get(p.LocalAddr.String()); c != nil {
			_, _ = c.WriteTo(v.Reply, p.RemoteAddr)
		}
	}
	sanityVerdicts[v.Reason].Inc()
	return nil, nil
}
