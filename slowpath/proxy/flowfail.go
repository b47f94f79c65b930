package proxy

import (
	"errors"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// StatusFlowFailed is RFC 5626 §11.5's 430: the flow a request had to take
// to reach its target is gone.
const StatusFlowFailed = 430

// errFlowFailed says that a device reached over a connection is gone.
var errFlowFailed = errors.New("flow failed: the device's connection is closed")

// flowUsable reports whether a request may be sent over flow f.
//
// A device reached over a connection is reachable only through that
// connection (RFC 5626 §5.3): a browser on WebSocket listens nowhere, and
// a phone connected from a port its NAT (or its own stack) chose for that
// connection alone. Dialling its address again would reach nothing — or
// whoever holds that address and port now — and would keep the caller
// waiting for a connect timeout. So once the connection is closed the
// flow has failed and the request is not sent, as Kamailio's usrloc does
// with handle_lost_tcp. A server that wants to be called over TCP keeps
// its connection open, or registers again when it reconnects.
//
// Over UDP there is no connection to lose: the NAT binding is the
// device's to keep open (keep-alives), and pinhole cannot see it close.
func (p *Proxy) flowUsable(f location.Flow) bool {
	return f.Transport == location.TransportUDP || f.Transport == 0 || p.cfg.FlowOpen == nil || p.cfg.FlowOpen(f)
}
