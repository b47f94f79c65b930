package registrar

import (
	"strconv"

	"github.com/VictoriaMetrics/metrics"
)

// observe counts one answered REGISTER by status code. The slow path is
// not the per-packet hot path; a shared counter per answer is affordable.
func observe(code int) {
	metrics.GetOrCreateCounter(`pinhole_registrar_replies_total{code="` + strconv.Itoa(code) + `"}`).Inc()
}

// The usual answers exist from the start at 0, so that rate() and the
// dashboard see a series before the first of each is sent.
func init() {
	for _, code := range []int{200, 400, 401, 403, 423, 500, 503} {
		metrics.GetOrCreateCounter(`pinhole_registrar_replies_total{code="` + strconv.Itoa(code) + `"}`)
	}
}

// mPathIgnored counts REGISTERs whose Path was not stored: it came from a
// source outside the trust list (RFC 3327 §5).
var mPathIgnored = metrics.NewCounter(`pinhole_registrar_path_ignored_total`)
