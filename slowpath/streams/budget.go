// Package streams bounds the TCP, TLS, WS and WSS connections pinhole
// accepts. It wraps the net.Listener handed to sipgo, which is unchanged:
// the accept loop counts connections per source and in total, keeps a
// reserve of file descriptors and survives their exhaustion; each
// accepted connection carries deadlines for the TLS handshake, the first
// message, every message once its first byte arrived, and idleness, and a
// bound on the bytes one message may take (docs/security.md, "Streams").
package streams

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options are the limits of every stream listener together.
type Options struct {
	MaxConnections   int
	MaxPerSource     int
	IdleTimeout      time.Duration
	HandshakeTimeout time.Duration
	MessageTimeout   time.Duration
	// FDReserve descriptors stay for the rest of the process.
	FDReserve int
	// MaxMessageBytes returns the current limits.max_message_bytes (a
	// reload may change it).
	MaxMessageBytes func() int
	// Ended, when set, is told of a connection's end by its reader before
	// the reader learns of it: sipgo then still holds the connection in
	// its pool, and what replaces it there is in place before anything
	// else looks (noreflect.go).
	Ended func(kind Kind, local, remote net.Addr)
	// Handshake, when set, is told the end of every TLS handshake: its
	// error (nil: done) and whether handshake_timeout cut it. The
	// connection stays only if it returns true (slowpath/certs decides
	// and counts).
	Handshake func(src netip.Addr, cs tls.ConnectionState, err error, timedOut bool) bool
}

// Budget is the accounting shared by every stream listener.
type Budget struct {
	o Options

	mu        sync.Mutex
	open      int
	perSource map[netip.Addr]int
	conns     map[*Conn]struct{}
}

// NewBudget makes the budget.
func NewBudget(o Options) *Budget {
	b := &Budget{o: o, perSource: map[netip.Addr]int{}, conns: map[*Conn]struct{}{}}
	currentLimit.Store(int64(b.Limit()))
	return b
}

// NoFile is the process's RLIMIT_NOFILE soft limit.
func NoFile() (int, bool) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil || r.Cur == unix.RLIM_INFINITY || r.Cur > 1<<30 {
		return 0, false
	}
	return int(r.Cur), true
}

// Limit is the cap on connections open at once: MaxConnections or, when
// the process may open fewer descriptors than that plus FDReserve, what
// the descriptors allow, so that connections are refused before accept(2)
// can fail for the metrics endpoint, the management API or outgoing
// sockets. The Go runtime raised the soft RLIMIT_NOFILE to the hard one at
// start (os package, since Go 1.19); the limit is read at every accept
// (one getrlimit(2), well under a microsecond) so a prlimit(1) on the
// running daemon takes effect.
func (b *Budget) Limit() int {
	limit := b.o.MaxConnections
	if n, ok := NoFile(); ok && n-b.o.FDReserve < limit {
		limit = max(n-b.o.FDReserve, 0)
	}
	return limit
}

// Open is how many accepted connections are open.
func (b *Budget) Open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

func (b *Budget) admit(src netip.Addr) bool {
	limit := b.Limit()
	currentLimit.Store(int64(limit))
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.open >= limit:
		if limit < b.o.MaxConnections {
			refusedReserve.Inc()
		} else {
			refusedMax.Inc()
		}
		return false
	case b.perSource[src] >= b.o.MaxPerSource:
		refusedPerSource.Inc()
		return false
	}
	b.open++
	b.perSource[src]++
	return true
}

func (b *Budget) add(c *Conn) {
	b.mu.Lock()
	b.conns[c] = struct{}{}
	b.mu.Unlock()
}

func (b *Budget) release(c *Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.conns, c)
	b.open--
	if n := b.perSource[c.src] - 1; n > 0 {
		b.perSource[c.src] = n
	} else {
		delete(b.perSource, c.src)
	}
}

// shed closes the connection that has been idle longest (no message in
// progress), to free a descriptor; false when every one is mid-message.
// It walks every connection, which is fine for the rare moments accept(2)
// finds no descriptor and bounded by the cap.
func (b *Budget) shed() bool {
	b.mu.Lock()
	var victim *Conn
	var oldest int64
	for c := range b.conns {
		if c.busy.Load() {
			continue
		}
		if last := c.last.Load(); victim == nil || last < oldest {
			victim, oldest = c, last
		}
	}
	b.mu.Unlock()
	if victim == nil {
		return false
	}
	// Closed outside the lock: Close releases the connection into b.
	victim.shut(reasonShed)
	return true
}

// Listen wraps ln, a TCP listener, for a transport: TLS and WSS get the
// TLS layer here (cfg), above the accounting and below the deadlines, so
// the handshake is timed and never runs in the accept loop.
func (b *Budget) Listen(ln net.Listener, kind Kind, cfg *tls.Config) net.Listener {
	return &listener{Listener: ln, b: b, kind: kind, tls: cfg}
}

type listener struct {
	net.Listener
	b    *Budget
	kind Kind
	tls  *tls.Config
}

// Longest pause of the accept loop after an error; net/http's server
// backs off the same way (5 ms doubling to 1 s) on temporary errors.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Accept returns the next connection within the budget. It returns an
// error only once the listener is closed: sipgo's accept loop (v1.7)
// ends for good on any error, so exhaustion of descriptors (EMFILE,
// ENFILE) or memory is waited out here, shedding the longest-idle
// connection to make room.
func (l *listener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				acceptFDErrors.Inc()
				l.b.shed()
			} else {
				// ECONNABORTED and the like: the peer gave up before accept.
				acceptOtherErrors.Inc()
			}
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		src := sourceOf(c.RemoteAddr())
		if !l.b.admit(src) {
			_ = c.Close()
			continue
		}
		accepted[l.kind].Inc()
		return l.b.newConn(c, l.kind, l.tls, src), nil
	}
}

func sourceOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return ip.Unmap()
		}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
