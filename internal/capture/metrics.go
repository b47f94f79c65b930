package capture

import (
	"io"

	"github.com/VictoriaMetrics/metrics"
)

// WriteMetrics writes the capture counters in Prometheus text format, per
// collector, and the taps' sampled-out counts summed at scrape time.
func (c *Capturer) WriteMetrics(w io.Writer) {
	metrics.WriteCounterUint64(w, "pinhole_capture_sampled_out_total", c.SampledOut())
	for _, co := range c.collectors {
		l := `{collector="` + co.dest.String() + `"`
		metrics.WriteCounterUint64(w, "pinhole_capture_captured_total"+l+"}", co.queued.Load())
		metrics.WriteCounterUint64(w, "pinhole_capture_sent_total"+l+"}", co.sent.Load())
		metrics.WriteCounterUint64(w, "pinhole_capture_dropped_total"+l+`,reason="queue_full"}`, co.dropped.Load())
		metrics.WriteCounterUint64(w, "pinhole_capture_dropped_total"+l+`,reason="too_large"}`, co.tooLarge.Load())
		metrics.WriteCounterUint64(w, "pinhole_capture_send_errors_total"+l+"}", co.sendErrors.Load())
		metrics.WriteGaugeUint64(w, "pinhole_capture_queue_length"+l+"}", uint64(len(co.queue)))
		metrics.WriteGaugeUint64(w, "pinhole_capture_queue_size"+l+"}", uint64(cap(co.queue)))
	}
}

// Stats are one collector's counters, for tests and the statistics call.
type Stats struct {
	Captured, Sent, Dropped, TooLarge, SendErrors uint64
	Queued                                        int
}

// Stats returns the counters of the collector at index i (in the order
// of Config.Collectors).
func (c *Capturer) Stats(i int) Stats {
	co := c.collectors[i]
	return Stats{
		Captured: co.queued.Load(), Sent: co.sent.Load(), Dropped: co.dropped.Load(),
		TooLarge: co.tooLarge.Load(), SendErrors: co.sendErrors.Load(), Queued: len(co.queue),
	}
}

// SampledOut returns the messages every tap left out by sampling.
func (c *Capturer) SampledOut() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n uint64
	for _, t := range c.taps {
		n += t.sampledOut.Load()
	}
	return n
}
