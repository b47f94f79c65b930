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
