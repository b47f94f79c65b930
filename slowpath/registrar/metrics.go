package registrar

import (
	"strconv"

	"github.com/VictoriaMetrics/metrics"
)

// observe counts one answered REGISTER by status code. The slow path is
// not the per-packet hot path; a shared counter per answer is affordable,
// but naming it per answer was two allocations, so the usual codes'
// counters are kept.
func observe(code int) {
	if code >= 0 && code < len(usualReplies) && usualReplies[code] != nil {
		usualReplies[code].Inc()
		return
	}
	replies(code).Inc()
}

func replies(code int) *metrics.Counter {
	return metrics.GetOrCreateCounter(`pinhole_registrar_replies_total{code="` + strconv.Itoa(code) + `"}`)
}

// usualReplies are the counters of the usual answers, by code. They exist
// from the start at 0, so that rate() and the dashboard see a series
// before the first of each is sent.
var usualReplies [600]*metrics.Counter

func init() {
	for _, code := range []int{200, 400, 401, 403, 423, 500, 503} {
		usualReplies[code] = replies(code)
	}
}

// mPathIgnored counts REGISTERs whose Path was not stored: it came from a
// source outside the trust list (RFC 3327 §5).
var mPathIgnored = metrics.NewCounter(`pinhole_registrar_path_ignored_total`)
