package midreg

import (
	"strconv"

	"github.com/VictoriaMetrics/metrics"
)

// counters are the mid-registrar's metrics (docs/midregistrar.md). The
// slow path counts per request: a REGISTER there costs microseconds of
// parsing and a store update, next to which a shared atomic is noise.
type counters struct {
	received, absorbed, relayed, deferred, unavailable *metrics.Counter
	deregs, deregFailures, panics                      *metrics.Counter
	challengesEvicted                                  *metrics.Counter
}

func newCounters(mode Mode) counters {
	l := `{mode="` + mode.String() + `"}`
	c := func(name string) *metrics.Counter { return metrics.GetOrCreateCounter(name + l) }
	return counters{
		received:      c("pinhole_midreg_registers_total"),
		absorbed:      c("pinhole_midreg_absorbed_total"),
		relayed:       c("pinhole_midreg_relayed_total"),
		deferred:      c("pinhole_midreg_renewals_deferred_total"),
		unavailable:   c("pinhole_midreg_unavailable_total"),
		deregs:        c("pinhole_midreg_deregistrations_total"),
		deregFailures: c("pinhole_midreg_deregistration_failures_total"),
		panics:        c("pinhole_midreg_panics_total"),
		// Challenges forgotten before challengeTTL because the table was
		// full: the retry of such a device goes to the first upstream.
		challengesEvicted: c("pinhole_midreg_challenges_evicted_total"),
	}
}

// upstreamFailed counts an attempt at upstream i that got no usable answer
// (timeout, transport error, 503).
func upstreamFailed(i int) {
	metrics.GetOrCreateCounter(`pinhole_midreg_upstream_failures_total{upstream="` + strconv.Itoa(i) + `"}`).Inc()
}

// upstreamReply counts a final response from an upstream by status code.
func upstreamReply(code int) {
	metrics.GetOrCreateCounter(`pinhole_midreg_upstream_replies_total{code="` + strconv.Itoa(code) + `"}`).Inc()
}
