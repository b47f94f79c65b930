package slowpath

import (
	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"
)

var crlfPong = []byte("\r\n")

// keepaliveAnswered counts double-CRLF pings answered here, where XDP did
// not answer them first (it is off, or not on the interface they came in).
var keepaliveAnswered = metrics.GetOrCreateCounter(`pinhole_keepalive_answered_total{path="userspace"}`)

// answerKeepalive reports whether a UDP datagram is a double-CRLF ping,
// after answering it. RFC 5626 §4.4.1: the ping gets a single CRLF pong,
// from the socket it arrived on.
func (s *Server) answerKeepalive(p sip.TransportReadProps, data []byte) bool {
	if p.Transport != "UDP" || string(data) != "\r\n\r\n" {
		return false
	}
	if c := s.udp.get(p.LocalAddr.String()); c != nil {
		if _, err := c.WriteTo(crlfPong, p.RemoteAddr); err == nil {
			keepaliveAnswered.Inc()
		}
	}
	return true
}
