package absorb

import (
	"io"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pinhole-sip/pinhole/internal/scan"
)

// WriteMetrics writes the fast path's counters in Prometheus text format:
// the loops' own counters summed at scrape time (nothing shared is
// written per packet), the fill and touch counts, and ristretto's metrics.
func (c *Cache) WriteMetrics(w io.Writer) {
	var declined [NumDeclines]uint64
	var scanned [scan.NumReasons]uint64
	var authd [numAuthWhy]uint64
	var again [numAgain]uint64
	c.loopsMu.Lock()
	for _, l := range c.loops {
		for i := range authd {
			authd[i] += l.cnt.auth[i].Load()
		}
		for i := range again {
			again[i] += l.cnt.again[i].Load()
		}
		for i := range declined {
			declined[i] += l.cnt.declined[i].Load()
		}
		for i := range scanned {
			scanned[i] += l.cnt.scan[i].Load()
		}
	}
	c.loopsMu.Unlock()
	metrics.WriteCounterUint64(w, "pinhole_fastpath_absorbed_total", declined[Absorbed])
	for i := range again {
		metrics.WriteCounterUint64(w, `pinhole_fastpath_retransmissions_total{entry="`+againNames[i]+`"}`, again[i])
	}
	for d := Decline(1); d < NumDeclines; d++ {
		if d == Scanned || d == Auth || d == Challenged {
			continue
		}
		metrics.WriteCounterUint64(w, `pinhole_fastpath_declined_total{reason="`+d.String()+`"}`, declined[d])
	}
	for r := scan.Reason(1); r < scan.NumReasons; r++ {
		metrics.WriteCounterUint64(w, `pinhole_fastpath_declined_total{reason="scan_`+r.String()+`"}`, scanned[r])
	}
	if c.opt.Digest != nil {
		metrics.WriteCounterUint64(w, "pinhole_fastpath_challenges_total", declined[Challenged])
		for a := authWhy(1); a < numAuthWhy; a++ {
			metrics.WriteCounterUint64(w, `pinhole_fastpath_declined_total{reason="auth_`+a.String()+`"}`, authd[a])
		}
	}
	for i := range c.m.fills {
		metrics.WriteCounterUint64(w, `pinhole_fastpath_fills_total{result="`+fillResultNames[i]+`"}`, c.m.fills[i].Load())
	}
	metrics.WriteCounterUint64(w, "pinhole_fastpath_fills_from_bytes_total", c.m.rawFills.Load())
	metrics.WriteCounterUint64(w, "pinhole_fastpath_invalidations_total", c.m.invalidations.Load())
	metrics.WriteCounterUint64(w, `pinhole_fastpath_touches_total{result="applied"}`, c.m.touched.Load())
	metrics.WriteCounterUint64(w, `pinhole_fastpath_touches_total{result="refused"}`, c.m.touchRefused.Load())
	if m := c.rc.Metrics; m != nil {
		metrics.WriteCounterUint64(w, "pinhole_fastpath_cache_hits_total", m.Hits())
		metrics.WriteCounterUint64(w, "pinhole_fastpath_cache_misses_total", m.Misses())
		metrics.WriteCounterUint64(w, "pinhole_fastpath_cache_keys_added_total", m.KeysAdded())
		metrics.WriteCounterUint64(w, "pinhole_fastpath_cache_keys_evicted_total", m.KeysEvicted())
		metrics.WriteCounterUint64(w, "pinhole_fastpath_cache_sets_rejected_total", m.SetsRejected())
		metrics.WriteCounterUint64(w, "pinhole_fastpath_cache_sets_dropped_total", m.SetsDropped())
	}
}

// Absorbed reports the refreshes absorbed so far by every loop.
func (c *Cache) Absorbed() uint64 {
	c.loopsMu.Lock()
	defer c.loopsMu.Unlock()
	var n uint64
	for _, l := range c.loops {
		n += l.cnt.declined[Absorbed].Load()
	}
	return n
}

// Fills reports how many fills have finished, whatever their result.
func (c *Cache) Fills() uint64 {
	var n uint64
	for i := range c.m.fills {
		n += c.m.fills[i].Load()
	}
	return n
}
