// Package fastpath puts gnet event loops in front of the slow path's UDP
// listeners and absorbs REGISTER refreshes from prepared answers
// (docs/fastpath.md). [Attach] wires it to a slow path through the small
// [Host] interface; the packages below hold the parts: scan (the REGISTER
// scanner), absorb (cache, templates, replies, the hand-off of expiries to
// the location store), handoff (the bounded queue and the PacketConn sipgo
// serves) and engine (gnet). natping, the NAT pinger, sends through the
// same sockets.
package fastpath

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/fastpath/absorb"
	"github.com/pinhole-sip/pinhole/fastpath/engine"
	"github.com/pinhole-sip/pinhole/fastpath/handoff"
	"github.com/pinhole-sip/pinhole/internal/capture"
	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/scan"
)

// Host is what the fast path needs of the slow path (*slowpath.Server).
type Host interface {
	Store() location.Store
	SetUDPListen(func(netip.AddrPort) (net.PacketConn, error))
	SetCommitted(func(*sip.Request, *sip.Response, location.Flow))
	SetBindingChanged(func(aor string))
	SetSettle(func(aor string))
	// SetRawFill: the slow path's 200 written from bytes fills the
	// cache from the request's and the 200's bytes (absorb.PrepareRaw).
	SetRawFill(func(req []byte) (fill func(res []byte, flow location.Flow), ok bool))
	UDPLimits() (maxMessageBytes, maxHeaders int)
	// LoopChallenge appends to dst the 401 the slow path would answer a
	// REGISTER without credentials with (its raw challenge), when it can
	// vouch for it; the loops send it instead of handing the REGISTER off.
	// r is the loop's scan of data with UDPLimits' limits (nil: none).
	LoopChallenge(dst, data []byte, r *scan.Register, remote netip.AddrPort) ([]byte, bool)
	MidRegistrar() bool
	AuthEnabled() bool
	// Digest is the slow path's current digest check (nil without
	// authentication): the loops check refreshes with the same instance,
	// so a (nonce, nc) one path accepted is a replay for the other.
	Digest() *digest.Verifier
}

// The loops hand their scan of a declined REGISTER to the slow path's raw
// challenge (engine.Config.Challenge).
var _ engine.Scanner = (*absorb.Loop)(nil)

// RecvBuffer is each loop socket's receive buffer, as the slow path's own
// listener asks (slowpath/udpsock.go: 16 MiB absorbs refresh bursts).
const RecvBuffer = 16 << 20

// FastPath is the running fast path of one pinhole.
type FastPath struct {
	cfg   config.FastPath
	host  Host
	log   *slog.Logger
	cache *absorb.Cache // nil: the loops absorb nothing (see Attach)
	// capture gets the loops' refreshes and answers; nil: off.
	capture *capture.Capturer
	// Absorbing says why the fast path absorbs or not, for the log line.
	Absorbing string

	mu      sync.Mutex
	open    int // listeners not yet closed
	loops   int // event loops started, over every listener (reserveProcs)
	engines []*engine.Engine
	stop    chan struct{}
	flushed chan struct{}
	set     *metrics.Set
}

// Options adjust Attach.
type Options struct {
	// Refuse is absorb.Options.Refuse: evict or refuse at random (tests).
	Refuse func() bool
	// Capture gets what the loops absorb and answer (docs/capture.md);
	// nil: capture off.
	Capture *capture.Capturer
}

// Attach makes h open its UDP listeners through gnet loops and fills the
// absorption cache from its registrar. Call it before h starts. Whether
// refreshes are absorbed depends on the mode (docs/fastpath.md): in the
// standalone registrar, with digest authentication checked in the loop
// when it is on (h.Digest), in the mid-registrar in modes contact and aor
// (mirror relays everything).
func Attach(h Host, cfg *config.Config, log *slog.Logger, opt Options) (*FastPath, error) {
	f := &FastPath{cfg: cfg.FastPath, host: h, log: log, capture: opt.Capture, stop: make(chan struct{}), flushed: make(chan struct{})}
	mode, margin := absorb.Registrar, time.Duration(0)
	switch {
	case h.MidRegistrar() && cfg.MidRegistrar.Mode == "mirror":
		f.Absorbing = "no: the mid-registrar mirrors every REGISTER upstream"
	case h.MidRegistrar():
		f.Absorbing = "yes: mid-registrar refreshes whose upstream registration is not due"
		mode, margin = absorb.MidRegistrar, time.Duration(cfg.MidRegistrar.RenewalMargin)*time.Second
	case h.AuthEnabled():
		f.Absorbing = "yes: standalone registrar refreshes with their digest credentials checked in the loop, challenges answered there"
	default:
		f.Absorbing = "yes: standalone registrar refreshes"
	}
	if f.Absorbing[:3] == "yes" {
		ao := absorb.Options{
			Store: h.Store(), MaxEntries: int64(cfg.FastPath.CacheSize), Mode: mode, RenewalMargin: margin, Refuse: opt.Refuse,
		}
		if mode == absorb.Registrar && h.AuthEnabled() {
			ao.Digest = h.Digest
		}
		c, err := absorb.New(ao)
		if err != nil {
			return nil, err
		}
		f.cache = c
		h.SetCommitted(c.Fill)
		h.SetBindingChanged(c.Invalidate)
		h.SetSettle(c.Settle)
		h.SetRawFill(c.PrepareRaw)
		go func() {
			c.Run(f.stop)
			close(f.flushed)
		}()
	} else {
		close(f.flushed)
	}
	h.SetUDPListen(f.listen)
	f.set = metrics.NewSet()
	f.set.RegisterMetricsWriter(f.writeMetrics)
	metrics.RegisterSet(f.set)
	return f, nil
}

// listener is the slow path's socket for one fast-path listener: closing
// it stops that listener's loops.
type listener struct {
	*handoff.Conn
	f   *FastPath
	eng *engine.Engine
	sync.Once
}

func (l *listener) Close() error {
	var err error
	l.Do(func() { err = l.f.closeListener(l.eng) })
	return err
}

func (f *FastPath) listen(addr netip.AddrPort) (net.PacketConn, error) {
	loops := f.cfg.Loops
	if loops == 0 {
		loops = runtime.NumCPU()
	}
	ec := engine.Config{
		Addr: addr, Loops: loops, QueueSize: f.cfg.QueueSize, RecvBuffer: RecvBuffer, Batch: f.cfg.Batch, Log: f.log,
		Capture: f.capture,
		// Every REGISTER the loops do not absorb may be a first
		// registration's: its challenge needs no state (the nonce is an
		// HMAC), so it is answered in the loop with the slow path's own
		// rules and bytes (docs/fastpath.md, "First registrations").
		Challenge: f.host.LoopChallenge,
		Limits: func() scan.Limits {
			b, h := f.host.UDPLimits()
			return scan.Limits{MaxMessageBytes: b, MaxHeaders: h}
		},
	}
	if f.cache != nil {
		ec.NewLoop = func() engine.Absorber { return f.cache.NewLoop() }
	}
	f.mu.Lock()
	f.loops += loops
	reserveProcs(f.loops, f.log)
	f.mu.Unlock()
	e, err := engine.Start(ec)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.engines = append(f.engines, e)
	f.open++
	f.mu.Unlock()
	return &listener{Conn: e.Conn(), f: f, eng: e}, nil
}

// closeListener stops one listener; after the last one, the refreshes
// absorbed so far reach the store (the slow path closes its store after
// its listeners).
func (f *FastPath) closeListener(e *engine.Engine) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.Stop(ctx)
	f.mu.Lock()
	f.open--
	last := f.open == 0
	f.mu.Unlock()
	if last {
		f.stopFlusher()
	}
	if err != nil {
		return fmt.Errorf("close fast path listener: %w", err)
	}
	return nil
}

func (f *FastPath) stopFlusher() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.flushed
}

// Close stops what is left (after the slow path closed its listeners,
// nothing is), unpublishes the metrics and frees the cache.
func (f *FastPath) Close() {
	f.mu.Lock()
	engines := f.engines
	f.engines = nil
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, e := range engines {
		_ = e.Stop(ctx) // a second Stop of a stopped engine is harmless
	}
	f.stopFlusher()
	metrics.UnregisterSet(f.set, true)
	if f.cache != nil {
		f.cache.Close()
	}
}

// Cache is the absorption cache (nil when nothing is absorbed).
func (f *FastPath) Cache() *absorb.Cache { return f.cache }
