package streams

import (
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// Counters are shared atomics, touched once per connection or per
// refusal, never per byte.
var (
	openConns [numKinds]atomic.Int64

	accepted = perKind(`pinhole_stream_accepted_total{transport="%s"}`)

	refusedMax       = metrics.GetOrCreateCounter(`pinhole_stream_refused_total{reason="max_connections"}`)
	refusedPerSource = metrics.GetOrCreateCounter(`pinhole_stream_refused_total{reason="max_per_source"}`)
	refusedReserve   = metrics.GetOrCreateCounter(`pinhole_stream_refused_total{reason="fd_reserve"}`)

	acceptFDErrors    = metrics.GetOrCreateCounter(`pinhole_stream_accept_errors_total{error="fd_exhausted"}`)
	acceptOtherErrors = metrics.GetOrCreateCounter(`pinhole_stream_accept_errors_total{error="other"}`)

	closedBy = func() (c [numReasons]*metrics.Counter) {
		for r := range c {
			c[r] = metrics.GetOrCreateCounter(`pinhole_stream_closed_total{reason="` + reason(r).String() + `"}`)
		}
		return c
	}()
)

func init() {
	for k := range numKinds {
		metrics.GetOrCreateGauge(`pinhole_stream_connections{transport="`+Kind(k).String()+`"}`, func() float64 {
			return float64(openConns[k].Load())
		})
	}
	metrics.GetOrCreateGauge(`pinhole_stream_connections_limit`, func() float64 {
		return float64(currentLimit.Load())
	})
}

// currentLimit is the cap as the last accept computed it.
var currentLimit atomic.Int64

func perKind(format string) (c [numKinds]*metrics.Counter) {
	for k := range c {
		c[k] = metrics.GetOrCreateCounter(sprintf(format, Kind(k).String()))
	}
	return c
}

// reason is why pinhole closed a connection.
type reason uint8

const (
	reasonIdle      reason = iota // no message or keepalive for idle_timeout
	reasonHandshake               // TLS handshake, upgrade or first byte past handshake_timeout
	reasonTLS                     // the TLS handshake failed
	reasonMessage                 // one message took longer than message_timeout
	reasonWrite                   // one write took longer than message_timeout
	reasonTooBig                  // a message passed limits.max_message_bytes
	reasonShed                    // closed to free a descriptor when accept found none
	reasonRefused                 // Options.Handshake refused it (a trusted peer without a verified certificate)
	numReasons
)

func (r reason) String() string {
	return [...]string{"idle", "handshake_timeout", "tls_error", "message_timeout", "write_timeout", "too_big", "shed", "tls_refused"}[r]
}
