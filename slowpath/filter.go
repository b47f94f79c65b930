package slowpath

import (
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

// filterUDP is sipgo's read filter: it answers double-CRLF keepalives,
// runs the intercept hook, then the sanity filter, and takes what passed
// it to the stateless REGISTER path when that is on (stateless.go).
func (s *Server) filterUDP(p sip.TransportReadProps, data []byte) ([]byte, error) {
	if s.answerKeepalive(p, data) || s.intercepted(p, data) {
		return nil, nil
	}
	out, err := s.readFilter(p, data)
	if len(out) > 0 && s.sl != nil && s.sl.take(p, out) {
		return nil, nil
	}
	return out, err
}

// readFilter vets every UDP datagram before sipgo parses it (see package
// sanity). It never returns an error: sipgo stops reading a socket whose
// filter does.
func (s *Server) readFilter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	if p.Transport != "UDP" {
		// A stream read is any piece of the byte stream, not a message:
		// TCP and TLS connections are framed and vetted whole by SaneConn
		// before sipgo reads them (stream.go).
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
