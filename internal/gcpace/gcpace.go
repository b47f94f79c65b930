// Package gcpace sets how far Go's heap may outgrow its live data before
// the next garbage collection, from the size of that live data.
//
// Go's one setting, GOGC (100 by default), lets the heap grow by as much as
// it holds live: a pinhole holding a million bindings and a million users
// (some 450 MB live) collects only when the heap reaches 900 MB, and its
// resident memory settles near that mark for good, because the runtime
// returns to the system only what lies above it. That headroom buys
// nothing at such a size: what a registrar allocates per request is freed
// within the request, so the rate of garbage, not the bindings it holds,
// decides how much room the collector needs. A small pinhole, on the other
// hand, would collect every few megabytes of garbage under GOGC=100.
//
// A Pacer therefore lets the heap grow by Percent of the live heap, but
// never by less than Min: at a million bindings the heap settles at 1.5
// times its live data instead of twice it, and while less than Min is live
// the collector runs less often than Go's default would make it.
// After every collection it turns that into the runtime's GC percent. A
// GOGC in pinhole's environment is the operator's word and wins: the Pacer
// then does nothing.
//
// A Releaser (release.go) hands free heap back to the system once the
// recent allocation rate says it would stay unused: what an avalanche's
// collections freed, or the headroom of a quiet pinhole.
package gcpace

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// Config is the policy; Percent 0 leaves Go's own pacing alone.
type Config struct {
	Percent int   // headroom as a percent of the live heap
	Min     int64 // bytes of headroom at the least
}

// Pacer applies a Config after each collection it sees.
type Pacer struct {
	cfg     Config
	samples []metrics.Sample
	cycles  uint64
	percent atomic.Int64 // the GC percent last set (for the metric)
}

const (
	liveMetric   = "/gc/heap/live:bytes"
	cyclesMetric = "/gc/cycles/total:gc-cycles"
	// Bounds on the GC percent: below 10 the collector would run nearly
	// back to back; above 1000 a small heap's first collection would wait
	// for ten times its size in garbage.
	minPercent = 10
	maxPercent = 1000
)

// New returns a Pacer, or nil when there is nothing to do: Percent is 0 or
// GOGC is set in the environment.
func New(cfg Config) *Pacer {
	if cfg.Percent <= 0 || os.Getenv("GOGC") != "" {
		return nil
	}
	return &Pacer{cfg: cfg, samples: []metrics.Sample{{Name: liveMetric}, {Name: cyclesMetric}}}
}

// Percent reports the GC percent in force: Go's own (from GOGC or its
// default) until the Pacer first set one.
func (p *Pacer) Percent() int64 {
	if p == nil {
		return int64(gcPercentNow())
	}
	if v := p.percent.Load(); v != 0 {
		return v
	}
	return int64(gcPercentNow())
}

// LiveHeap is the live heap the last collection found: what pinhole
// holds, without the garbage of the moment or the headroom.
func LiveHeap() uint64 {
	s := []metrics.Sample{{Name: liveMetric}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// gcPercentNow reads the runtime's GC percent without changing it.
func gcPercentNow() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// Run adjusts the GC percent after each collection until ctx ends. A
// collection is seen within a second; the percent it sets paces the next.
func (p *Pacer) Run(ctx context.Context) {
	if p == nil {
		return
	}
	p.Step()
	every(ctx, time.Second, p.Step)
}

// every calls step once per d until ctx ends.
func every(ctx context.Context, d time.Duration, step func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			step()
		}
	}
}

// Step sets the GC percent for the live heap of the last collection, if a
// collection happened since the last Step (and on the first).
func (p *Pacer) Step() {
	metrics.Read(p.samples)
	live, cycles := p.samples[0].Value.Uint64(), p.samples[1].Value.Uint64()
	if cycles == p.cycles && p.percent.Load() != 0 {
		return
	}
	p.cycles = cycles
	want := Percent(p.cfg, live)
	if int64(want) != p.percent.Load() {
		debug.SetGCPercent(want)
		p.percent.Store(int64(want))
	}
}

// Percent is the GC percent that gives a heap of live bytes the headroom
// cfg asks for.
func Percent(cfg Config, live uint64) int {
	if live == 0 {
		return maxPercent
	}
	headroom := max(int64(live)*int64(cfg.Percent)/100, cfg.Min)
	pct := headroom * 100 / int64(live)
	return int(min(max(pct, minPercent), maxPercent))
}
