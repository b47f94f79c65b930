package scan

import (
	"bytes"

	"github.com/pinhole-sip/pinhole/internal/sipheader"
	"github.com/pinhole-sip/pinhole/internal/sipsyntax"
)

// Fixed capacities of a [Register]. Devices send one Via and one to three
// Contacts; a REGISTER that crossed a proxy has two or three Vias. More is
// refused rather than grown: the struct lives in the event loop and must
// not allocate.
const (
	MaxVias     = 4
	MaxContacts = 4
)

// Limits bound what Scan accepts. They are the slow path's limits
// (config limits.max_message_bytes and limits.max_headers): a datagram the
// slow path would refuse as too large must not be absorbed.
type Limits struct {
	MaxMessageBytes int
	MaxHeaders      int
}

// Register is what Scan found. Every slice aliases the datagram and is
// valid only as long as it is; values are trimmed of surrounding spaces
// and tabs.
type Register struct {
	RequestURI []byte
	Vias       [MaxVias][]byte // in order, top first
	NumVias    int
	From       []byte
	To         []byte
	CallID     []byte
	CSeq       uint32
	Contacts   [MaxContacts][]byte
	NumContact int
	Expires    []byte // nil: absent
	ExpiresVal uint32 // Expires, when present
	UserAgent  []byte // nil: absent
	Supported  []byte // nil: absent
	// MaxForwards is nil when absent.
	MaxForwards []byte
	// Authorization is the first Authorization value (nil: none) and
	// NumAuth how many there were: the slow path picks among several by
	// realm, the fast path checks one alone (absorb).
	Authorization []byte
	NumAuth       int
}

// Reason says why Scan refused a datagram (or OK).
type Reason uint8

// Reasons, each a label of pinhole_fastpath_declined_total.
const (
	OK             Reason = iota
	NotRegister           // another method, a response, a keepalive
	TooLarge              // over Limits.MaxMessageBytes
	BadStartLine          // not "REGISTER <uri> SIP/2.0"
	BadLine               // bare CR or LF, no colon, odd header name
	Folded                // a continuation line (RFC 3261 §7.3.1)
	TooManyHeaders        // over Limits.MaxHeaders
	Duplicate             // a second From, To, Call-ID, CSeq, Expires, ...
	Unsupported           // Require, Proxy-Require, Path or Route present
	MultiValue            // a comma in a Via or Contact value
	TooMany               // more Vias or Contacts than the arrays hold
	Missing               // no Via, From, To, Call-ID, CSeq or Contact
	BadCSeq               // CSeq not "<number> REGISTER" within 2^31-1
	BadNumber             // Expires or Max-Forwards not a number in range
	Body                  // Content-Length other than 0, or bytes after the header section
	BadAddress            // a From, To or Contact the slow path's sanity filter refuses for its quoting
	NumReasons
)

var reasonNames = [NumReasons]string{
	OK: "ok", NotRegister: "not_register", TooLarge: "too_large", BadStartLine: "bad_start_line",
	BadLine: "bad_line", Folded: "folded", TooManyHeaders: "too_many_headers", Duplicate: "duplicate",
	Unsupported: "unsupported", MultiValue: "multi_value", TooMany: "too_many", Missing: "missing",
	BadCSeq: "bad_cseq", BadNumber: "bad_number", Body: "body", BadAddress: "bad_address",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// header kinds Scan tells apart; everything else is skipped.
type kind uint8

const (
	hOther kind = iota
	hVia
	hFrom
	hTo
	hCallID
	hCSeq
	hContact
	hExpires
	hUserAgent
	hSupported
	hMaxForwards
	hContentLength
	hAuthorization
	hRefused // Require, Proxy-Require, Path, Route
)

// Scan reads data as a REGISTER into r. It returns OK or the reason it
// refused; r is then partly filled and must not be used.
func Scan(data []byte, lim Limits, r *Register) Reason {
	*r = Register{}
	if len(data) < 9 || string(data[:9]) != "REGISTER " {
		return NotRegister
	}
	if len(data) > lim.MaxMessageBytes {
		return TooLarge
	}
	// Request-Line: "REGISTER" SP Request-URI SP "SIP/2.0" CRLF, exactly.
	eol := lineEnd(data, 9)
	if eol < 0 {
		return BadStartLine
	}
	line := data[9:eol]
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || string(line[sp+1:]) != "SIP/2.0" {
		return BadStartLine
	}
	r.RequestURI = line[:sp]
	// A SIP or SIPS URI only (RFC 3261 §10.2: the registrar's domain).
	if !printable(r.RequestURI) || !(hasPrefix(r.RequestURI, "sip:") || hasPrefix(r.RequestURI, "sips:")) ||
		sipsyntax.HeadersInSIPURI(r.RequestURI) {
		return BadStartLine
	}

	// The header fields: every line ends in CRLF, and neither a bare CR or
	// LF nor a NUL may hide in the section (sipgo splits on CRLF only;
	// slowpath/sanity drops a NUL as binary junk). Checked once over the
	// section with the runtime's vector searches, so that each line's end
	// is one search for CR: a byte-by-byte walk was a third of Scan's time
	// on an authenticated refresh (docs/fastpath.md, "The loop's CPU").
	pos := eol + 2
	head, ok := headerSection(data, pos)
	if !ok {
		return BadLine
	}
	var seen [hRefused + 1]bool
	headers := 0
	contentLength := -1
	for {
		end := crlf(head, pos)
		if end < 0 {
			return BadLine
		}
		if end == pos { // the empty line: end of the header section
			pos += 2
			break
		}
		if data[pos] == ' ' || data[pos] == '\t' {
			return Folded
		}
		headers++
		if headers > lim.MaxHeaders {
			return TooManyHeaders
		}
		colon := -1
		for i := pos; i < end; i++ {
			if data[i] == ':' {
				colon = i
				break
			}
			if !sipsyntax.IsTokenChar(data[i]) {
				// Whitespace before the colon, or a byte no header name has.
				return BadLine
			}
		}
		if colon <= pos {
			return BadLine
		}
		k := classify(data[pos:colon])
		v := trim(data[colon+1 : end])
		pos = end + 2
		switch k {
		case hOther:
			continue
		case hRefused:
			return Unsupported
		case hVia:
			if r.NumVias == MaxVias {
				return TooMany
			}
			if bytes.IndexByte(v, ',') >= 0 {
				return MultiValue
			}
			r.Vias[r.NumVias] = v
			r.NumVias++
			continue
		case hAuthorization:
			if r.NumAuth == 0 {
				r.Authorization = v
			}
			r.NumAuth++
			continue
		case hContact:
			if r.NumContact == MaxContacts {
				return TooMany
			}
			if bytes.IndexByte(v, ',') >= 0 {
				return MultiValue
			}
			if !sipsyntax.ValidAddress(v) {
				return BadAddress
			}
			r.Contacts[r.NumContact] = v
			r.NumContact++
			continue
		}
		if seen[k] {
			return Duplicate
		}
		seen[k] = true
		if (k == hFrom || k == hTo) && !sipsyntax.ValidAddress(v) {
			return BadAddress
		}
		switch k {
		case hFrom:
			r.From = v
		case hTo:
			r.To = v
		case hCallID:
			r.CallID = v
		case hCSeq:
			n, ok := cseq(v)
			if !ok {
				return BadCSeq
			}
			r.CSeq = n
		case hExpires:
			n, ok := number(v, 10)
			if !ok || n > 1<<32-1 {
				return BadNumber
			}
			r.Expires, r.ExpiresVal = v, uint32(n)
		case hUserAgent:
			r.UserAgent = v
		case hSupported:
			r.Supported = v
		case hMaxForwards:
			n, ok := number(v, 3)
			if !ok || n == 0 || n > 255 {
				return BadNumber
			}
			r.MaxForwards = v
		case hContentLength:
			n, ok := number(v, 5)
			if !ok {
				return Body
			}
			contentLength = int(n)
		}
	}
	if contentLength > 0 || pos != len(data) {
		return Body
	}
	if r.NumVias == 0 || r.NumContact == 0 || r.From == nil || r.To == nil || r.CallID == nil || !seen[hCSeq] ||
		len(r.From) == 0 || len(r.To) == 0 || len(r.CallID) == 0 {
		return Missing
	}
	for i := 0; i < r.NumVias; i++ {
		if len(r.Vias[i]) == 0 {
			return Missing
		}
	}
	for i := 0; i < r.NumContact; i++ {
		if len(r.Contacts[i]) == 0 {
			return Missing
		}
	}
	return OK
}

// lineEnd returns the index of the CR of the CRLF ending the line that
// starts at pos, or -1 if there is none or the line holds a bare CR or
// LF (sipgo splits on CRLF only; a bare one would be read differently) or
// a NUL byte.
func lineEnd(data []byte, pos int) int {
	for i := pos; i < len(data); i++ {
		switch data[i] {
		case '\r':
			if i+1 < len(data) && data[i+1] == '\n' {
				return i
			}
			return -1
		case '\n':
			return -1
		case 0:
			// slowpath/sanity drops a NUL outside a quoted-pair as
			// binary junk; the fast path never answers what it drops.
			return -1
		}
	}
	return -1
}

// headerSection returns data up to and including the CRLF CRLF that ends
// the header fields starting at from, if there is one and that stretch
// holds no NUL and as many LFs as CRs. With every CR found at a line's end
// and followed by LF (crlf), equal counts leave no room for a bare LF.
func headerSection(data []byte, from int) ([]byte, bool) {
	rest := data[from:]
	if len(rest) >= 2 && rest[0] == '\r' && rest[1] == '\n' {
		// No header fields at all: the empty line at once.
		return data[:from+2], true
	}
	i := bytes.Index(rest, []byte("\r\n\r\n"))
	if i < 0 {
		return nil, false
	}
	head := data[:from+i+4]
	sect := head[from:]
	if bytes.IndexByte(sect, 0) >= 0 || bytes.Count(sect, []byte{'\n'}) != bytes.Count(sect, []byte{'\r'}) {
		return nil, false
	}
	return head, true
}

// crlf returns the index of the CR ending the line that starts at pos in
// a header section headerSection vouched for, or -1 if that CR is bare.
func crlf(head []byte, pos int) int {
	i := bytes.IndexByte(head[pos:], '\r')
	if i < 0 || pos+i+1 >= len(head) || head[pos+i+1] != '\n' {
		return -1
	}
	return pos + i
}

// classify sorts a header name into the kinds Scan tells apart.
func classify(name []byte) kind {
	switch sipheader.Lookup(name) {
	case sipheader.Via:
		return hVia
	case sipheader.From:
		return hFrom
	case sipheader.To:
		return hTo
	case sipheader.CallID:
		return hCallID
	case sipheader.CSeq:
		return hCSeq
	case sipheader.Contact:
		return hContact
	case sipheader.Expires:
		return hExpires
	case sipheader.UserAgent:
		return hUserAgent
	case sipheader.Supported:
		return hSupported
	case sipheader.MaxForwards:
		return hMaxForwards
	case sipheader.ContentLength:
		return hContentLength
	case sipheader.Authorization:
		return hAuthorization
	case sipheader.Require, sipheader.ProxyRequire, sipheader.Path, sipheader.Route:
		return hRefused
	}
	return hOther
}

// cseq parses "<number> REGISTER" (RFC 3261 §8.1.1.5: at most 2^31-1).
func cseq(v []byte) (uint32, bool) {
	sp := bytes.IndexByte(v, ' ')
	if sp <= 0 || string(v[sp+1:]) != "REGISTER" {
		return 0, false
	}
	n, ok := number(v[:sp], 10)
	if !ok || n > 1<<31-1 {
		return 0, false
	}
	return uint32(n), true
}

// number parses at most maxDigits decimal digits.
func number(v []byte, maxDigits int) (uint64, bool) {
	if len(v) == 0 || len(v) > maxDigits {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

func trim(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// printable reports whether b holds only visible ASCII.
func printable(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func hasPrefix(b []byte, s string) bool { return len(b) > len(s) && string(b[:len(s)]) == s }
