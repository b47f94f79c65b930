package slowpath

import (
	"encoding/binary"
	"net"

	"github.com/pinhole-sip/pinhole/internal/capture"
)

// wsSentConn captures the SIP messages pinhole sends on an accepted WS or
// WSS connection (decrypted: it sits inside TLS). sipgo (v1.7) writes each
// message as one unfragmented text frame (WSConnection.Write), and gobwas
// writes a frame's header and its payload in separate Writes, so the
// payload is collected across Writes by following the frame headers
// (RFC 6455 §5.2) after the HTTP answer to the upgrade. Frames that are
// not a whole text or binary message (pings, close, fragments) are
// followed and not captured.
type wsSentConn struct {
	net.Conn
	sent func(msg []byte) // told of each whole message written

	upgraded bool
	eoh      int    // bytes of the upgrade answer's final CR LF CR LF seen
	hdr      []byte // header of the frame being written
	need     int    // payload bytes of that frame still to come; -1: in the header
	keep     bool   // that frame is a whole message: its payload is captured
	msg      []byte // its payload so far
}

// wsMaxCaptured bounds the payload collected for capture: no SIP message
// pinhole accepts is longer (limits.max_message_bytes ≤ 65535).
const wsMaxCaptured = 1 << 16

func newWSSentConn(c net.Conn, sent func(msg []byte)) *wsSentConn {
	return &wsSentConn{Conn: c, sent: sent, need: -1}
}

func (c *wsSentConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.follow(b[:n])
	return n, err
}

func (c *wsSentConn) follow(b []byte) {
	for len(b) > 0 {
		if !c.upgraded {
			// The 101 answer ends with an empty line; its CR LF CR LF
			// may be cut across writes.
			i := 0
			for ; i < len(b) && c.eoh < 4; i++ {
				switch {
				case b[i] == "\r\n\r\n"[c.eoh]:
					c.eoh++
				case b[i] == '\r':
					c.eoh = 1
				default:
					c.eoh = 0
				}
			}
			b, c.upgraded = b[i:], c.eoh == 4
			continue
		}
		if c.need < 0 {
			take := min(len(b), 14-len(c.hdr)) // the longest header
			c.hdr = append(c.hdr, b[:take]...)
			hl, plen, ok := wsHeader(c.hdr)
			if !ok {
				return // more header to come
			}
			// Only the header's own bytes were consumed.
			b = b[take-(len(c.hdr)-hl):]
			op, fin := c.hdr[0]&0x0f, c.hdr[0]&0x80 != 0
			c.hdr = c.hdr[:0]
			c.keep = fin && (op == 1 || op == 2) && plen <= wsMaxCaptured
			c.need = int(min(plen, 1<<31))
			c.msg = c.msg[:0]
		}
		take := min(len(b), c.need)
		if c.keep {
			c.msg = append(c.msg, b[:take]...)
		}
		b, c.need = b[take:], c.need-take
		if c.need == 0 {
			if c.keep {
				c.sent(c.msg)
			}
			c.need = -1
		}
	}
}

// wsHeader reads a frame header: its length and the payload's, once h
// holds all of it.
func wsHeader(h []byte) (hl int, plen uint64, ok bool) {
	if len(h) < 2 {
		return 0, 0, false
	}
	hl = 2
	switch l7 := h[1] & 0x7f; l7 {
	case 126:
		hl += 2
	case 127:
		hl += 8
	default:
		plen = uint64(l7)
	}
	if h[1]&0x80 != 0 {
		hl += 4 // masking key (a client's frame; pinhole's are not masked)
	}
	if len(h) < hl {
		return 0, 0, false
	}
	switch hl - 2 - int(h[1]>>7)*4 {
	case 2:
		plen = uint64(binary.BigEndian.Uint16(h[2:]))
	case 8:
		plen = binary.BigEndian.Uint64(h[2:])
	}
	return hl, plen, true
}

// wsCaptureListener wraps every accepted WS or WSS connection.
type wsCaptureListener struct {
	net.Listener
	tap *capture.Tap
}

func (l wsCaptureListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	local, remote, tap := addrPort(c.LocalAddr()), addrPort(c.RemoteAddr()), l.tap
	return newWSSentConn(c, func(msg []byte) { tap.Capture(capture.Sent, capture.TCP, local, remote, msg) }), nil
}

func (s *Server) captureWS(ln net.Listener) net.Listener {
	if s.tap == nil {
		return ln
	}
	return wsCaptureListener{Listener: ln, tap: s.tap}
}
