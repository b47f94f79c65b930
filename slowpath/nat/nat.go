package nat

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Reason says why a device was judged to be behind NAT; zero means it was not.
type Reason uint8

const (
	// NotNATed: the device's own view of its address matches the packets.
	NotNATed Reason = iota
	// PrivateContact: the Contact host is a private or shared address (RFC 1918, RFC 6598, RFC 4193).
	PrivateContact
	// ViaMismatch: the top Via sent-by differs from the packet's source address or port.
	ViaMismatch
	// ContactMismatch: the Contact host or port differs from the packet's source.
	ContactMismatch
	// Stream: the device talks over a connection (TCP, TLS, WS, WSS); whatever
	// its Contact says, it is reachable only through that connection (RFC 5626 §5.3).
	Stream
)

func (r Reason) String() string {
	switch r {
	case NotNATed:
		return "none"
	case PrivateContact:
		return "private-contact"
	case ViaMismatch:
		return "via-mismatch"
	case ContactMismatch:
		return "contact-mismatch"
	case Stream:
		return "stream"
	}
	return "unknown"
}

// shared is RFC 6598's carrier-grade NAT range, which netip does not call private.
var shared = netip.MustParsePrefix("100.64.0.0/10")

// IsPrivate reports whether an address cannot be reached from the public side:
// RFC 1918, RFC 6598 shared space, RFC 4193 unique-local, link-local.
func IsPrivate(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsPrivate() || shared.Contains(a) || a.IsLinkLocalUnicast() || a.IsUnspecified()
}

// Detect judges one request that arrived from source over transport.
// contact is the Contact URI the binding is for (may be nil for a
// request without one). The first reason that applies wins, cheapest first.
func Detect(req *sip.Request, source netip.AddrPort, contact *sip.Uri) Reason {
	s := SentBy{Reliable: sip.IsReliable(req.Transport())}
	if via := req.Via(); via != nil {
		s.Host, s.Port, s.Via = via.Host, via.Port, true
	}
	return s.Detect(source, contact)
}

// SentBy is what Detect reads of a request besides its Contact: whether
// it came over a stream transport, and the sent-by of its top Via. The
// registrar's raw 200 (slowpath/raw200.go) fills it from a datagram's
// bytes, so that both of its paths judge NAT by one rule.
type SentBy struct {
	Reliable bool
	Via      bool   // a top Via was present
	Host     string // its sent-by host, as sipgo reads it
	Port     int    // its sent-by port, 0 when absent
}

// Detect is the package's Detect for a request described by s.
func (s SentBy) Detect(source netip.AddrPort, contact *sip.Uri) Reason {
	if s.Reliable {
		return Stream
	}
	if contact != nil {
		if a, err := netip.ParseAddr(stripBrackets(contact.Host)); err == nil && IsPrivate(a) && !IsPrivate(source.Addr()) {
			return PrivateContact
		}
	}
	if s.Via {
		if !sameHostPort(s.Host, s.Port, source) {
			return ViaMismatch
		}
		// RFC 3581 §4: rport asks us to answer to the source port; a
		// device that asks for it while its sent-by matches is not NATed.
	}
	if contact != nil && !sameHostPort(contact.Host, contact.Port, source) {
		// A Contact that names a host name (not an address) cannot be compared:
		// only an address that differs proves translation.
		if _, err := netip.ParseAddr(stripBrackets(contact.Host)); err == nil {
			return ContactMismatch
		}
	}
	return NotNATed
}

// sameHostPort compares a host (address or name) and port from a header
// with a packet's source; a missing port means 5060 (RFC 3261 §19.1.2).
func sameHostPort(host string, port int, source netip.AddrPort) bool {
	a, err := netip.ParseAddr(stripBrackets(host))
	if err != nil {
		// A host name in Via is normal for a device that is not NATed
		// (RFC 3261 §18.2.1 adds received then); treat as different.
		return false
	}
	if port == 0 {
		port = 5060
	}
	return a.Unmap() == source.Addr().Unmap() && uint16(port) == source.Port()
}

func stripBrackets(h string) string {
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}

// ParseAddrPort parses sipgo's "host:port" source strings.
func ParseAddrPort(s string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(s)
	if err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	// IPv6 without brackets never comes from sipgo, but a port-less value might.
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, false
	}
	a, err := netip.ParseAddr(stripBrackets(s[:i]))
	if err != nil {
		return netip.AddrPort{}, false
	}
	p, err := strconv.ParseUint(s[i+1:], 10, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), true
}
