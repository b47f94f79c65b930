package capture

import (
	"bytes"

	"github.com/pinhole-sip/pinhole/internal/sipheader"
)

// CallID returns the value of msg's Call-ID header (long or compact form,
// any case; RFC 3261 §7.3.3), without surrounding white space, or nil when
// the header section has none. It reads only the header section, stops at
// the first Call-ID, and allocates nothing: it runs on every message the
// paths hand to a tap, sampled or not. A folded Call-ID yields its first
// line only, which still names the call consistently.
func CallID(msg []byte) []byte {
	for len(msg) > 0 {
		end := bytes.IndexByte(msg, '\n')
		line := msg
		if end >= 0 {
			line, msg = msg[:end], msg[end+1:]
		} else {
			msg = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			return nil // the end of the header section
		}
		// Only "Call-ID" and "i" can name it: other lines are skipped on
		// their first byte, without a name lookup (this runs for every
		// message, sampled out or not).
		if c := line[0] | 0x20; c != 'c' && c != 'i' {
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue // the start line, or a line that is no header
		}
		if sipheader.Lookup(bytes.TrimRight(line[:colon], " \t")) != sipheader.CallID {
			continue
		}
		v := line[colon+1:]
		if cr := bytes.IndexByte(v, '\r'); cr >= 0 {
			v = v[:cr] // a bare CR ends the value too (RFC 3261 allows none)
		}
		v = bytes.Trim(v, " \t")
		if len(v) == 0 {
			return nil
		}
		return v
	}
	return nil
}

// looksSIP tells a SIP message from the other things that share its
// sockets (CRLF keepalives, STUN): a SIP message starts with a method or
// "SIP/2.0", letters either way (RFC 3261 §7.1, §7.2).
func looksSIP(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	c := b[0] | 0x20
	return c >= 'a' && c <= 'z'
}
