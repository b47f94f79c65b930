package load

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/pinhole-sip/pinhole/internal/sipheader"
)

// maxMulti bounds how many Via, Record-Route and challenge headers a message
// may carry for the generator to handle it; more is refused as malformed
// rather than silently cut (a proxy chain of 16 hops is not a benchmark).
const maxMulti = 16

// message is what the generator reads of a SIP message: just enough to
// match a reply to its transaction, answer a request, follow a dialog's
// route set and answer a challenge. Every field is a sub-slice of the
// datagram: parsing allocates nothing.
type message struct {
	request bool
	method  []byte // request method
	ruri    []byte
	status  int

	via    [maxMulti][]byte // header values, in order
	nVia   int
	rr     [maxMulti][]byte // Record-Route values, in order
	nRR    int
	chall  [maxMulti][]byte // WWW-Authenticate / Proxy-Authenticate values
	nChall int

	callID, from, to, contact []byte
	cseq                      uint32
	cseqMethod                []byte
}

var (
	errShort    = errors.New("sip: truncated message")
	errStart    = errors.New("sip: bad start line")
	errHeader   = errors.New("sip: bad header line")
	errTooMany  = errors.New("sip: too many repeated headers")
	errNoCSeq   = errors.New("sip: missing or bad CSeq")
	errNoCallID = errors.New("sip: missing Call-ID")
)

var sipVersion = []byte("SIP/2.0")

// parse reads b into m. A keepalive (CRLF) is not a message: callers check
// for it first.
func parse(b []byte, m *message) error {
	*m = message{}
	line, rest, ok := cutLine(b)
	if !ok {
		return errShort
	}
	if bytes.HasPrefix(line, sipVersion) {
		// SIP/2.0 200 OK
		if len(line) < 12 || line[7] != ' ' {
			return errStart
		}
		code, err := strconv.Atoi(string(line[8:11]))
		if err != nil || code < 100 || code > 699 || (len(line) > 11 && line[11] != ' ') {
			return errStart
		}
		m.status = code
	} else {
		// METHOD uri SIP/2.0
		sp := bytes.IndexByte(line, ' ')
		last := bytes.LastIndexByte(line, ' ')
		if sp <= 0 || last <= sp || !bytes.Equal(line[last+1:], sipVersion) {
			return errStart
		}
		m.request, m.method, m.ruri = true, line[:sp], line[sp+1:last]
	}
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return errShort
		}
		if len(line) == 0 {
			break // end of headers; the body is not needed
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // folded continuation (RFC 3261 §7.3.1): not used by the servers measured
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return errHeader
		}
		name := bytes.TrimRight(line[:colon], " \t")
		val := bytes.TrimSpace(line[colon+1:])
		switch sipheader.Lookup(name) {
		case sipheader.Via:
			if m.nVia == maxMulti {
				return errTooMany
			}
			m.via[m.nVia] = val
			m.nVia++
		case sipheader.RecordRoute:
			if m.nRR == maxMulti {
				return errTooMany
			}
			m.rr[m.nRR] = val
			m.nRR++
		case sipheader.WWWAuthenticate, sipheader.ProxyAuthenticate:
			if m.nChall == maxMulti {
				return errTooMany
			}
			m.chall[m.nChall] = val
			m.nChall++
		case sipheader.CallID:
			m.callID = val
		case sipheader.From:
			m.from = val
		case sipheader.To:
			m.to = val
		case sipheader.Contact:
			if m.contact == nil {
				m.contact = val
			}
		case sipheader.CSeq:
			sp := bytes.IndexAny(val, " \t")
			if sp <= 0 {
				return errNoCSeq
			}
			n, err := strconv.ParseUint(string(val[:sp]), 10, 32)
			if err != nil {
				return errNoCSeq
			}
			m.cseq, m.cseqMethod = uint32(n), bytes.TrimSpace(val[sp:])
		}
	}
	if m.cseqMethod == nil {
		return errNoCSeq
	}
	if m.callID == nil {
		return errNoCallID
	}
	return nil
}

// cutLine returns the line before the first LF (without CR) and the rest.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, false
	}
	line = b[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, b[i+1:], true
}

// param returns the value of ;name=value in a header value (outside <>).
func param(v []byte, name string) []byte {
	depth := 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '<':
			depth++
		case '>':
			depth--
		case ';':
			if depth != 0 {
				continue
			}
			rest := v[i+1:]
			if len(rest) > len(name) && sipheader.EqualFold(rest[:len(name)], name) && rest[len(name)] == '=' {
				val := rest[len(name)+1:]
				if end := bytes.IndexAny(val, ";,> \t"); end >= 0 {
					val = val[:end]
				}
				return val
			}
		}
	}
	return nil
}

// uriOf returns the URI inside <> of a name-addr, or the value up to the
// first ';' for an addr-spec.
func uriOf(v []byte) []byte {
	if i := bytes.IndexByte(v, '<'); i >= 0 {
		if j := bytes.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
		return nil
	}
	if i := bytes.IndexByte(v, ';'); i >= 0 {
		return bytes.TrimSpace(v[:i])
	}
	return bytes.TrimSpace(v)
}

// splitComma appends the comma-separated elements of a header value (as
// Record-Route may carry several), ignoring commas inside <> and quotes.
func splitComma(dst [][]byte, v []byte) [][]byte {
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>':
			depth--
		case c == ',' && depth == 0:
			if e := bytes.TrimSpace(v[start:i]); len(e) > 0 {
				dst = append(dst, e)
			}
			start = i + 1
		}
	}
	if e := bytes.TrimSpace(v[start:]); len(e) > 0 {
		dst = append(dst, e)
	}
	return dst
}

// isKeepaliveReply reports whether b is a pong to a keepalive: a bare CRLF
// (RFC 5626 §4.4.1) or a STUN Binding success (RFC 5389 §6, magic cookie).
func isKeepaliveReply(b []byte) bool {
	if len(b) <= 4 && len(bytes.Trim(b, "\r\n")) == 0 {
		return true
	}
	return len(b) >= 20 && b[0] == 0x01 && b[1] == 0x01 &&
		b[4] == 0x21 && b[5] == 0x12 && b[6] == 0xa4 && b[7] == 0x42
}
