package slowpath

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
)

// Responses never reflect (docs/security.md). sipgo (v1.7) answers a
// request over the connection it came on; when that connection is gone by
// the time the server transaction is made, its transport layer
// (serverRequestConnection) falls back to the top Via: it looks the
// sent-by host up in DNS and dials it, so any sender could make pinhole
// resolve a name it chose and connect wherever it wrote. pinhole opens a
// connection, or asks DNS, only for a request of its own: its sipgo client
// marks the context of each one, and the resolver and dialers handed to
// sipgo refuse every other. A response whose connection is gone is then
// not sent; the client's transaction timer deals with that (RFC 3261
// §17.1.1.2, §17.1.2.2), as with any lost message.

// ownKey marks the context of a request pinhole sends itself.
type ownKey struct{}

func own(ctx context.Context) context.Context { return context.WithValue(ctx, ownKey{}, true) }

func isOwn(ctx context.Context) bool { v, _ := ctx.Value(ownKey{}).(bool); return v }

var (
	reflectLookups = metrics.GetOrCreateCounter(`pinhole_stream_reflection_refused_total{step="lookup"}`)
	reflectDials   = metrics.GetOrCreateCounter(`pinhole_stream_reflection_refused_total{step="dial"}`)
)

var errNotOwn = errors.New("refused: pinhole connects and resolves only for requests of its own, never to answer (responses go back over the connection their request came on)")

// guardedResolver is sipgo's DNS resolver. The pure-Go resolver reads
// /etc/hosts without dialling, so a name found there still meets the
// dialers below.
func guardedResolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			if !isOwn(ctx) {
				reflectLookups.Inc()
				return nil, errNotOwn
			}
			var d net.Dialer
			return d.DialContext(ctx, network, address)
		},
	}
}

// refuseUnlessOwn runs after the socket is made and before connect(2): a
// refused dial sends nothing.
func refuseUnlessOwn(ctx context.Context, _, _ string, _ syscall.RawConn) error {
	if !isOwn(ctx) {
		reflectDials.Inc()
		return errNotOwn
	}
	return nil
}

// streamDialer is what sipgo's TCP and TLS transports dial with: its
// default (a one-minute timeout), plus the refusal.
func streamDialer(laddr net.Addr) net.Dialer {
	return net.Dialer{Timeout: time.Minute, LocalAddr: laddr, ControlContext: refuseUnlessOwn}
}

func wsDialer(net.Addr) ws.Dialer {
	d := net.Dialer{Timeout: time.Minute, ControlContext: refuseUnlessOwn}
	return ws.Dialer{Protocols: sip.WebSocketProtocols, NetDial: d.DialContext}
}

// guardedTransports are sipgo's stream transports with the dialers above.
// WSS dials with a net.Dialer of its own (sipgo v1.7 offers no hook), so a
// WSS answer could still reach an address literal in Via: the resolver
// stops names, and streams.Conn keeps the connection sipgo looks for.
func guardedTransports() sip.TransportsConfig {
	return sip.TransportsConfig{
		TCP: &sip.TransportTCP{DialerCreate: streamDialer},
		TLS: &sip.TransportTLS{TransportTCP: &sip.TransportTCP{DialerCreate: streamDialer}},
		WS:  &sip.TransportWS{DialerCreate: wsDialer},
	}
}

// ownRequests is the sipgo client's transaction requester: it marks every
// request pinhole sends as its own, then does what the client would have.
type ownRequests struct {
	tx *sip.TransactionLayer
	tp *sip.TransportLayer
}

var _ sipgo.ClientTransactionRequester = ownRequests{}

func (o ownRequests) Request(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	ctx = own(ctx)
	if req.IsAck() {
		// An ACK to a 2xx has no transaction (RFC 3261 §17.1.1.3): the
		// client hands it here from WriteRequest and drops the result.
		conn, err := o.tp.ClientRequestConnection(ctx, req)
		if err != nil {
			return nil, err
		}
		defer conn.TryClose()
		return nil, conn.WriteMsg(req)
	}
	tx, err := o.tx.Request(ctx, req)
	if err != nil {
		return nil, err
	}
	return tx, nil
}
