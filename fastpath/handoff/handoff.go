// Package handoff carries the datagrams the fast path does not answer to
// the slow path, through a bounded queue, without a second socket.
//
// A [Conn] is a net.PacketConn that sipgo serves as if it were its UDP
// listener (sipgo's ServeUDP accepts any PacketConn): ReadFrom returns the
// handed-off datagrams with their original bytes and source address, and
// WriteTo sends through a duplicate of the fast path's listening socket,
// so replies, forwarded requests and NAT pings leave from the address and
// port the device talks to (docs/architecture.md, "One address, one
// port"); the duplicate is driven with raw system calls, never through
// the runtime's poller (socket.go). Its LocalAddr is the listener's
// address, so sipgo's connection pool keeps one listener per local
// address and replies reuse it. SyscallConn gives the NAT pinger and the
// answer batches the socket for sendmmsg (reading it is refused).
//
// The slow path may run its read filter in the event loop instead
// ([Conn.SetFilter]): what the filter consumes (keepalives, refusals and
// the REGISTERs its own queue takes) then never crosses this queue, and
// sipgo's reader wakes only for what sipgo itself must parse.
//
// The queue sheds rather than livelocks (docs/architecture.md, "Shed load,
// never livelock"): past capacity a datagram is dropped and counted,
// lowest priority first. Responses and
// requests inside a dialog (ACK, BYE, CANCEL, or a To tag) have their own
// reserve of Size slots; new registrations, OPTIONS, new dialogs,
// keepalives and junk share 3/4 of Size, so a flood of them cannot starve
// calls in progress, and the fast path keeps absorbing meanwhile.
package handoff

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinhole-sip/pinhole/internal/sipheader"
)

// Priority classes of the queue.
type Priority uint8

const (
	Low  Priority = iota // new requests, keepalives, anything unrecognised
	High                 // responses and in-dialog requests
	numPriorities
)

func (p Priority) String() string {
	if p == High {
		return "high"
	}
	return "low"
}

// packet is one queued datagram; its buffer is pooled.
type packet struct {
	buf    []byte
	remote netip.AddrPort
}

// pooledCap covers nearly every SIP datagram; bigger ones grow a buffer
// once and keep it in the pool.
const pooledCap = 2048

var pool = sync.Pool{New: func() any { return &packet{buf: make([]byte, 0, pooledCap)} }}

// Conn is the slow path's view of one fast-path listener.
type Conn struct {
	local *net.UDPAddr
	out   *sendSocket // duplicate of the listening socket, for writes
	q     [numPriorities]chan *packet
	done  chan struct{}
	once  sync.Once
	shed  [numPriorities]atomic.Uint64 // only past capacity: not per packet
	// filter, when set, sees each datagram before the queue (SetFilter).
	filter atomic.Pointer[func(data []byte, remote netip.AddrPort) bool]
}

// New makes the Conn for the listener at local with a queue of size
// (at least 4). It can take datagrams at once; SetSocket must give it the
// socket to write through before anyone reads or writes it.
func New(local netip.AddrPort, size int) *Conn {
	size = max(size, 4)
	c := &Conn{local: net.UDPAddrFromAddrPort(local), done: make(chan struct{})}
	c.q[High] = make(chan *packet, size)
	c.q[Low] = make(chan *packet, size*3/4)
	return c
}

// SetSocket gives the Conn fd, a duplicate of the listening socket, to
// write through (socket.go); the Conn owns and closes it, also when
// SetSocket fails. Call it once, before serving the Conn.
func (c *Conn) SetSocket(fd int) error {
	out, err := newSendSocket(fd)
	if err != nil {
		_ = unix.Close(fd)
		return err
	}
	c.out = out
	return nil
}

// SetFilter makes Push offer each datagram to filter first, in the event
// loop that received it; a datagram filter reports as consumed is not
// queued. filter must not keep data (the loop's buffer) past its return,
// must never block, and must be safe to call from several loops at once.
// Call it before the Conn is served.
//
// Why: every datagram queued here wakes sipgo's reader, and the slow
// path's read filter, which runs there, hands most of what the fast path
// declines (first registrations) straight to a queue of its own: two
// goroutine wake-ups per REGISTER where one does. On one core each
// wake-up is a turn of the Go scheduler, or of the kernel's, that an
// event loop waits behind (docs/fastpath.md, "Threads and Ps").
func (c *Conn) SetFilter(filter func(data []byte, remote netip.AddrPort) bool) {
	c.filter.Store(&filter)
}

// Outcome is what Push did with a datagram.
type Outcome uint8

const (
	Queued   Outcome = iota // copied into the queue
	Filtered                // consumed by the filter (SetFilter)
	Shed                    // dropped: its priority's queue was full
)

// Push offers data from remote to the filter, if any, then queues a copy
// of it for the slow path. It never blocks: past capacity it drops the
// datagram and counts it.
func (c *Conn) Push(data []byte, remote netip.AddrPort) Outcome {
	if f := c.filter.Load(); f != nil && (*f)(data, remote) {
		return Filtered
	}
	prio := Classify(data)
	p := pool.Get().(*packet)
	p.buf = append(p.buf[:0], data...)
	p.remote = remote
	select {
	case c.q[prio] <- p:
		return Queued
	default:
		c.shed[prio].Add(1)
		pool.Put(p)
		return Shed
	}
}

// ReadFrom returns the next handed-off datagram, high priority first.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	// sipgo's reader calls back here once it has handled the previous
	// datagram: the moment to let an event loop run. A loop whose
	// epoll_wait returned while this goroutine held the only P (pinhole
	// pinned to one core) waits in the global run queue, and a reader
	// draining a full queue would keep it there until the scheduler's
	// 10 ms preemption: an absorbed refresh's latency. Yielding puts this
	// goroutine behind it.
	runtime.Gosched()
	var p *packet
	select {
	case p = <-c.q[High]:
	default:
		select {
		case p = <-c.q[High]:
		case p = <-c.q[Low]:
		case <-c.done:
			return 0, nil, net.ErrClosed
		}
	}
	n := copy(b, p.buf)
	addr := net.UDPAddrFromAddrPort(p.remote)
	if cap(p.buf) <= 4*pooledCap {
		pool.Put(p)
	}
	return n, addr, nil
}

// WriteTo sends from the listener's address and port.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) { return c.out.writeTo(b, addr) }

// Close ends ReadFrom and closes the duplicate socket. The fast path's
// own sockets are closed by its engine.
func (c *Conn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		close(c.done)
		err = nil
		if c.out != nil {
			err = c.out.close()
		}
	})
	return err
}

// LocalAddr is the listener's address, as sipgo keys its pool by it.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// ErrNoReadDeadline: the queue has no read deadline; sipgo sets none on
// a UDP listener.
var ErrNoReadDeadline = errors.New("handoff: read deadlines are not supported")

// SetDeadline sets the write deadline; read deadlines are not supported.
func (c *Conn) SetDeadline(t time.Time) error {
	if !t.IsZero() {
		return ErrNoReadDeadline
	}
	c.out.setWriteDeadline(t)
	return nil
}

// SetReadDeadline accepts only the zero time (no deadline).
func (c *Conn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		return ErrNoReadDeadline
	}
	return nil
}

// SetWriteDeadline bounds how long a write waits for room in the
// socket's buffer.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.out.setWriteDeadline(t)
	return nil
}

// SyscallConn gives the listening socket's descriptor for writing and
// control (the NAT pinger and the answer batches send with sendmmsg on
// it); its Read fails.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return rawConn{c.out}, nil }

// Queued reports the datagrams waiting per priority.
func (c *Conn) Queued(p Priority) int { return len(c.q[p]) }

// Shed reports the datagrams dropped past capacity per priority.
func (c *Conn) Shed(p Priority) uint64 { return c.shed[p].Load() }

var (
	_ net.PacketConn = (*Conn)(nil)
	_ syscall.Conn   = (*Conn)(nil)
)

// Classify puts responses and requests inside a dialog (ACK, BYE, CANCEL,
// or any request whose To carries a tag, RFC 3261 §12) in High, the rest
// in Low. It reads only the start line and the To header.
func Classify(data []byte) Priority {
	switch {
	case hasPrefix(data, "SIP/2.0 "):
		return High
	case hasPrefix(data, "ACK "), hasPrefix(data, "BYE "), hasPrefix(data, "CANCEL "):
		return High
	case hasPrefix(data, "REGISTER "), hasPrefix(data, "OPTIONS "):
		return Low
	}
	if toHasTag(data) {
		return High
	}
	return Low
}

// toHasTag finds the To (or t) header in the header section and reports
// whether its value has a tag parameter.
func toHasTag(data []byte) bool {
	for i := 0; i < len(data); {
		j := i
		for j < len(data) && data[j] != '\n' {
			j++
		}
		line := data[i:j]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 && i > 0 {
			return false // end of the header section
		}
		if v, ok := toValue(line); ok {
			return containsFold(v, ";tag=")
		}
		i = j + 1
	}
	return false
}

// toValue returns the value of line when line is a To header field.
func toValue(line []byte) ([]byte, bool) {
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return nil, false
	}
	name := line[:colon]
	for len(name) > 0 && (name[len(name)-1] == ' ' || name[len(name)-1] == '\t') {
		name = name[:len(name)-1]
	}
	if sipheader.Lookup(name) != sipheader.To {
		return nil, false
	}
	return line[colon+1:], true
}

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }

func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		ok := true
		for j := 0; j < len(s); j++ {
			if b[i+j]|0x20 != s[j]|0x20 {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
