package slowpath

import (
	"bytes"
	"io"
	"strings"

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

// filterRead is sipgo's read filter, for every transport. A datagram of a
// listener whose event loops already ran the filter (loopfilter.go)
// passes as it is; the rest go through filter.
func (s *Server) filterRead(p sip.TransportReadProps, data []byte) ([]byte, error) {
	if p.Transport == "UDP" && s.inLoops.has(p.LocalAddr) {
		return data, nil
	}
	return s.filter(p, data)
}

// filter hands UDP datagrams and WebSocket messages to the capture
// (capture.go), answers double-CRLF keepalives, runs the intercept hook,
// then the sanity filter (UDP datagrams and WebSocket messages; TCP and
// TLS are vetted by SaneConn, stream.go), and hands what passed to the
// stateless REGISTER path when that is on (stateless.go).
func (s *Server) filter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	s.captureRead(p, data) // first: whatever happens to it next, it was received
	if s.answerKeepalive(p, data) || s.intercepted(p, data) {
		return nil, nil
	}
	out, err := s.readFilter(p, data)
	if len(out) > 0 && s.sl != nil && s.sl.take(p, out) {
		return nil, nil
	}
	return out, err
}

// readFilter vets every UDP datagram and WebSocket message before sipgo
// parses it (see package sanity). It never returns an error: sipgo stops
// reading a socket whose filter does.
func (s *Server) readFilter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	switch p.Transport {
	case "UDP":
	case "WS", "WSS":
		return s.vetWebSocket(p, data), nil
	default:
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

// wsUnparsed counts WebSocket messages that passed the sanity filter and
// that sipgo's parser still refused.
var wsUnparsed = metrics.GetOrCreateCounter(`pinhole_sanity_ws_unparsed_total`)

// vetWebSocket runs the sanity filter on a WebSocket message: on WS and
// WSS one message is one SIP message (RFC 7118 §5), whole, as a datagram
// is. A refusal's answer goes back over the same connection, in a frame.
//
// What passes is also parsed here, and dropped when sipgo's parser would
// refuse it: sipgo (v1.7) ends a WebSocket connection on a message it
// cannot parse, and a connection that ends while an earlier request on it
// still looks for it sends that request's answer by dialling its Via
// (noreflect.go). A dropped message leaves the connection open, as a bad
// datagram leaves the UDP socket. Browsers and WebSocket phones send few
// messages; parsing them twice costs little.
func (s *Server) vetWebSocket(p sip.TransportReadProps, data []byte) []byte {
	if len(data) <= 4 && len(bytes.Trim(data, "\r\n")) == 0 {
		return data // a CRLF keepalive, which sipgo answers (RFC 5626 §3.5.1)
	}
	v := sanity.Check(nil, data, *s.ops.limits.Load())
	switch v.Action {
	case sanity.Pass:
		if _, err := s.sipParser.ParseSIP(data); err != nil {
			wsUnparsed.Inc()
			return nil
		}
		return data
	case sanity.Reply:
		s.replyWebSocket(p, v.Reply)
	}
	sanityVerdicts[v.Reason].Inc()
	return nil
}

// replyWebSocket writes reply, raw, in one frame over the connection the
// refused message came on.
func (s *Server) replyWebSocket(p sip.TransportReadProps, reply []byte) {
	pool := s.ua.TransportLayer().Pool(strings.ToLower(p.Transport))
	if pool == nil || p.RemoteAddr == nil {
		return
	}
	c := pool.Get(p.RemoteAddr.String())
	if c == nil {
		return
	}
	defer c.TryClose()
	if w, ok := c.(io.Writer); ok {
		_, _ = w.Write(reply)
	}
}
