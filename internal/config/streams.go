package config

import "time"

// Streams bounds what TCP, TLS, WS and WSS connections may hold: how many,
// from one address and in all, for how long without a message, and how long
// a handshake or one message may take (docs/security.md, "Streams").
type Streams struct {
	// MaxConnections caps the stream connections of every listener
	// together; the descriptor budget (FDReserve) may lower it further.
	MaxConnections int `yaml:"max_connections"`
	// MaxPerSource caps the connections of one source address.
	MaxPerSource int `yaml:"max_per_source"`
	// IdleTimeout closes a connection that carried no complete SIP message
	// and no CRLF keepalive (RFC 5626 §3.5.1) in either direction for this
	// long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// HandshakeTimeout bounds everything before the first SIP message
	// starts: the TLS handshake, the WebSocket upgrade, the first byte.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MessageTimeout bounds one message from its first byte to its last
	// (a slowloris sender), and one write to a peer that does not read.
	MessageTimeout time.Duration `yaml:"message_timeout"`
	// FDReserve is how many file descriptors stay for everything but
	// accepted stream connections: listeners, UDP sockets, the metrics and
	// management endpoints, outgoing connections, the database.
	FDReserve int `yaml:"fd_reserve"`
}

func (s Streams) validate() error {
	if s.MaxConnections < 1 || s.MaxConnections > 1_000_000 {
		return bad("streams.max_connections", "%d: must be between 1 and 1000000", s.MaxConnections)
	}
	if s.MaxPerSource < 1 || s.MaxPerSource > s.MaxConnections {
		return bad("streams.max_per_source", "%d: must be between 1 and max_connections (%d)", s.MaxPerSource, s.MaxConnections)
	}
	// Below 10 s an RFC 5626 device keeping its flow with CRLF pings every
	// 95-120 s would still be fine, but one that only refreshes its
	// registration would lose its connection between refreshes; a day is
	// longer than any registration pinhole grants.
	if s.IdleTimeout < 10*time.Second || s.IdleTimeout > 24*time.Hour {
		return bad("streams.idle_timeout", "%s: must be between 10s and 24h", s.IdleTimeout)
	}
	// A TLS handshake over a slow mobile link takes a few round trips;
	// a second is the least that never cuts an honest one.
	if s.HandshakeTimeout < time.Second || s.HandshakeTimeout > 5*time.Minute {
		return bad("streams.handshake_timeout", "%s: must be between 1s and 5m", s.HandshakeTimeout)
	}
	if s.MessageTimeout < time.Second || s.MessageTimeout > 5*time.Minute {
		return bad("streams.message_timeout", "%s: must be between 1s and 5m", s.MessageTimeout)
	}
	if s.FDReserve < 0 || s.FDReserve > 1_000_000 {
		return bad("streams.fd_reserve", "%d: must be between 0 and 1000000", s.FDReserve)
	}
	return nil
}
