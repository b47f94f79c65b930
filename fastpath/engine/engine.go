// Package engine runs pinhole's UDP listeners as gnet event loops: one
// SO_REUSEPORT socket and one loop per core, each absorbing what it can
// ([absorb.Loop]) and handing the rest, same bytes and source address, to
// the slow path through a [handoff.Conn].
//
// gnet allocates a few objects per datagram before pinhole's code runs
// (its Conn and the remote address it converts; docs/architecture.md,
// "What the libraries do and don't do"); pinhole's part of OnTraffic
// allocates nothing. The engine only knows the fast path
// through the small [Absorber] interface, so gnet's share can be measured
// apart (BenchmarkGnetShare) and gnet replaced without touching absorb.
package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/pinhole-sip/pinhole/fastpath/absorb"
	"github.com/pinhole-sip/pinhole/fastpath/handoff"
	"github.com/pinhole-sip/pinhole/internal/capture"
	"github.com/pinhole-sip/pinhole/internal/mmsg"
	"github.com/pinhole-sip/pinhole/internal/scan"
)

// Absorber is what an event loop asks of the fast path for one datagram:
// a reply to send from the same socket, or nil to hand it off.
type Absorber interface {
	Absorb(data []byte, lim scan.Limits, local, remote netip.AddrPort, now time.Time) ([]byte, absorb.Decline)
}

// Config configures one listener.
type Config struct {
	Addr  netip.AddrPort // explicit port: each loop binds its own socket to it
	Loops int            // event loops (sockets); 0: one per CPU
	// NewLoop makes the absorbing state of one loop; nil: absorb nothing
	// (every datagram goes to the slow path through the queue).
	NewLoop   func() Absorber
	QueueSize int
	// Limits returns the slow path's current limits (a reload may change them).
	Limits     func() scan.Limits
	RecvBuffer int // SO_RCVBUF(FORCE) per socket
	// Batch is how many datagrams a loop moves per recvmmsg and sendmmsg
	// once gnet has woken it (batch.go); 0 or 1: gnet's one recvfrom and
	// one sendto per datagram.
	Batch int
	Log   *slog.Logger
	// Capture, when set, gets each refresh a loop answers and the answer
	// (docs/capture.md); each loop has its own tap. What is handed off is
	// the slow path's to capture.
	Capture *capture.Capturer
	// Challenge, when set, is asked about each REGISTER the loop does
	// not absorb: it appends to dst the 401 the slow path would answer
	// (the slow path's own raw challenge, its rules and its writer) and
	// reports whether it can vouch for it. A first registration's
	// credential-less REGISTER then never leaves the loop. r is the
	// loop's scan of data (with Limits), when its Absorber is a Scanner
	// and the scan accepted data; else nil, and the hook scans.
	Challenge func(dst, data []byte, r *scan.Register, remote netip.AddrPort) ([]byte, bool)
}

// Scanner is an Absorber that keeps its scan of the datagram it last
// declined: Scanned returns it (valid until the next Absorb), or nil when
// the scanner refused the datagram. The Challenge hook then reads the
// scan instead of scanning the same bytes again.
type Scanner interface {
	Scanned() *scan.Register
}

// Engine is one running listener.
type Engine struct {
	cfg      Config
	conn     *handoff.Conn
	eng      gnet.Engine
	done     chan error
	byFD     atomic.Pointer[[]*loopState]
	mu       sync.Mutex
	stopOnce sync.Once
	stopErr  error
}

type loopState struct {
	abs     Absorber
	scanner Scanner      // abs, when it keeps its scan; nil otherwise
	tap     *capture.Tap // nil: capture off
	// rx and tx move datagrams in batches (batch.go); nil with Batch ≤ 1.
	rx *mmsg.Receiver
	tx *mmsg.Sender
	// sent counts replies whose send failed (the socket buffer full):
	// per loop, read at scrape time.
	sendErrors atomic.Uint64
	handed     atomic.Uint64
	filtered   atomic.Uint64 // of handed: consumed by the hand-off's filter in the loop
	challenged atomic.Uint64 // REGISTERs answered by Config.Challenge
	chal       []byte        // Config.Challenge's reply (scratch)
	// batches and batched count the extra reads after gnet's own and the
	// datagrams they brought: batched ÷ batches is the mean batch.
	batches, batched atomic.Uint64
	dropped          atomic.Uint64 // truncated, or from no IP address
	// waits counts the times the loop, its socket empty, waited in ppoll
	// and a datagram came (batch.go): wake-ups gnet did not have to make.
	waits atomic.Uint64
	pfd   [1]unix.PollFd // waitReadable's arguments, kept off the heap
	pts   unix.Timespec
}

// handler is gnet's event handler.
type handler struct {
	gnet.BuiltinEventEngine
	e      *Engine
	booted chan gnet.Engine
}

// Start binds the listener's sockets, starts the loops and returns once
// they serve. The slow path serves Conn().
func Start(cfg Config) (*Engine, error) {
	if cfg.Addr.Port() == 0 {
		return nil, fmt.Errorf("fast path listener %v: needs an explicit port (one socket per loop)", cfg.Addr)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	// The hand-off exists before the loops run: they push into it from
	// their first datagram on.
	e := &Engine{cfg: cfg, done: make(chan error, 1), conn: handoff.New(cfg.Addr, cfg.QueueSize)}
	empty := []*loopState{}
	e.byFD.Store(&empty)
	h := &handler{e: e, booted: make(chan gnet.Engine, 1)}
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithReusePort(true),
		gnet.WithLogger(gnetLogger{cfg.Log}),
		// gnet reads each datagram into a loop buffer of this size.
		gnet.WithReadBufferCap(64 << 10),
	}
	if cfg.Loops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(cfg.Loops))
	}
	if cfg.RecvBuffer > 0 {
		opts = append(opts, gnet.WithSocketRecvBuffer(cfg.RecvBuffer))
	}
	network := "udp4"
	if cfg.Addr.Addr().Is6() && !cfg.Addr.Addr().Is4In6() {
		network = "udp6"
	}
	proto := network + "://" + cfg.Addr.String()
	go func() { e.done <- gnet.Run(h, proto, opts...) }()
	select {
	case eng := <-h.booted:
		e.eng = eng
	case err := <-e.done:
		return nil, fmt.Errorf("start fast path on %v: %w", cfg.Addr, err)
	}
	fd, err := e.eng.Dup()
	if err != nil {
		_ = e.eng.Stop(context.Background())
		return nil, fmt.Errorf("duplicate fast path socket %v: %w", cfg.Addr, err)
	}
	// Not a net.UDPConn: the runtime's poller would wake for every
	// datagram the loops receive (handoff/socket.go).
	if err := e.conn.SetSocket(fd); err != nil {
		_ = e.eng.Stop(context.Background())
		return nil, fmt.Errorf("fast path socket %v: %w", cfg.Addr, err)
	}
	return e, nil
}

// Conn is the slow path's side of this listener.
func (e *Engine) Conn() *handoff.Conn { return e.conn }

// Stop closes the loops and their sockets, then the hand-off. gnet's own
// Stop polls for the end every 500 ms; the engine's Run returning is the
// end, so Stop waits for that instead.
func (e *Engine) Stop(ctx context.Context) error {
	e.stopOnce.Do(func() {
		go func() { _ = e.eng.Stop(ctx) }()
		select {
		case err := <-e.done:
			if err != nil && !errors.Is(err, context.Canceled) {
				e.stopErr = fmt.Errorf("stop fast path on %v: %w", e.cfg.Addr, err)
			}
		case <-ctx.Done():
			e.stopErr = fmt.Errorf("stop fast path on %v: %w", e.cfg.Addr, ctx.Err())
		}
		_ = e.conn.Close()
	})
	return e.stopErr
}

// Counts reports replies that could not be sent, datagrams handed to the
// slow path and REGISTERs challenged through Config.Challenge, summed
// over the loops.
func (e *Engine) Counts() (sendErrors, handed, challenged uint64) {
	for _, l := range *e.byFD.Load() {
		if l != nil {
			sendErrors += l.sendErrors.Load()
			handed += l.handed.Load()
			challenged += l.challenged.Load()
		}
	}
	return sendErrors, handed, challenged
}

// handOff gives a datagram the loop does not answer to the slow path: to
// its read filter, run here, and what that leaves to the queue.
func (e *Engine) handOff(l *loopState, data []byte, remote netip.AddrPort) {
	l.handed.Add(1)
	if e.conn.Push(data, remote) == handoff.Filtered {
		l.filtered.Add(1)
	}
}

// Filtered reports, of the datagrams handed to the slow path, those its
// read filter consumed in the loops (handoff.Conn.SetFilter), summed over
// the loops: they never crossed the queue.
func (e *Engine) Filtered() (n uint64) {
	for _, l := range *e.byFD.Load() {
		if l != nil {
			n += l.filtered.Load()
		}
	}
	return n
}

// challenge returns the slow path's 401 for a REGISTER the loop did not
// absorb (d: why), or nil when there is none to send from here.
func (e *Engine) challenge(l *loopState, data []byte, remote netip.AddrPort, d absorb.Decline) []byte {
	if e.cfg.Challenge == nil || !bytes.HasPrefix(data, []byte("REGISTER ")) {
		return nil
	}
	var r *scan.Register
	if l.scanner != nil {
		if d == absorb.Scanned {
			// The raw challenge scans with the same limits: it would
			// refuse the datagram too.
			return nil
		}
		r = l.scanner.Scanned()
	}
	reply, ok := e.cfg.Challenge(l.chal[:0], data, r, remote)
	l.chal = reply[:0]
	if !ok {
		return nil
	}
	l.challenged.Add(1)
	return reply
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.booted <- eng
	return gnet.None
}

// OnTraffic handles one datagram. gnet hands UDP datagrams one by one,
// each with a fresh Conn that must not be kept. With batching on, the
// loop then reads what else is queued on its socket and sends every
// reply in one go (batch.go).
func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	e := h.e
	l := e.loop(c.Fd())
	data, _ := c.Next(-1)
	ua, ok := c.RemoteAddr().(*net.UDPAddr)
	if !ok || len(data) == 0 {
		return gnet.None
	}
	remote := ua.AddrPort()
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	if l.tx != nil {
		e.batch(l, c.Fd(), data, remote)
		return gnet.None
	}
	reply, d := []byte(nil), absorb.Miss
	if l.abs != nil {
		reply, d = l.abs.Absorb(data, e.cfg.Limits(), e.cfg.Addr, remote, time.Now())
	}
	if reply == nil {
		reply = e.challenge(l, data, remote, d)
	}
	if reply != nil {
		if _, err := c.Write(reply); err != nil {
			l.sendErrors.Add(1)
		} else if l.tap != nil {
			l.tap.Exchange(capture.UDP, e.cfg.Addr, remote, data, reply)
		}
		return gnet.None
	}
	e.handOff(l, data, remote)
	return gnet.None
}

// loop returns the state of the loop that owns socket fd; each loop has
// its own SO_REUSEPORT socket, so the descriptor names the loop. The
// first datagram of a loop creates its state (and forces its receive
// buffer past rmem_max, as the slow path's listener does).
func (e *Engine) loop(fd int) *loopState {
	if ls := *e.byFD.Load(); fd < len(ls) && ls[fd] != nil {
		return ls[fd]
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ls := *e.byFD.Load()
	if fd < len(ls) && ls[fd] != nil {
		return ls[fd]
	}
	next := make([]*loopState, max(len(ls), fd+1))
	copy(next, ls)
	st := &loopState{tap: e.cfg.Capture.NewTap()}
	if e.cfg.NewLoop != nil {
		st.abs = e.cfg.NewLoop()
		st.scanner, _ = st.abs.(Scanner)
	}
	if e.cfg.RecvBuffer > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, e.cfg.RecvBuffer); err != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, e.cfg.RecvBuffer)
		}
	}
	if e.cfg.Batch > 1 {
		family, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err == nil {
			st.rx = mmsg.NewReceiver(e.cfg.Batch, slotSize)
			st.tx = mmsg.NewSender(e.cfg.Batch, slotSize, family)
		} else {
			e.cfg.Log.Warn("fast path: no batched I/O on this socket", "addr", e.cfg.Addr, "error", err)
		}
	}
	next[fd] = st
	e.byFD.Store(&next)
	return st
}

// BatchCounts are the batched reads after gnet's own, the datagrams they
// brought, those dropped (truncated, or from no IP address), and the
// waits of an empty socket that a datagram ended (batch.go), summed over
// the loops.
func (e *Engine) BatchCounts() (reads, datagrams, dropped, waits uint64) {
	for _, l := range *e.byFD.Load() {
		if l != nil {
			reads += l.batches.Load()
			datagrams += l.batched.Load()
			dropped += l.dropped.Load()
			waits += l.waits.Load()
		}
	}
	return reads, datagrams, dropped, waits
}

// gnetLogger sends gnet's own log lines to pinhole's logger.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Info(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
