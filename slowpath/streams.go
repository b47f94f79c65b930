package slowpath

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"

	"github.com/pinhole-sip/pinhole/slowpath/streams"
)

// newStreamBudget is the budget every TCP, TLS, WS and WSS listener shares
// (streams.*; docs/security.md, "Streams" and "Descriptors").
func (s *Server) newStreamBudget() *streams.Budget {
	sc := s.cfg.Streams
	b := streams.NewBudget(streams.Options{
		MaxConnections:   sc.MaxConnections,
		MaxPerSource:     sc.MaxPerSource,
		IdleTimeout:      sc.IdleTimeout,
		HandshakeTimeout: sc.HandshakeTimeout,
		MessageTimeout:   sc.MessageTimeout,
		FDReserve:        sc.FDReserve,
		MaxMessageBytes:  func() int { return s.ops.limits.Load().MaxMessageBytes },
		Ended:            s.streamEnded,
		Handshake: func(src netip.Addr, cs tls.ConnectionState, err error, timedOut bool) bool {
			return s.certs.Handshake(src, cs, err, timedOut) // set in New, before any listener
		},
	})
	nofile, _ := streams.NoFile()
	if b.Limit() < sc.MaxConnections {
		s.log.Warn("fewer stream connections than streams.max_connections: the descriptor limit leaves no more after streams.fd_reserve; raise LimitNOFILE",
			"cap", b.Limit(), "max_connections", sc.MaxConnections, "nofile", nofile, "fd_reserve", sc.FDReserve)
	} else {
		s.log.Info("stream connections", "cap", b.Limit(), "per_source", sc.MaxPerSource, "nofile", nofile)
	}
	return b
}

// listenStream opens a TCP listener for transport under the budget; TLS
// and WSS get their TLS layer inside it, where the handshake is timed.
func (s *Server) listenStream(transport, addr string) (net.Listener, error) {
	kind, _ := streams.ParseKind(transport)
	lc := net.ListenConfig{Control: freeBindControl} // a VIP the box may not hold (udpsock.go)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	var cfg *tls.Config
	if kind == streams.TLS || kind == streams.WSS {
		cfg = s.certs.ServerConfig()
	}
	return s.streams.Listen(ln, kind, cfg), nil
}

// streamEnded is told of each stream connection's end by its reader: its
// tombstone is laid (noreflect.go) and the bindings made over it that
// nothing else reaches leave the store (flowclose.go).
func (s *Server) streamEnded(kind streams.Kind, local, remote net.Addr) {
	s.entomb(kind, local, remote)
	s.conns.ended(kind, remote)
}
