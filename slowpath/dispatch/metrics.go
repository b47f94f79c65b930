package dispatch

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
)

// Counters of every dispatcher in the process, listed in docs/dispatch.md.
// They move once per request, probe or state change, never per packet.
var (
	mMatched       = metrics.NewCounter(`pinhole_dispatch_rule_matches_total`)
	mNoDestination = metrics.NewCounter(`pinhole_dispatch_no_destination_total`)
	mFailovers     = metrics.NewCounter(`pinhole_dispatch_failovers_total`)
	mNodeDown      = metrics.NewCounter(`pinhole_dispatch_node_down_total`)
	mNodeUp        = metrics.NewCounter(`pinhole_dispatch_node_up_total`)
	mProbeOK       = metrics.NewCounter(`pinhole_dispatch_probes_total{result="ok"}`)
	mProbeFailed   = metrics.NewCounter(`pinhole_dispatch_probes_total{result="failed"}`)
	mCallsExpired  = metrics.NewCounter(`pinhole_dispatch_calls_expired_total`)
	mStickyFull    = metrics.NewCounter(`pinhole_dispatch_challenge_table_full_total`)
	mViewRebuilt   = metrics.NewCounter(`pinhole_dispatch_dns_changes_total`)
)

// newMetrics makes the set of per-destination gauges, read at scrape
// time. They live in a set of their own so that a dispatcher built again
// (a test, a reload) replaces them instead of clashing; a node resolved
// from a name later adds its gauges to it.
func (d *Dispatcher) newMetrics() *metrics.Set {
	s := metrics.NewSet()
	metrics.RegisterSet(s)
	return s
}

// addNodeGauges registers n's gauges. A node is made once per address of
// its set, so no gauge is registered twice.
func (d *Dispatcher) addNodeGauges(n *Node) {
	s := d.metrics
	labels := fmt.Sprintf(`{set=%q,destination=%q}`, n.Set, n.URI)
	s.NewGauge(`pinhole_dispatch_destination_up`+labels, func() float64 {
		if n.Usable() {
			return 1
		}
		return 0
	})
	s.NewGauge(`pinhole_dispatch_destination_state`+labels, func() float64 { return float64(n.State()) })
	s.NewGauge(`pinhole_dispatch_destination_drained`+labels, func() float64 {
		if n.drained.Load() {
			return 1
		}
		return 0
	})
	s.NewGauge(`pinhole_dispatch_destination_weight`+labels, func() float64 { return float64(n.weight.Load()) })
	s.NewGauge(`pinhole_dispatch_active_calls`+labels, func() float64 { return float64(n.calls.Load()) })
}

func (d *Dispatcher) addSetGauges() {
	d.metrics.NewGauge(`pinhole_dispatch_calls_tracked`, func() float64 { return float64(d.calls.len()) })
}
