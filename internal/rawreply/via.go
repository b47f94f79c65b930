package rawreply

import (
	"net/netip"
	"strconv"
	"unsafe"

	"github.com/pinhole-sip/pinhole/internal/sipsyntax"
)

// Via is a Via value that can be copied into a reply as it is: exactly
// the bytes sipgo (v1.7) would print after parsing it, so that copying it
// gives the reply sipgo would have written. The grammar is narrower than RFC 3261
// §20.42 on purpose:
//
//	"SIP/2.0/" TRANSPORT SP host [":" port] *(";" name ["=" value])
//
// TRANSPORT in capitals, host an IPv4 address, a host name or a bracketed
// IPv6 address, port 1-65535 without leading zeros, no space anywhere else,
// names and values of token characters (values may hold ':' '[' ']'), no
// name twice (sipgo keeps only the last). Anything else is refused, and
// the caller leaves the request to sipgo.
type Via struct {
	SentByEnd int // index of the first ';' (or len): "SIP/2.0/UDP host:port"
	host      []byte
	rport     int // index of the "rport" name, -1 if absent
	rportSet  bool
	Received  bool // a received parameter is present
}

// ParseVia checks v against the grammar above and describes it in out.
func ParseVia(v []byte, out *Via) bool {
	*out = Via{rport: -1}
	const proto = "SIP/2.0/"
	if len(v) < len(proto)+3 || string(v[:len(proto)]) != proto {
		return false
	}
	i := len(proto)
	start := i
	for i < len(v) && v[i] >= 'A' && v[i] <= 'Z' {
		i++
	}
	if i == start || i >= len(v) || v[i] != ' ' {
		return false
	}
	i++
	// host
	hs := i
	if i < len(v) && v[i] == '[' {
		i++
		for i < len(v) && (hexDigit(v[i]) || v[i] == ':' || v[i] == '.') {
			i++
		}
		if i >= len(v) || v[i] != ']' || i == hs+1 {
			return false
		}
		i++
		out.host = v[hs+1 : i-1]
		// sipgo prints the brackets again only around a valid IPv6 address.
		if a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(out.host), len(out.host))); err != nil || !a.Is6() || a.Is4In6() {
			return false
		}
	} else {
		for i < len(v) && (alnum(v[i]) || v[i] == '.' || v[i] == '-') {
			i++
		}
		if i == hs {
			return false
		}
		out.host = v[hs:i]
	}
	if i < len(v) && v[i] == ':' {
		i++
		ps := i
		for i < len(v) && v[i] >= '0' && v[i] <= '9' {
			i++
		}
		if i == ps || i-ps > 5 || v[ps] == '0' {
			return false
		}
		n := 0
		for _, c := range v[ps:i] {
			n = n*10 + int(c-'0')
		}
		if n > 65535 {
			return false
		}
	}
	out.SentByEnd = i
	// params
	var names [12][]byte
	nn := 0
	for i < len(v) {
		if v[i] != ';' {
			return false
		}
		i++
		ns := i
		for i < len(v) && tokenChar(v[i]) {
			i++
		}
		if i == ns {
			return false
		}
		name := v[ns:i]
		hasValue := false
		if i < len(v) && v[i] == '=' {
			i++
			vs := i
			for i < len(v) && (tokenChar(v[i]) || v[i] == ':' || v[i] == '[' || v[i] == ']') {
				i++
			}
			if i == vs {
				return false // "name=" prints as "name" in sipgo
			}
			hasValue = true
		}
		if nn == len(names) {
			return false
		}
		for _, seen := range names[:nn] {
			if string(seen) == string(name) {
				return false
			}
		}
		names[nn] = name
		nn++
		switch string(name) {
		case "rport":
			out.rport = ns
			out.rportSet = hasValue
		case "received":
			out.Received = true
		}
	}
	return true
}

// AppendTopVia appends the reply's top Via value as sipgo and the
// registrar build it for a request from src: RFC 3581 §4 (rport without a
// value gets the source port, and received is added), else RFC 3261
// §18.2.1 (received when the sent-by host is not the source address).
func AppendTopVia(dst, v []byte, p *Via, src netip.AddrPort) []byte {
	srcAddr := src.Addr().Unmap()
	if p.rport >= 0 && !p.rportSet {
		end := p.rport + len("rport")
		dst = append(dst, v[:end]...)
		dst = append(dst, '=')
		dst = strconv.AppendUint(dst, uint64(src.Port()), 10)
		dst = append(dst, v[end:]...)
		dst = append(dst, ";received="...)
		return srcAddr.AppendTo(dst)
	}
	dst = append(dst, v...)
	if a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(p.host), len(p.host))); err == nil && a.Unmap() == srcAddr {
		return dst
	}
	dst = append(dst, ";received="...)
	return srcAddr.AppendTo(dst)
}

// AppendRportVia writes the top Via of a reply sipgo builds with
// NewResponseFromRequest alone (the 401): rport filled in, with received,
// only when the request asked for it (RFC 3581 §4); otherwise unchanged,
// even when the sent-by is not the source (the registrar's 200 adds
// received then, RFC 3261 §18.2.1; sipgo's other replies do not).
func AppendRportVia(dst, v []byte, p *Via, src netip.AddrPort) []byte {
	if p.rport >= 0 && !p.rportSet {
		return AppendTopVia(dst, v, p, src)
	}
	return append(dst, v...)
}

func hexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func alnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// tokenChar: RFC 3261 §25.1 token, the one rule the scanner and the
// sanity filter use too.
func tokenChar(c byte) bool { return sipsyntax.IsTokenChar(c) }
