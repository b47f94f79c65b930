package fastpath

import (
	"io"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pinhole-sip/pinhole/fastpath/engine"
	"github.com/pinhole-sip/pinhole/fastpath/handoff"
)

// writeMetrics publishes, at scrape time, the hand-off queues and what
// the loops counted (nothing shared is written per packet).
func (f *FastPath) writeMetrics(w io.Writer) {
	f.mu.Lock()
	engines := append([]*engine.Engine(nil), f.engines...)
	f.mu.Unlock()
	var queued, shed [2]uint64
	var sendErrors, handed, filtered, challenged, batchReads, batchDatagrams, batchDropped, loopWaits uint64
	for _, e := range engines {
		c := e.Conn()
		for _, p := range []handoff.Priority{handoff.Low, handoff.High} {
			queued[p] += uint64(c.Queued(p))
			shed[p] += c.Shed(p)
		}
		s, h, ch := e.Counts()
		sendErrors += s
		handed += h
		filtered += e.Filtered()
		challenged += ch
		r, d, x, wt := e.BatchCounts()
		loopWaits += wt
		batchReads += r
		batchDatagrams += d
		batchDropped += x
	}
	for _, p := range []handoff.Priority{handoff.Low, handoff.High} {
		metrics.WriteGaugeUint64(w, `pinhole_fastpath_handoff_queued{priority="`+p.String()+`"}`, queued[p])
		metrics.WriteCounterUint64(w, `pinhole_fastpath_handoff_shed_total{priority="`+p.String()+`"}`, shed[p])
	}
	metrics.WriteCounterUint64(w, "pinhole_fastpath_handoff_total", handed)
	metrics.WriteCounterUint64(w, "pinhole_fastpath_handoff_filtered_total", filtered)
	metrics.WriteCounterUint64(w, "pinhole_fastpath_first_challenges_total", challenged)
	metrics.WriteCounterUint64(w, "pinhole_fastpath_send_errors_total", sendErrors)
	metrics.WriteCounterUint64(w, "pinhole_fastpath_batch_reads_total", batchReads)
	metrics.WriteCounterUint64(w, "pinhole_fastpath_batch_datagrams_total", batchDatagrams)
	metrics.WriteCounterUint64(w, "pinhole_fastpath_batch_dropped_total", batchDropped)
	metrics.WriteCounterUint64(w, "pinhole_fastpath_loop_waits_total", loopWaits)
	if f.cache != nil {
		f.cache.WriteMetrics(w)
	}
}

// Filtered reports, over every listener's loops, the handed-off
// datagrams the slow path's read filter consumed in the loop.
func (f *FastPath) Filtered() (n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.engines {
		n += e.Filtered()
	}
	return n
}

// Loops reports, over every listener's loops, the datagrams handed to the
// slow path and the REGISTERs answered with the slow path's challenge
// (engine.Config.Challenge).
func (f *FastPath) Loops() (handed, firstChallenges uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.engines {
		_, h, c := e.Counts()
		handed += h
		firstChallenges += c
	}
	return handed, firstChallenges
}
