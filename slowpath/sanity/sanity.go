package sanity

import (
	"bytes"

	"github.com/pinhole-sip/pinhole/internal/sipheader"
	"github.com/pinhole-sip/pinhole/internal/sipsyntax"
)

// Limits bounds what a datagram may hold. A zero or negative field disables
// its check; the configuration sets both.
type Limits struct {
	MaxMessageBytes int // refuse bigger datagrams (513 Message Too Large, RFC 3261 §21.5.14)
	MaxHeaders      int // refuse more header fields (400 "Too Many Headers")
}

// supportedProxyExtensions are the option-tags pinhole understands in a
// Proxy-Require header field (RFC 3261 §16.3 step 6): none. Require is for
// the element that consumes the request and is checked there (the
// registrar, RFC 3261 §8.2.2.3); a proxy must not look at it.
var supportedProxyExtensions = []string{}

// Action says what the caller does with a datagram.
type Action uint8

const (
	Pass  Action = iota // hand the datagram to the SIP parser
	Reply               // send Verdict.Reply back to the source and drop the datagram
	Drop                // drop silently, count Verdict.Reason
)

func (a Action) String() string {
	switch a {
	case Pass:
		return "pass"
	case Reply:
		return "reply"
	case Drop:
		return "drop"
	}
	return "unknown"
}

// Reason says why a datagram got its Action.
type Reason uint8

const (
	ReasonOK               Reason = iota // a complete-looking SIP message
	ReasonKeepalive                      // CRLF keepalive, RFC 5626 §3.5.1
	ReasonEmpty                          // zero-length datagram
	ReasonTooLarge                       // longer than Limits.MaxMessageBytes
	ReasonNotSIP                         // first line is neither a Request-Line nor a Status-Line
	ReasonBadStartLine                   // a SIP start line that breaks RFC 3261 §7.1 / §7.2
	ReasonBadVersion                     // SIP-Version other than SIP/2.0
	ReasonTruncated                      // no empty line ends the header section
	ReasonTooManyHeaders                 // more than Limits.MaxHeaders header fields
	ReasonBadHeader                      // a header line without a colon or with a bad name
	ReasonMissingHeader                  // Via, From, To, Call-ID or CSeq absent
	ReasonBadCSeq                        // CSeq not "number method" or number above 2^31-1
	ReasonCSeqMismatch                   // CSeq method differs from the request method
	ReasonBadContentLength               // Content-Length not a number or beyond the datagram
	ReasonDuplicateHeader                // a single-instance header field twice (RFC 3261 §7.3, §20)
	ReasonNULByte                        // a NUL byte in the start line or a header field
	ReasonBadExtension                   // Proxy-Require names an option-tag pinhole does not know
	ReasonBadAddress                     // From, To or Contact that breaks RFC 3261 §20.10 quoting
	ReasonBadScheme                      // a Request-URI scheme other than sip, sips or tel
	reasonCount
)

// NumReasons is the number of Reason values, for arrays of counters.
const NumReasons = int(reasonCount)

var reasonNames = [NumReasons]string{
	ReasonOK:               "ok",
	ReasonKeepalive:        "keepalive",
	ReasonEmpty:            "empty",
	ReasonTooLarge:         "too_large",
	ReasonNotSIP:           "not_sip",
	ReasonBadStartLine:     "bad_start_line",
	ReasonBadVersion:       "bad_version",
	ReasonTruncated:        "truncated",
	ReasonTooManyHeaders:   "too_many_headers",
	ReasonBadHeader:        "bad_header",
	ReasonMissingHeader:    "missing_header",
	ReasonBadCSeq:          "bad_cseq",
	ReasonCSeqMismatch:     "cseq_mismatch",
	ReasonBadContentLength: "bad_content_length",
	ReasonDuplicateHeader:  "duplicate_header",
	ReasonNULByte:          "nul_byte",
	ReasonBadExtension:     "bad_extension",
	ReasonBadAddress:       "bad_address",
	ReasonBadScheme:        "bad_scheme",
}

// String returns the reason as a metric label.
func (r Reason) String() string {
	if int(r) < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Verdict is the outcome of Check.
type Verdict struct {
	Action Action
	Reason Reason
	Reply  []byte // the whole response datagram when Action == Reply, appended to Check's dst
}

// maxCSeq is the largest CSeq sequence number, RFC 3261 §8.1.1.5.
const maxCSeq = 1<<31 - 1

// maxKeepalive is the longest CRLF keepalive: RFC 5626 §3.5.1 sends a
// double CRLF ping, and a single CRLF pong is common.
const maxKeepalive = 4

// Check examines one datagram. When it returns Reply, the response is built
// by appending to dst (which may be nil) and returned in Verdict.Reply.
// Check does not keep data or dst and does not allocate unless it builds a
// reply that does not fit in dst.
func Check(dst []byte, data []byte, lim Limits) Verdict {
	return check(dst, data, lim, false)
}

// check is Check; tooLarge says the message is known to exceed the limit
// although data holds only its head (a stream's declared body is beyond it).
func check(dst []byte, data []byte, lim Limits, tooLarge bool) Verdict {
	if len(data) == 0 {
		return Verdict{Action: Drop, Reason: ReasonEmpty}
	}
	if len(data) <= maxKeepalive && onlyCRLF(data) {
		return Verdict{Action: Drop, Reason: ReasonKeepalive}
	}

	// A datagram over the limit is only looked at up to the limit: enough to
	// find the header fields a 513 needs, without scanning a flood.
	if lim.MaxMessageBytes > 0 && len(data) > lim.MaxMessageBytes {
		tooLarge = true
		data = data[:lim.MaxMessageBytes]
	}

	var m message
	m.scan(data)
	if m.start == startNotSIP {
		return Verdict{Action: Drop, Reason: ReasonNotSIP}
	}
	r, st := m.judge(lim, tooLarge)
	if r == ReasonOK {
		return Verdict{Action: Pass, Reason: ReasonOK}
	}
	if st == replyNone || !m.canReply() {
		return Verdict{Action: Drop, Reason: r}
	}
	return Verdict{Action: Reply, Reason: r, Reply: m.appendReply(dst, st)}
}

func onlyCRLF(b []byte) bool {
	for _, c := range b {
		if c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// startKind classifies the first line of a datagram.
type startKind uint8

const (
	startNotSIP      startKind = iota // neither a Request-Line nor a Status-Line
	startRequest                      // Method SP Request-URI SP SIP/2.0
	startResponse                     // SIP/2.0 SP 3DIGIT SP Reason-Phrase
	startBadRequest                   // looks like a request, breaks RFC 3261 §7.1
	startBadVersion                   // a SIP version other than 2.0
	startBadResponse                  // starts with SIP/ but is no Status-Line
)

// hdr names the header fields Check looks at.
type hdr uint8

const (
	hdrOther hdr = iota
	hdrVia
	hdrFrom
	hdrTo
	hdrCallID
	hdrCSeq
	hdrContentLength
	hdrMaxForwards
	hdrContentType
	hdrExpires
	hdrContact
	hdrProxyRequire
)

// span is a half-open byte range of the datagram; a zero span is "absent".
type span struct{ off, end int }

func (s span) ok() bool { return s.end > 0 }

// message holds what one pass over a datagram found. It lives on the stack.
type message struct {
	data   []byte
	start  startKind
	method []byte // request method, when the start line has a valid one

	headers   int  // offset of the first header line
	headerEnd int  // offset of the body; 0 when the header section has no end
	nHeaders  int  // header fields, folded lines counted once
	malformed bool // a header line without a colon or with a bad name

	// First occurrence of each field, whole field (name to end of its last
	// folded line, without the final CRLF), and the CSeq/Call-ID values.
	via, from, to, callID, cseq     span
	toValue, callIDValue, cseqValue span

	maxContentLength int  // largest Content-Length seen
	badContentLength bool // a Content-Length that is not a number, or a second one

	// seen counts the single-instance fields (RFC 3261 §7.3: only fields
	// whose grammar is a comma-separated list may appear more than once).
	seen       [hdrProxyRequire]uint8
	duplicate  bool // a single-instance field appeared twice
	badAddress bool // unbalanced quotes, or an addr-spec with '?' (RFC 3261 §20.10)
	badEchoed  bool // badAddress is in From or To, which a reply would echo
	// proxyRequire: a Proxy-Require field names at least one option-tag
	// outside supportedProxyExtensions.
	proxyRequire bool
}

// scan classifies the start line and walks the header section.
func (m *message) scan(data []byte) {
	m.data = data
	p := m.scanStart()
	if m.start == startNotSIP || p < 0 {
		return
	}
	m.headers = p
	for {
		f, next, st := nextField(data, p)
		switch st {
		case fieldEnd:
			m.headerEnd = next
			return
		case fieldTruncated:
			return
		case fieldMalformed:
			m.nHeaders++
			m.malformed = true
		case fieldOK:
			m.nHeaders++
			m.record(f)
		}
		p = next
	}
}

// scanStart classifies the start line and returns the offset of the first
// header line, or -1 when the start line has no CRLF.
func (m *message) scanStart() int {
	data := m.data
	i := bytes.IndexByte(data, '\r')
	line := data
	if i >= 0 {
		line = data[:i]
	}
	m.start = classify(line, &m.method)
	if i < 0 || i+1 >= len(data) || data[i+1] != '\n' {
		// No header section, hence no Via to answer to: judged truncated.
		return -1
	}
	return i + 2
}

// classify tells a Request-Line (RFC 3261 §7.1) from a Status-Line (§7.2)
// from junk. On a request with a valid method, *method is set.
func classify(line []byte, method *[]byte) startKind {
	if hasPrefixFold(line, "sip/") {
		return classifyStatus(line)
	}
	// Anything that does not name a SIP version after its first space is
	// not SIP: it is dropped without an answer.
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 || indexFold(line[sp:], " sip/") < 0 {
		return startNotSIP
	}
	if sp == 0 || !sipsyntax.IsToken(line[:sp]) {
		return startNotSIP
	}
	*method = line[:sp]
	rest := line[sp+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return startBadRequest
	}
	uri, version := rest[:sp2], rest[sp2+1:]
	if !isRequestURI(uri) {
		return startBadRequest
	}
	switch versionKind(version) {
	case version20:
		return startRequest
	case versionOther:
		return startBadVersion
	}
	return startBadRequest
}

// isRequestURI checks that uri is an absolute URI, scheme ":" something
// (RFC 3261 §25.1: SIP-URI / SIPS-URI / absoluteURI), without white space or
// control characters. "<sip:...>" and "*" are refused (RFC 4475 §3.1.2.11).
func isRequestURI(uri []byte) bool {
	colon := -1
	for i, c := range uri {
		if c <= ' ' || c == 0x7f {
			return false
		}
		if c == ':' && colon < 0 {
			colon = i
		}
	}
	if colon < 1 || colon == len(uri)-1 || !isAlpha(uri[0]) {
		return false
	}
	if (hasPrefixFold(uri, "sip:") || hasPrefixFold(uri, "sips:")) && sipsyntax.HeadersInSIPURI(uri[colon+1:]) {
		return false
	}
	for _, c := range uri[1:colon] {
		if !isAlpha(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// classifyStatus checks "SIP/2.0 SP 3DIGIT SP Reason-Phrase", RFC 3261 §7.2.
// The Reason-Phrase may be empty but the space before it may not: sipgo
// needs it.
func classifyStatus(line []byte) startKind {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return startBadResponse
	}
	switch versionKind(line[:sp]) {
	case versionBad:
		return startBadResponse
	case versionOther:
		return startBadVersion
	}
	code := line[sp+1:]
	if len(code) < 4 || code[0] < '1' || code[0] > '6' ||
		!isDigit(code[1]) || !isDigit(code[2]) || code[3] != ' ' {
		return startBadResponse
	}
	return startResponse
}

const (
	versionBad = iota
	version20
	versionOther
)

// versionKind checks SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT, RFC 3261
// §25.1, where "SIP" is case-insensitive.
func versionKind(v []byte) int {
	if !hasPrefixFold(v, "sip/") {
		return versionBad
	}
	n := v[4:]
	dot := bytes.IndexByte(n, '.')
	if dot <= 0 || dot == len(n)-1 || !allDigits(n[:dot]) || !allDigits(n[dot+1:]) {
		return versionBad
	}
	if string(n) == "2.0" {
		return version20
	}
	return versionOther
}

// record notes a well-formed header field.
func (m *message) record(f field) {
	switch f.name {
	case hdrVia:
		if !m.via.ok() {
			m.via = f.whole
		}
	case hdrFrom:
		if !m.from.ok() {
			m.from = f.whole
		}
	case hdrTo:
		if !m.to.ok() {
			m.to = f.whole
			m.toValue = f.value
		}
	case hdrCallID:
		if !m.callID.ok() {
			m.callID = f.whole
			m.callIDValue = trimLWS(m.data, f.value)
		}
	case hdrCSeq:
		if !m.cseq.ok() {
			m.cseq = f.whole
			m.cseqValue = trimLWS(m.data, f.value)
		}
	case hdrContentLength:
		// Two Content-Length fields leave the end of the body unknown
		// (RFC 4475 §3.3.9): a framing error rather than a mere duplicate.
		n, ok := parseUint(m.data[f.value.off:f.value.end])
		if !ok || m.seen[hdrContentLength] > 0 {
			m.badContentLength = true
		} else if n > m.maxContentLength {
			m.maxContentLength = n
		}
	case hdrProxyRequire:
		if unknownTag(m.data[f.value.off:f.value.end]) {
			m.proxyRequire = true
		}
	}
	switch f.name {
	case hdrFrom, hdrTo, hdrContact:
		if !sipsyntax.ValidAddress(m.data[f.value.off:f.value.end]) {
			m.badAddress = true
			m.badEchoed = m.badEchoed || f.name != hdrContact
		}
	}
	if f.name != hdrOther && f.name < hdrProxyRequire {
		if m.seen[f.name] > 0 && f.name != hdrVia && f.name != hdrContact && f.name != hdrContentLength {
			m.duplicate = true
		}
		if m.seen[f.name] < 255 {
			m.seen[f.name]++
		}
	}
}

// reply is an error response Check can build.
type reply uint8

const (
	replyNone reply = iota
	replyTooLarge
	replyBadRequestLine
	replyBadVersion
	replyTruncated
	replyTooManyHeaders
	replyMalformedHeader
	replyMissingFrom
	replyMissingTo
	replyMissingCallID
	replyMissingCSeq
	replyBadCSeq
	replyCSeqMismatch
	replyBadContentLength
	replyDuplicateHeader
	replyBadAddress
	replyBadExtension
	replyBadScheme
)

// statusLines are the first lines of the responses, RFC 3261 §21.
var statusLines = [...]string{
	replyTooLarge:         "SIP/2.0 513 Message Too Large\r\n",
	replyBadRequestLine:   "SIP/2.0 400 Bad Request Line\r\n",
	replyBadVersion:       "SIP/2.0 505 Version Not Supported\r\n",
	replyTruncated:        "SIP/2.0 400 Truncated Message\r\n",
	replyTooManyHeaders:   "SIP/2.0 400 Too Many Headers\r\n",
	replyMalformedHeader:  "SIP/2.0 400 Malformed Header Line\r\n",
	replyMissingFrom:      "SIP/2.0 400 Missing From Header\r\n",
	replyMissingTo:        "SIP/2.0 400 Missing To Header\r\n",
	replyMissingCallID:    "SIP/2.0 400 Missing Call-ID Header\r\n",
	replyMissingCSeq:      "SIP/2.0 400 Missing CSeq Header\r\n",
	replyBadCSeq:          "SIP/2.0 400 Bad CSeq\r\n",
	replyCSeqMismatch:     "SIP/2.0 400 CSeq Mismatch\r\n",
	replyBadContentLength: "SIP/2.0 400 Bad Content-Length\r\n",
	replyDuplicateHeader:  "SIP/2.0 400 Duplicate Header Field\r\n",
	replyBadAddress:       "SIP/2.0 400 Malformed Address\r\n",
	replyBadExtension:     "SIP/2.0 420 Bad Extension\r\n",
	replyBadScheme:        "SIP/2.0 416 Unsupported URI Scheme\r\n",
}

// judge applies the rules in order and returns the first that fails.
func (m *message) judge(lim Limits, tooLarge bool) (Reason, reply) {
	switch {
	case tooLarge:
		return ReasonTooLarge, replyTooLarge
	case m.start == startBadRequest || m.start == startBadResponse:
		return ReasonBadStartLine, replyBadRequestLine
	case m.start == startBadVersion:
		return ReasonBadVersion, replyBadVersion
	case m.headerEnd == 0:
		return ReasonTruncated, replyTruncated
	case hasBareNUL(m.data[:m.headerEnd]):
		// RFC 3261 §25.1 allows a NUL in the start line or a header field
		// only as a quoted-pair inside a quoted-string ("\" %x00, RFC 4475
		// §3.1.1.2 intmeth); a URI escapes it as %00 (§3.1.1.4 escnull).
		// Anything else is binary junk; no answer echoes it back.
		return ReasonNULByte, replyNone
	case lim.MaxHeaders > 0 && m.nHeaders > lim.MaxHeaders:
		return ReasonTooManyHeaders, replyTooManyHeaders
	case m.malformed:
		return ReasonBadHeader, replyMalformedHeader
	case !m.via.ok():
		return ReasonMissingHeader, replyNone
	case !m.from.ok():
		return ReasonMissingHeader, replyMissingFrom
	case !m.to.ok():
		return ReasonMissingHeader, replyMissingTo
	case !m.callID.ok():
		return ReasonMissingHeader, replyMissingCallID
	case !m.cseq.ok():
		return ReasonMissingHeader, replyMissingCSeq
	}
	method, ok := m.cseqMethod()
	if !ok {
		return ReasonBadCSeq, replyBadCSeq
	}
	// RFC 3261 §8.1.1.5: the CSeq method MUST match the request method,
	// ACK and CANCEL included.
	if m.start == startRequest && !bytes.Equal(method, m.method) {
		return ReasonCSeqMismatch, replyCSeqMismatch
	}
	// RFC 3261 §18.3: on UDP a Content-Length larger than the body is an
	// error; a smaller one leaves extra bytes the parser ignores.
	if m.badContentLength || m.maxContentLength > len(m.data)-m.headerEnd {
		return ReasonBadContentLength, replyBadContentLength
	}
	if m.duplicate {
		return ReasonDuplicateHeader, replyDuplicateHeader
	}
	// pinhole routes only SIP, SIPS, tel and urn URIs; any other scheme gets
	// 416 (RFC 3261 §8.2.2.1, §16.3 step 2; RFC 4475 §3.3.2, §3.3.3), and
	// sipgo could not parse some of them (soap.beep://) to say so itself.
	if m.start == startRequest && !knownScheme(m.requestScheme()) {
		return ReasonBadScheme, replyBadScheme
	}
	if m.badAddress {
		if m.badEchoed {
			// The reply would copy the broken From or To (RFC 3261
			// §8.2.6.2) and be as unreadable as the request.
			return ReasonBadAddress, replyNone
		}
		return ReasonBadAddress, replyBadAddress
	}
	// RFC 3261 §16.3 step 6: a proxy answers 420 with Unsupported to a
	// Proxy-Require it does not understand; ACK and CANCEL are never
	// refused for an extension (RFC 3261 §8.2.2.3, §9.2).
	if m.proxyRequire && m.start == startRequest && string(m.method) != "ACK" && string(m.method) != "CANCEL" {
		return ReasonBadExtension, replyBadExtension
	}
	return ReasonOK, replyNone
}

// canReply tells whether an error response may be sent: only to a request
// (responses are never answered), never to an ACK (RFC 3261 §17.2.1), and
// only with a Via to answer to (RFC 3261 §8.2.6.2).
func (m *message) canReply() bool {
	if m.method == nil || string(m.method) == "ACK" {
		return false
	}
	return m.via.ok()
}

// cseqMethod parses CSeq = 1*DIGIT LWS Method, RFC 3261 §20.16, and returns
// the method. The number must not exceed 2^31-1 (RFC 3261 §8.1.1.5).
func (m *message) cseqMethod() ([]byte, bool) {
	v := m.data[m.cseqValue.off:m.cseqValue.end]
	i := 0
	for i < len(v) && isDigit(v[i]) {
		i++
	}
	if i == 0 || i > 10 {
		return nil, false
	}
	n, _ := parseUint(v[:i])
	if n > maxCSeq || i == len(v) || !isLWS(v[i]) {
		return nil, false
	}
	for i < len(v) && isLWS(v[i]) {
		i++
	}
	method := v[i:]
	if !sipsyntax.IsToken(method) {
		return nil, false
	}
	return method, true
}

// hasBareNUL reports whether b holds a NUL byte that is not the second
// byte of a quoted-pair.
func hasBareNUL(b []byte) bool {
	for off := 0; ; {
		i := bytes.IndexByte(b[off:], 0)
		if i < 0 {
			return false
		}
		i += off
		if i == 0 || b[i-1] != '\\' {
			return true
		}
		off = i + 1
	}
}

// knownScheme reports whether a Request-URI scheme is one pinhole routes:
// sip, sips, tel, and urn, which emergency calls use (urn:service:sos,
// RFC 5031) and which must never be refused at an edge.
func knownScheme(s []byte) bool {
	return sipheader.EqualFold(s, "sip") || sipheader.EqualFold(s, "sips") ||
		sipheader.EqualFold(s, "tel") || sipheader.EqualFold(s, "urn")
}

// requestScheme returns the scheme of the Request-URI of a valid
// Request-Line (classify checked its shape).
func (m *message) requestScheme() []byte {
	line := m.data[:m.headers]
	sp := bytes.IndexByte(line, ' ')
	uri := line[sp+1:]
	if c := bytes.IndexByte(uri, ':'); c > 0 {
		return uri[:c]
	}
	return nil
}
