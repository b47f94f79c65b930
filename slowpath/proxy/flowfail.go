package proxy

import (
	"errors"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// StatusFlowFailed is RFC 5626 §11.5's 430: the flow a request had to take
// to reach its target is gone.
const StatusFlowFailed = 430

// errFlowFailed says that a device reached over a connection is gone: its
// connection closed, and nothing else leads to it.
var errFlowFailed = errors.New("flow failed: the device's connection is closed and it listens nowhere pinhole may dial")

// flowUsable reports whether a request may be sent over flow f, whose
// target (the Contact, or the Request-URI of an in-dialog request) is
// next; behindNAT is what the registrar found of the device.
//
// A device reached over a connection is reachable only through that
// connection (RFC 5626 §5.3): a browser on WebSocket listens nowhere, and
// a phone behind NAT connected from a port its NAT opened for that
// connection alone. Dialling its address again would reach nothing — or
// whoever holds that address and port now — and would keep the caller
// waiting for a connect timeout. So once the connection is closed the
// flow has failed, and the request is not sent. The one exception is a
// server that registered over TCP or TLS from the address it listens on
// (a PBX that opens its connection from its listening port, with a
// Contact naming that same address): dialling it again is what RFC 3261
// §18.1 would do anyway.
//
// Over UDP there is no connection to lose: the NAT binding is the
// device's to keep open (keep-alives), and pinhole cannot see it close.
func (p *Proxy) flowUsable(f location.Flow, next *sip.Uri, behindNAT bool) bool {
	if f.Transport == location.TransportUDP || f.Transport == 0 || p.cfg.FlowOpen == nil || p.cfg.FlowOpen(f) {
		return true
	}
	if f.Transport != location.TransportTCP && f.Transport != location.TransportTLS {
		return false // WS and WSS: browsers and WebSocket phones listen nowhere
	}
	return !behindNAT && next != nil && listensAt(next, f)
}

// listensAt reports whether u names exactly f's remote address and port
// over f's transport: the peer connected from where it listens.
func listensAt(u *sip.Uri, f location.Flow) bool {
	if t := uriTransport(u); t != f.Transport.String() {
		return false
	}
	addr, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(u.Host, "["), "]"))
	if err != nil {
		return false // a name: pinhole will not resolve one to reach a device
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if f.Transport == location.TransportTLS {
			port = 5061
		}
	}
	return addr.Unmap() == f.Remote.Addr().Unmap() && port == int(f.Remote.Port())
}
