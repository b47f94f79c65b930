package slowpath

import (
	"errors"
	"io"
	"net"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pinhole-sip/pinhole/internal/capture"
	"github.com/pinhole-sip/pinhole/slowpath/sanity"
)

// streamConnsBroken counts stream connections closed because no message
// boundary could be found (a bad Content-Length, a message over the limit).
var streamConnsBroken = metrics.GetOrCreateCounter(`pinhole_sanity_streams_closed_total`)

// streamRead is how much a sane stream connection reads at a time; its
// buffer grows up to the message limit only while a message needs it.
const streamRead = 4096

// SaneConn puts the sanity filter in front of sipgo on a stream (TCP, TLS)
// connection: it reads the peer's bytes, frames each message by its
// Content-Length (package sanity, Frame), vets it whole with the same
// sanity.Check as a UDP datagram, answers or drops what fails, and lets
// its reader (sipgo's stream parser) read only messages that passed, one
// at a time. sipgo's own read filter sees a stream in arbitrary pieces, so
// it cannot judge a message; this wrapper sees each one complete.
//
// Double-CRLF keepalives between messages are answered with one CRLF
// (RFC 5626 §3.5.1) and never reach sipgo. When the stream cannot be framed
// any further the answer is sent and Read reports io.EOF, so sipgo closes
// the connection.
//
// A SaneConn is a net.Conn; wrap it around any accepted connection, before
// or after other wrappers (connection limits, timeouts): it only needs Read
// to be called from one goroutine, which is how sipgo reads. Writes pass
// through untouched.
type SaneConn struct {
	net.Conn
	limits func() sanity.Limits
	// refused is told of every message refused, with its reason.
	refused func(sanity.Reason)
	// seen, when set, is told of every message framed, as it came,
	// before it is vetted: the capture (capture.go).
	seen func(msg []byte)

	buf  []byte // bytes read and not yet framed, buf[off:]
	off  int
	out  []byte // a vetted message not yet read by sipgo
	msg  []byte // storage of out
	rerr error  // the error that ended reading the peer
	crlf int    // CR/LF bytes seen in a row between messages
}

// NewSaneConn wraps c. limits is read for every message, so a reload's
// new limits apply at once; refused may be nil.
func NewSaneConn(c net.Conn, limits func() sanity.Limits, refused func(sanity.Reason)) *SaneConn {
	if refused == nil {
		refused = func(sanity.Reason) {}
	}
	return &SaneConn{Conn: c, limits: limits, refused: refused}
}

// Read returns bytes of messages that passed the sanity filter.
func (c *SaneConn) Read(b []byte) (int, error) {
	for len(c.out) == 0 {
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(b, c.out)
	c.out = c.out[n:]
	return n, nil
}

// next frames, vets and handles what is buffered until a message passes,
// reading from the peer when more is needed.
func (c *SaneConn) next() error {
	for {
		lim := c.limits()
		data := c.buf[c.off:]
		f := sanity.Frame(data, lim.MaxMessageBytes)
		switch f.Status {
		case sanity.FrameMore:
			if err := c.fill(lim.MaxMessageBytes); err != nil {
				return err
			}
			continue
		case sanity.FrameCRLF:
			c.crlf += f.Len
			for ; c.crlf >= 4; c.crlf -= 4 {
				if _, err := c.Conn.Write(crlfPong); err != nil {
					return err
				}
				keepaliveAnswered.Inc()
			}
			c.off += f.Len
			continue
		}
		c.crlf = 0
		switch f.Status {
		case sanity.FrameJunk:
			c.refused(sanity.ReasonNotSIP)
			c.off += f.Len
			continue
		case sanity.FrameBroken:
			v := sanity.CheckBroken(nil, data[:f.Len], f, lim)
			c.answer(v)
			if v.Action == sanity.Pass {
				// Frame and Check disagree: still no boundary to go on from.
				c.refused(sanity.ReasonBadContentLength)
			}
			streamConnsBroken.Inc()
			c.rerr = io.EOF
			c.buf, c.off = nil, 0
			return io.EOF
		}
		msg := data[:f.Len]
		if c.seen != nil {
			c.seen(msg)
		}
		if f.Status == sanity.FrameNoLength {
			c.msg = sanity.AppendContentLength(c.msg[:0], msg, f.Body)
			msg = c.msg
		}
		v := sanity.Check(nil, msg, lim)
		c.off += f.Len
		if v.Action != sanity.Pass {
			c.answer(v)
			continue
		}
		// msg may point into buf: it is not touched again before sipgo
		// has read all of out (fill runs only once out is empty).
		c.out = msg
		return nil
	}
}

// answer sends a refusal's reply, if it has one, and counts it.
func (c *SaneConn) answer(v sanity.Verdict) {
	if v.Action == sanity.Pass {
		return
	}
	if v.Action == sanity.Reply {
		_, _ = c.Conn.Write(v.Reply)
	}
	c.refused(v.Reason)
}

// fill reads more of the stream into buf. A message may need up to max
// bytes (and one more to tell that it is over), never more, so the buffer
// stays bounded by the limit whatever the peer sends.
func (c *SaneConn) fill(max int) error {
	if c.rerr != nil {
		return c.rerr
	}
	if c.off > 0 {
		n := copy(c.buf, c.buf[c.off:])
		c.buf, c.off = c.buf[:n], 0
	}
	want := len(c.buf) + streamRead
	if max > 0 && want > max+1 {
		want = max + 1
	}
	if want <= len(c.buf) {
		// Frame asks for more only below the limit; this is a safeguard.
		return io.ErrShortBuffer
	}
	if cap(c.buf) < want {
		nb := make([]byte, len(c.buf), want)
		copy(nb, c.buf)
		c.buf = nb
	}
	n, err := c.Conn.Read(c.buf[len(c.buf):want])
	c.buf = c.buf[:len(c.buf)+n]
	if err != nil {
		if n > 0 && !errors.Is(err, net.ErrClosed) {
			// Frame what did arrive first; the error comes back next time.
			c.rerr = err
			return nil
		}
		c.rerr = err
		return err
	}
	return nil
}

// saneListener wraps every accepted connection in a SaneConn.
type saneListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l saneListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

// saneStream is the wrapper listen applies to TCP and TLS connections:
// the current limits, and refusals counted like the UDP filter's.
func (s *Server) saneStream(c net.Conn) net.Conn {
	if s.tap == nil {
		return NewSaneConn(c, s.currentLimits, countRefused)
	}
	// With capture on, what sipgo and SaneConn write is captured below
	// SaneConn, and each framed message as SaneConn reads it (capture.go).
	local, remote := addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
	sc := NewSaneConn(&capturedConn{Conn: c, tap: s.tap, local: local, remote: remote}, s.currentLimits, countRefused)
	sc.seen = func(msg []byte) { s.tap.Capture(capture.Received, capture.TCP, remote, local, msg) }
	return sc
}

func (s *Server) currentLimits() sanity.Limits { return *s.ops.limits.Load() }

func countRefused(r sanity.Reason) { sanityVerdicts[r].Inc() }
