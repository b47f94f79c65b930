package streams

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is an accepted stream connection under the budget's deadlines.
// sipgo reads it from one goroutine and writes it from several.
type Conn struct {
	net.Conn           // what sipgo reads and writes: the socket, or TLS over it
	raw      net.Conn  // the socket
	tlsc     *tls.Conn // nil for TCP and WS
	b        *Budget
	kind     Kind
	src      netip.Addr
	accepted time.Time

	// Reader's own state.
	handshook bool
	seen      bool // a message or keepalive has begun
	fr        framer
	msgStart  time.Time

	last      atomic.Int64 // unix ns of the last activity: a message ended or was written, a keepalive
	busy      atomic.Bool  // a message is in progress: not to be shed
	theirRead atomic.Int64 // unix ns of a read deadline sipgo set (its WebSocket upgrade), 0 none

	closeOnce sync.Once
	closeErr  error
	counted   atomic.Bool // the close reason has been counted
	endOnce   sync.Once   // Options.Ended called
}

func (b *Budget) newConn(raw net.Conn, kind Kind, cfg *tls.Config, src netip.Addr) *Conn {
	now := time.Now()
	c := &Conn{Conn: raw, raw: raw, b: b, kind: kind, src: src, accepted: now}
	if kind.secure() {
		c.tlsc = tls.Server(raw, cfg)
		c.Conn = c.tlsc
	}
	if kind.websocket() {
		c.fr = &wsFramer{}
	} else {
		c.fr = &sipFramer{}
	}
	c.last.Store(now.UnixNano())
	openConns[kind].Add(1)
	b.add(c)
	return c
}

// noReason marks a deadline that is not pinhole's.
const noReason = numReasons

// deadline is when the next read must have returned, and why.
func (c *Conn) deadline() (time.Time, reason) {
	o := &c.b.o
	switch {
	case !c.seen:
		return c.accepted.Add(o.HandshakeTimeout), reasonHandshake
	case c.fr.busy():
		return c.msgStart.Add(o.MessageTimeout), reasonMessage
	default:
		return time.Unix(0, c.last.Load()).Add(o.IdleTimeout), reasonIdle
	}
}

// Read reads as the connection's one reader. Its first error is the
// connection's end, for sipgo as for pinhole: Options.Ended hears of it
// first.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.read(p)
	if err != nil {
		c.ended()
	}
	return n, err
}

// ended tells Options.Ended, once, that the connection ends: on the
// reader's first error, or when the peer's WebSocket Close frame arrives
// (sipgo's reader stops there without reading further).
func (c *Conn) ended() {
	if c.b.o.Ended != nil {
		c.endOnce.Do(func() { c.b.o.Ended(c.kind, c.raw.LocalAddr(), c.raw.RemoteAddr()) })
	}
}

func (c *Conn) read(p []byte) (int, error) {
	if c.tlsc != nil && !c.handshook {
		if err := c.handshake(); err != nil {
			return 0, err
		}
	}
	for {
		dl, why := c.deadline()
		if theirs := c.theirRead.Load(); theirs != 0 && theirs < dl.UnixNano() {
			dl, why = time.Unix(0, theirs), noReason
		}
		if err := c.Conn.SetReadDeadline(dl); err != nil {
			return 0, err
		}
		n, err := c.Conn.Read(p)
		if n > 0 {
			if over := c.account(p[:n]); over {
				c.shut(reasonTooBig)
				return 0, io.EOF
			}
		}
		if err != nil && why != noReason && errors.Is(err, os.ErrDeadlineExceeded) {
			if next, _ := c.deadline(); n == 0 && next.After(dl) {
				continue // a write was activity meanwhile: the idle clock moved
			}
			c.shut(why)
			// EOF, not the timeout: sipgo logs a read error at error level
			// per connection, and this close is counted already.
			return n, io.EOF
		}
		return n, err
	}
}

// account moves the framing on over bytes just read; true when the
// message passed the byte bound.
func (c *Conn) account(p []byte) bool {
	wasBusy := c.fr.busy()
	pr := c.fr.feed(p, c.b.o.MaxMessageBytes())
	if pr.closing {
		c.ended()
	}
	if pr.over {
		return true
	}
	now := time.Now()
	if pr.ended {
		c.last.Store(now.UnixNano())
	}
	if pr.began || pr.ended {
		c.seen = true
	}
	busy := c.fr.busy()
	// A message that began in these bytes (after another ended in them,
	// perhaps) is timed from now.
	if busy && (!wasBusy || pr.ended) {
		c.msgStart = now
	}
	c.busy.Store(busy)
	return false
}

func (c *Conn) handshake() error {
	_ = c.raw.SetDeadline(c.accepted.Add(c.b.o.HandshakeTimeout))
	err := c.tlsc.Handshake()
	_ = c.raw.SetDeadline(time.Time{})
	timedOut := errors.Is(err, os.ErrDeadlineExceeded)
	if h := c.b.o.Handshake; h != nil && !h(c.src, c.tlsc.ConnectionState(), err, timedOut) && err == nil {
		c.shut(reasonRefused)
		return io.EOF
	}
	if err != nil {
		if timedOut {
			c.shut(reasonHandshake)
		} else {
			c.shut(reasonTLS)
		}
		return io.EOF
	}
	c.handshook = true
	return nil
}

// Write bounds each write by message_timeout: a peer that stops reading
// would otherwise hold the writing goroutine, and the message, forever.
func (c *Conn) Write(p []byte) (int, error) {
	now := time.Now()
	_ = c.Conn.SetWriteDeadline(now.Add(c.b.o.MessageTimeout))
	n, err := c.Conn.Write(p)
	if err == nil {
		c.last.Store(now.UnixNano())
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		c.shut(reasonWrite)
	}
	return n, err
}

// SetDeadline and SetReadDeadline keep a read deadline of the caller's
// (sipgo bounds its WebSocket upgrade so) when it is earlier than
// pinhole's; writes have their own.
func (c *Conn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *Conn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		c.theirRead.Store(0)
	} else {
		c.theirRead.Store(t.UnixNano())
	}
	return nil
}

func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

// shut counts why pinhole closes the connection (once), then closes it.
func (c *Conn) shut(r reason) {
	if c.counted.CompareAndSwap(false, true) {
		closedBy[r].Inc()
	}
	_ = c.Close()
}

// Close closes the connection once and gives its place back.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.counted.Store(true) // a close by sipgo or the peer is no limit's
		// The socket first: tls.Conn.Close would write close_notify under
		// a 5 s deadline of its own, and sipgo closes a connection while
		// holding its connection pool's lock. SIP over TLS is framed by
		// Content-Length, so a missing close_notify truncates nothing.
		c.closeErr = c.raw.Close()
		if c.tlsc != nil {
			_ = c.tlsc.Close()
		}
		openConns[c.kind].Add(-1)
		c.b.release(c)
	})
	return c.closeErr
}
