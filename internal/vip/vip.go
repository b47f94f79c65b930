// Package vip tells whether this box holds a virtual address: the address
// an active/standby pair shares, which keepalived (VRRP) moves to the box
// that is to act (docs/cluster.md). The box holding it is active; the
// other is standby.
//
// It polls the interface addresses (one RTM_GETADDR dump through the
// standard library) every Interval rather than subscribing to netlink
// address notifications. A subscription would learn of the move at once
// instead of within Interval, but it must still dump the addresses at
// start, survive a full receive buffer (ENOBUFS: notices lost, dump again)
// and be re-opened on error; the poll is those few lines of code and its
// delay (200 ms by default) is small beside VRRP's own: keepalived declares
// the master dead only after three missed adverts plus a skew.
package vip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// DefaultInterval is how often the addresses are read when Options leaves
// it zero: a fraction of VRRP's own detection time (3 × advert_int, at
// least 300 ms with VRRPv3's shortest practical 100 ms advert).
const DefaultInterval = 200 * time.Millisecond

// The gauge exists once a Watcher starts: a box outside a pair shows none.
var (
	transitionsTotal = metrics.NewCounter("pinhole_cluster_transitions_total")
	errorsTotal      = metrics.NewCounter("pinhole_cluster_vip_check_errors_total")
)

// Options configure a Watcher.
type Options struct {
	Addr     netip.Addr    // the virtual address
	Interval time.Duration // between reads; DefaultInterval when zero
	Log      *slog.Logger
	// Local lists this box's addresses; nil reads the interfaces'. For
	// tests.
	Local func() ([]netip.Addr, error)
}

// Watcher follows whether the virtual address is on this box. Active is
// safe to call from any goroutine and costs one atomic load.
type Watcher struct {
	opts   Options
	active atomic.Bool
	gauge  *metrics.Gauge
	stop   chan struct{}
	done   sync.WaitGroup
	once   sync.Once
}

// Start reads the addresses once, so Active is right from its return, and
// then polls them until Close.
func Start(opts Options) (*Watcher, error) {
	if !opts.Addr.IsValid() {
		return nil, errors.New("vip: no address")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Local == nil {
		opts.Local = interfaceAddrs
	}
	opts.Addr = opts.Addr.Unmap()
	w := &Watcher{opts: opts, stop: make(chan struct{})}
	held, err := w.holds()
	if err != nil {
		return nil, err
	}
	w.active.Store(held)
	w.gauge = metrics.GetOrCreateGauge("pinhole_cluster_active", nil)
	w.gauge.Set(boolFloat(held))
	opts.Log.Info("virtual address", "vip", opts.Addr, "active", held)
	w.done.Add(1)
	go w.run()
	return w, nil
}

// Active reports whether the virtual address was on this box at the
// latest read.
func (w *Watcher) Active() bool { return w.active.Load() }

// Close stops polling; Active keeps its last answer.
func (w *Watcher) Close() {
	w.once.Do(func() { close(w.stop) })
	w.done.Wait()
}

func (w *Watcher) run() {
	defer w.done.Done()
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		held, err := w.holds()
		if err != nil {
			// Keep the last answer: a failed read says nothing about
			// where the address is.
			errorsTotal.Inc()
			continue
		}
		if w.active.Swap(held) != held {
			transitionsTotal.Inc()
			w.gauge.Set(boolFloat(held))
			w.opts.Log.Warn("virtual address moved", "vip", w.opts.Addr, "active", held)
		}
	}
}

func (w *Watcher) holds() (bool, error) {
	addrs, err := w.opts.Local()
	if err != nil {
		return false, fmt.Errorf("vip: read interface addresses: %w", err)
	}
	for _, a := range addrs {
		if a.Unmap() == w.opts.Addr {
			return true, nil
		}
	}
	return false, nil
}

// interfaceAddrs lists the addresses of every interface of this network
// namespace.
func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
