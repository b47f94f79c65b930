package natping

import (
	"bytes"
	"net/netip"
	"strconv"
)

// callIDPrefix starts the Call-ID of every ping: "ph-" and the token as 16
// lower-case hex digits, the form the XDP program parses (bpf.CallID).
const callIDPrefix = "ph-"

// crlfPing is the RFC 5626 §3.5.1 keepalive ping. A device that implements
// it answers with one CRLF, which the XDP program counts as a sign of life.
var crlfPing = []byte("\r\n\r\n")

// appendOptions appends an OPTIONS ping to the Contact uri of aor, sent
// from host:port (sent-by of the Via and host of the From), carrying token.
// RFC 3261 §11: OPTIONS may be sent to a Contact; any final response, even
// 404 or 405, proves the device and its NAT binding alive.
func appendOptions(dst []byte, uri, aor string, sentBy netip.AddrPort, host string, token uint64) []byte {
	var hex [16]byte
	tok := appendHex16(hex[:0], token)
	dst = append(dst, "OPTIONS "...)
	dst = append(dst, uri...)
	dst = append(dst, " SIP/2.0\r\nVia: SIP/2.0/UDP "...)
	hostAt := len(dst)
	dst = appendHost(dst, host, sentBy.Addr())
	hostEnd := len(dst)
	dst = append(dst, ':')
	dst = strconv.AppendUint(dst, uint64(sentBy.Port()), 10)
	// RFC 3261 §8.1.1.7: the branch starts with the magic cookie; rport
	// (RFC 3581) so that a device behind NAT answers to where we sent from.
	dst = append(dst, ";branch=z9hG4bK-ph"...)
	dst = append(dst, tok...)
	dst = append(dst, ";rport\r\nMax-Forwards: 70\r\nFrom: <sip:pinhole@"...)
	dst = append(dst, dst[hostAt:hostEnd]...)
	dst = append(dst, ">;tag=ph"...)
	dst = append(dst, tok[:8]...)
	dst = append(dst, "\r\nTo: <sip:"...)
	dst = append(dst, aor...)
	dst = append(dst, ">\r\nCall-ID: "+callIDPrefix...)
	dst = append(dst, tok...)
	dst = append(dst, "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"...)
	return dst
}

// appendHost appends host, or the address a in URI form ([v6]).
func appendHost(dst []byte, host string, a netip.Addr) []byte {
	if host != "" {
		return append(dst, host...)
	}
	if a.Is6() && !a.Is4In6() {
		return append(a.AppendTo(append(dst, '[')), ']')
	}
	return a.Unmap().AppendTo(dst)
}

const hexDigits = "0123456789abcdef"

func appendHex16(dst []byte, v uint64) []byte {
	for i := 60; i >= 0; i -= 4 {
		dst = append(dst, hexDigits[v>>uint(i)&0xf])
	}
	return dst
}

// safeURI reports whether s can be written as a Request-URI: no space or
// control character could end the request line or start a header.
func safeURI(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// Token returns the token of a response to one of our pings: msg is a SIP
// response ("SIP/2.0 ") whose Call-ID (or compact "i") header is "ph-"
// followed by exactly 16 hex digits. It looks only at the header section,
// like the XDP program, and ignores case in header names (RFC 3261 §7.3.1).
// A Call-ID folded onto the next line is declined, as the XDP program does.
func Token(msg []byte) (uint64, bool) {
	if !bytes.HasPrefix(msg, []byte("SIP/2.0 ")) {
		return 0, false
	}
	// Lines end with CRLF (RFC 3261 §7), as sipgo requires: a bare LF
	// stays inside the line and spoils the value.
	rest := msg
	for {
		nl := bytes.Index(rest, []byte("\r\n"))
		if nl < 0 {
			return 0, false
		}
		rest = rest[nl+2:]
		line, folded := rest, false
		if e := bytes.Index(line, []byte("\r\n")); e >= 0 {
			line = line[:e]
			// A next line starting with SP or HTAB continues this one
			// (RFC 3261 §7.3.1): sipgo joins it to the value.
			folded = e+2 < len(rest) && (rest[e+2] == ' ' || rest[e+2] == '\t')
		}
		if len(line) == 0 {
			return 0, false // end of the header section
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimRight(name, " \t")
		if !bytes.EqualFold(name, []byte("Call-ID")) && !bytes.EqualFold(name, []byte("i")) {
			continue
		}
		if folded {
			// The value goes on in the next line, which our pings never
			// do: decline rather than read a Call-ID sipgo reads longer.
			return 0, false
		}
		return parseCallID(bytes.TrimSpace(value))
	}
}

func parseCallID(v []byte) (uint64, bool) {
	if len(v) != len(callIDPrefix)+16 || string(v[:len(callIDPrefix)]) != callIDPrefix {
		return 0, false
	}
	var tok uint64
	for _, c := range v[len(callIDPrefix):] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		tok = tok<<4 | uint64(d)
	}
	return tok, tok != 0
}
