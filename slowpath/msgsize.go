package slowpath

import "github.com/emiago/sipgo/sip"

// maxDatagram is the largest SIP message pinhole accepts anywhere:
// limits.max_message_bytes is validated to at most 65535, and no UDP
// payload is larger (65507 bytes over IPv4, 65527 over IPv6).
const maxDatagram = 65535

// init lifts two process-wide limits of sipgo (v1.7) that silently lose
// messages pinhole has accepted:
//
//   - sip.UDPMTUSize: UDPConnection.WriteMsg refuses every message longer
//     than UDPMTUSize-200 (1300 bytes by default) with ErrUDPMTUCongestion
//     and sends nothing. A REGISTER 200 listing a handful of contacts, a
//     486 relayed back to a UDP caller or an INVITE to a UDP device all
//     exceed it. pinhole sends them as one datagram and lets IP fragment
//     it: a response to a UDP request must go back over UDP (RFC 3261
//     §18.2.2), and a device behind NAT takes no TCP connection from us,
//     so the §18.1.1 switch to TCP is no option at an edge. The kernel
//     still refuses a datagram over 65507 bytes with EMSGSIZE, an error
//     sipgo returns rather than a silent drop.
//   - sip.TransportBufferReadSize: the buffer every UDP (and stream)
//     reader of sipgo reads into, 32 KiB, so a larger datagram is cut
//     short without notice although limits.max_message_bytes allows up to
//     65535. The fast path's hand-off copies into the same buffer. With
//     65535 bytes no datagram is ever cut, and the sanity filter sees the
//     whole datagram to refuse one over the limit with 513.
//
// Both are package variables sipgo reads when a message is written or a
// reader starts, so they are set once, before any server exists.
func init() {
	sip.UDPMTUSize = maxDatagram + 200
	sip.TransportBufferReadSize = maxDatagram
}
