package slowpath

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/streams"
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
// WSS dials with a net.Dialer of its own (sipgo v1.7 offers no hook): the
// resolver stops names, and the tombstones below keep an answer from
// looking for an address literal in Via.
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

// A WebSocket connection that ended leaves a tombstone in sipgo's pool
// under its remote address for tombstoneTTL. sipgo makes a request's server
// transaction on a goroutine of its own, after the reader has moved on:
// when the peer closes at once, its reader removes the connection from the
// pool first, and the transaction, finding none, falls back to the top
// Via (serverRequestConnection) and dials what the sender wrote. The
// guarded dialers above stop that for TCP, TLS and WS; WSS dials with a
// net.Dialer of its own (sipgo v1.7 offers no hook), so without the
// tombstone a WSS answer could still reach an address literal in Via. The
// transaction finds the tombstone by the request's source, first, and its
// answer fails there, as on the closed connection itself.
const tombstoneTTL = 10 * time.Second // sipgo's bound on making a server transaction's connection

var tombstonesLaid = metrics.GetOrCreateCounter(`pinhole_stream_tombstones_total`)

// entomb lays the tombstone of a stream connection that just ended. It
// runs on the connection's reader, before sipgo's reader learns of the
// end and removes the connection (which leaves a tombstone in place: it
// removes only what is still its own).
//
// Only WebSocket connections get one. Over TCP and TLS the guarded dialers
// already refuse, and pinhole's own requests to a device whose connection
// just ended may still dial it: a PBX that connects from its listening
// port is reached again that way, which a tombstone would stop for 10 s.
// A browser or WebSocket phone listens nowhere.
func (s *Server) entomb(kind streams.Kind, local, remote net.Addr) {
	if (kind != streams.WS && kind != streams.WSS) || s.ua == nil || local == nil || remote == nil {
		return
	}
	pool := s.ua.TransportLayer().Pool(strings.ToLower(kind.String()))
	if pool == nil {
		return
	}
	addr := remote.String()
	t := tombstone{local: local}
	pool.Add(addr, t)
	tombstonesLaid.Inc()
	// Removed only if still there: a new connection from the same address
	// replaces it in the pool.
	time.AfterFunc(tombstoneTTL, func() { _ = pool.CloseAndDelete(t, addr) })
}

// tombstone is the sip.Connection of a stream that has ended: every write
// fails, nothing is dialled.
type tombstone struct{ local net.Addr }

var errEnded = errors.New("stream connection ended: its answers are not sent elsewhere")

func (t tombstone) LocalAddr() net.Addr      { return t.local }
func (tombstone) WriteMsg(sip.Message) error { return errEnded }
func (tombstone) Ref(int) int                { return 1 }
func (tombstone) TryClose() (int, error)     { return 1, nil }
func (tombstone) Close() error               { return nil }

// flowOpen reports whether the connection of a stream flow is still in
// sipgo's pool, which holds a connection from its accept (or dial) until
// its reader ends; a tombstone is a connection that ended. The proxy sends
// nothing to a device whose connection is closed (proxy.Config.FlowOpen).
// Between this look-up and the write the connection may still close: sipgo
// would then dial, and for a WebSocket flow find the tombstone instead.
func (s *Server) flowOpen(f location.Flow) bool {
	if f.Transport == location.TransportUDP || s.ua == nil {
		return true
	}
	pool := s.ua.TransportLayer().Pool(strings.ToLower(f.Transport.String()))
	if pool == nil {
		return false
	}
	c := pool.Get(f.Remote.String())
	if c == nil {
		return false
	}
	_, ended := c.(tombstone)
	// Get took a reference; TryClose gives it back and closes nothing
	// while the connection's reader holds its own.
	_, _ = c.TryClose()
	return !ended
}
