package certs

import (
	"github.com/VictoriaMetrics/metrics"
)

// Handshake results, as counted in pinhole_tls_handshakes_total.
const (
	resultOK           = "ok"
	resultFailed       = "failed"        // a TLS error: no common version or suite, bad record, client gave up
	resultTimeout      = "timeout"       // streams.handshake_timeout passed
	resultPeerVerified = "peer_verified" // a trusted peer's certificate verified against verify_peers.ca_file
	resultPeerRefused  = "peer_refused"  // a trusted peer's address without a certificate that verifies: closed
)

var (
	reloadsOK     = metrics.NewCounter(`pinhole_tls_certificate_loads_total{result="ok"}`)
	reloadsFailed = metrics.NewCounter(`pinhole_tls_certificate_loads_total{result="failed"}`)

	handshakes = map[string]*metrics.Counter{}
	// failReasons: what a failed handshake's error says, coarsely, so an
	// operator sees "old phones cannot agree a version" apart from noise.
	failReasons = map[string]*metrics.Counter{}
)

func init() {
	for _, r := range []string{resultOK, resultFailed, resultTimeout, resultPeerVerified, resultPeerRefused} {
		handshakes[r] = metrics.NewCounter(`pinhole_tls_handshakes_total{result="` + r + `"}`)
	}
	for _, r := range []string{reasonVersion, reasonCipher, reasonNotTLS, reasonEOF, reasonOther} {
		failReasons[r] = metrics.NewCounter(`pinhole_tls_handshake_errors_total{reason="` + r + `"}`)
	}
}
