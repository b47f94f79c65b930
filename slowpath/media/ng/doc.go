// Package ng is pinhole's client for rtpengine's ng control protocol: the
// commands a SIP proxy sends so that rtpengine relays a call's media and
// rewrites its SDP (docs/media.md).
//
// A message is a cookie, one space and a bencoded dictionary; the reply
// carries the same cookie. Over UDP a command whose reply does not arrive
// within the timeout is sent again, byte for byte with the same cookie:
// rtpengine remembers the replies it sent by cookie for a while and answers
// a retransmission from that memory, so an offer that was processed but
// whose reply was lost does not allocate ports twice.
//
// A [Client] talks to several rtpengine instances. A new call goes to one of
// the instances that are up, chosen by its Call-ID and the instances'
// weights (weighted rendezvous hashing, so the same Call-ID picks the same
// instance while the set of live instances is the same), and every later
// command of that call goes to the same instance: only that instance holds
// its ports. An instance is marked down when a command to it gets no reply
// after all retransmissions, and up again when it answers a ping; a pinger
// pings every instance at an interval.
//
// Commands are counted by type and result, and their round-trip times are
// kept in a histogram; docs/metrics.md lists the names.
package ng
