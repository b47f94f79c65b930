package bpf

import (
	"fmt"
	"io"

	"github.com/VictoriaMetrics/metrics"
)

var readErrors = metrics.GetOrCreateCounter("pinhole_xdp_counters_read_errors_total")

// WriteMetrics writes pinhole_xdp_verdicts_total{verdict="..."}, the sum
// over CPUs of each verdict counter, in Prometheus text format. It reads
// the per-CPU map at scrape time: nothing is counted in userspace per
// packet. A failed read counts in pinhole_xdp_counters_read_errors_total
// and writes no verdicts rather than a partial set.
func (c *Counters) WriteMetrics(w io.Writer) {
	sums, err := c.Sum()
	if err != nil {
		readErrors.Inc()
		return
	}
	for _, v := range Verdicts() {
		metrics.WriteCounterUint64(w, fmt.Sprintf(`pinhole_xdp_verdicts_total{verdict=%q}`, v.String()), sums[v])
	}
}

// RegisterMetrics publishes the verdict counters with the process's other
// metrics (metrics.WritePrometheus) until unregister is called.
func (c *Counters) RegisterMetrics() (unregister func()) {
	s := metrics.NewSet()
	s.RegisterMetricsWriter(c.WriteMetrics)
	metrics.RegisterSet(s)
	return func() { metrics.UnregisterSet(s, true) }
}
