// Package natping keeps the NAT bindings of UDP devices open and finds the
// devices that have gone away.
//
// Every Interval the Pinger sends each NAT'd UDP binding in the location
// store a keepalive from the very socket the device registered to (a NAT
// pinhole opens only for that address and port: docs/architecture.md,
// "One address, one port"),
// spread evenly over the interval and sent in batches with sendmmsg(2). An
// OPTIONS ping carries a token in its Call-ID ("ph-" and 16 hex digits,
// bpf.CallID); the XDP program recognises the device's reply by it, marks
// the device alive and drops the reply before it costs a socket wake-up.
// Without XDP the slow path hands such replies to Pinger.Reply instead.
// A binding whose device leaves MaxMissed pings in a row unanswered is
// removed through the store. See docs/natping.md.
//
// It lives in the slow path although it uses no sipgo: it works on the
// location store's bindings, the way the registrar and the NAT fixing beside
// it do, and it removes bindings, which only the slow path's packages may
// decide. The gnet loops of the fast path have no part in it; the one tie
// to the kernel fast path is the Call-ID token, whose rule the XDP program
// shares (bpf.CallID).
package natping
