package main

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pinhole-sip/pinhole/bpf"
	"github.com/pinhole-sip/pinhole/fastpath"
	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/logging"
	"github.com/pinhole-sip/pinhole/slowpath"
	"github.com/pinhole-sip/pinhole/slowpath/ban"
	"github.com/pinhole-sip/pinhole/slowpath/natping"
)

// edge is what pinhole puts around the slow path: the XDP program with the
// bans that feed its blocklist, the NAT pinger, and the userspace fast
// path's event loops. They start and stop together because they hook into
// the slow path (package slowpath, hooks.go) and the pinger and bans lean
// on the kernel program when there is one.
type edge struct {
	xdp               *bpf.Objects // nil without XDP
	unregisterMetrics func()
	pinger            *natping.Pinger
	overlimit         *ban.Overlimit
	loops             *fastpath.FastPath // gnet event loops in front of the UDP listeners; nil when fastpath.enabled is false
	stopCapture       func()             // the HEP capture (capture.go)
	cancel            context.CancelFunc
	done              sync.WaitGroup
}

// startEdge loads and attaches XDP (or logs one line saying pinhole runs
// without it), sets the slow path's hooks for the pinger and the ban feed,
// and attaches the event loops when fastpath.enabled. The pinger starts
// with runBackground, once the sockets are bound.
func startEdge(cfg *config.Config, srv *slowpath.Server, log *slog.Logger) (*edge, error) {
	e := &edge{unregisterMetrics: func() {}, stopCapture: func() {}}
	// Capture first: the slow path and the loops take its taps as they start.
	capt, stopCapture, err := startCapture(cfg.Capture, log.With(logging.ComponentKey, "capture"))
	if err != nil {
		return nil, err
	}
	e.stopCapture = stopCapture
	srv.SetCapture(capt)
	xc := bpf.Config{Interfaces: cfg.XDP.Interfaces, Mode: cfg.XDP.Mode, Rate: cfg.XDP.Rate, Burst: cfg.XDP.Burst, Signatures: cfg.XDP.Signatures}
	seen := map[uint16]bool{}
	for _, l := range cfg.Listen.Listeners() {
		if l.Transport == "UDP" && !seen[l.Addr.Port()] {
			seen[l.Addr.Port()] = true
			xc.Ports = append(xc.Ports, l.Addr.Port())
		}
	}
	for _, p := range cfg.XDP.Blocklist {
		xc.Blocklist = append(xc.Blocklist, netip.MustParsePrefix(p)) // validated by config
	}
	if len(xc.Ports) == 0 {
		xc.Mode = "off" // only UDP reaches the program's SIP path
	}
	if e.xdp, err = bpf.Start(xc, log.With(logging.ComponentKey, "xdp")); err != nil {
		return nil, err
	}
	if e.xdp != nil {
		e.unregisterMetrics = e.xdp.Counters.RegisterMetrics()
		if b := cfg.XDP.Ban; b.AuthFailures > 0 {
			tr, err := ban.New(ban.Config{Failures: b.AuthFailures, Window: b.Window, Duration: b.Duration, Blocker: e.xdp.Blocklist})
			if err != nil {
				e.stop()
				return nil, err
			}
			srv.SetAuthFailure(func(src netip.Addr) { tr.Failure(src) })
		}
		if b := cfg.XDP.Ban; b.RateLimitedFor > 0 && cfg.XDP.Rate > 0 {
			counters := e.xdp.Counters
			e.overlimit = &ban.Overlimit{
				For: b.RateLimitedFor, Duration: b.Duration, Blocker: e.xdp.Blocklist, Buckets: e.xdp.Buckets, Log: log.With(logging.ComponentKey, "ban"),
				Refused: func() (uint64, error) {
					sums, err := counters.Sum()
					return sums[bpf.VerdictRateLimited], err
				},
			}
		}
	}
	if n := cfg.NATPing; n.Interval > 0 && len(cfg.Listen.UDP) > 0 {
		method, err := natping.ParseMethod(n.Method)
		if err != nil {
			e.stop()
			return nil, err
		}
		pc := natping.Config{
			Interval: n.Interval, Method: method, MaxMissed: n.MaxMissed,
			Host: cfg.Advertise.Host, Store: srv.Store(), Sockets: srv.UDPSocket, Log: log.With(logging.ComponentKey, "natping"),
			ActsFor: srv.ActsFor,
		}
		if e.xdp != nil {
			pc.Kernel = bpf.Liveness{NATPings: e.xdp.NATPings, Alive: e.xdp.Alive}
		}
		if e.pinger, err = natping.New(pc); err != nil {
			e.stop()
			return nil, err
		}
		// Without XDP (or for an interface without it) the answers reach
		// userspace; the pinger claims them before sipgo sees them.
		srv.SetIntercept(e.pinger.Reply)
	}
	if cfg.FastPath.Enabled {
		if e.loops, err = fastpath.Attach(srv, cfg, log, fastpath.Options{Capture: capt}); err != nil {
			e.stop()
			return nil, err
		}
		log.Info("userspace fast path on", "loops_per_listener", cfg.FastPath.Loops, "absorbing", e.loops.Absorbing)
	}
	return e, nil
}

// runBackground starts the pinger and the over-limit watch.
func (e *edge) runBackground() {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	if e.pinger != nil {
		e.done.Go(func() { e.pinger.Run(ctx) })
	}
	if e.overlimit != nil {
		e.done.Go(func() { _ = e.overlimit.Run(ctx) }) // configured above: cannot fail
	}
}

// stopBackground stops pinging and watching before the sockets close.
func (e *edge) stopBackground() {
	if e.cancel != nil {
		e.cancel()
		e.done.Wait()
		e.cancel = nil
	}
}

// stop stops the pinger, closes the event loops and detaches XDP: the
// program only ever runs while pinhole does (its BPF links die with the
// process in any case).
func (e *edge) stop() {
	e.stopBackground()
	e.unregisterMetrics()
	if e.loops != nil {
		e.loops.Close()
		e.loops = nil
	}
	if e.xdp != nil {
		_ = e.xdp.Close()
		e.xdp = nil
	}
	e.stopCapture()
	e.stopCapture = func() {}
}

// reloadXDP brings the XDP maps from prev to next: the rate limit, the
// scanner signatures and the configured blocklist prefixes (entries a ban
// or the API added are left alone). Interfaces and mode wait for a
// restart. Without the program nothing is applied.
func (e *edge) reloadXDP(prev, next config.XDP) (applied []string, err error) {
	if e.xdp == nil {
		return nil, nil
	}
	if prev.Rate != next.Rate || prev.Burst != next.Burst {
		if err := e.xdp.RateLimit.Set(next.Rate, next.Burst); err != nil {
			return applied, err
		}
		applied = append(applied, "xdp.rate")
	}
	if !slices.Equal(prev.Signatures, next.Signatures) {
		if err := e.xdp.Signatures.Set(next.Signatures); err != nil {
			return applied, err
		}
		applied = append(applied, "xdp.signatures")
	}
	if !slices.Equal(prev.Blocklist, next.Blocklist) {
		for _, p := range prev.Blocklist {
			if !slices.Contains(next.Blocklist, p) {
				if err := e.xdp.Blocklist.Remove(netip.MustParsePrefix(p)); err != nil { // validated by config
					return applied, err
				}
			}
		}
		for _, p := range next.Blocklist {
			if err := e.xdp.Blocklist.Add(netip.MustParsePrefix(p), time.Time{}); err != nil {
				return applied, err
			}
		}
		applied = append(applied, "xdp.blocklist")
	}
	return applied, nil
}
