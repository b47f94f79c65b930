package dispatch

import (
	"context"
	"sync"
	"time"
)

// Pinger sends one OPTIONS to a destination and returns the final status,
// or an error when none came (timeout, transport error). The proxy
// implements it with pinhole's own sockets, so a probe leaves from the
// address the farm sees calls from.
type Pinger interface {
	Ping(ctx context.Context, t Target) (int, error)
}

// PingerFunc adapts a function to Pinger.
type PingerFunc func(ctx context.Context, t Target) (int, error)

// Ping calls f.
func (f PingerFunc) Ping(ctx context.Context, t Target) (int, error) { return f(ctx, t) }

// Probe probes every destination once, all at the same time, and waits
// for the answers. A final response below 500 means the node is alive
// (a 404 or 405 to OPTIONS still proves a SIP stack answers); a 5xx, a
// timeout or a transport error is a failure.
func (d *Dispatcher) Probe(ctx context.Context, p Pinger) {
	var wg sync.WaitGroup
	for _, n := range d.nodes() {
		if n.State() == Disabled {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.probeOne(ctx, p, n)
		}()
	}
	wg.Wait()
}

func (d *Dispatcher) probeOne(ctx context.Context, p Pinger, n *Node) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Probe.Timeout)
	defer cancel()
	code, err := p.Ping(ctx, n.Target)
	if ctx.Err() != nil && err == nil {
		err = ctx.Err()
	}
	n.lastProbe.Store(d.now().UnixNano())
	if err != nil {
		code = 0
	}
	n.lastCode.Store(int32(code))
	if err != nil || code >= 500 {
		mProbeFailed.Inc()
		d.probeFailed(n)
		return
	}
	mProbeOK.Inc()
	d.probeOK(n)
}

// Run probes every Probe.Interval until ctx ends, and sweeps the call and
// challenge tables. With probing off it only sweeps, once a minute.
func (d *Dispatcher) Run(ctx context.Context, p Pinger) {
	every := d.cfg.Probe.Interval
	if every == 0 {
		every = time.Minute
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if d.cfg.Probe.Interval != 0 {
			d.Probe(ctx, p)
		}
		d.Sweep()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
