package sanity

import "bytes"

// FrameStatus says what [Frame] found at the start of a stream's buffer.
type FrameStatus uint8

const (
	// FrameMore: the buffer ends before the next message does; read more.
	FrameMore FrameStatus = iota
	// FrameMessage: data[:Len] is one whole message, framed by its
	// Content-Length (RFC 3261 §18.3). Check it like a datagram.
	FrameMessage
	// FrameNoLength: data[:Len] is a message without Content-Length, which
	// RFC 3261 §18.3 requires on a stream but RFC 2543 did not (RFC 4475
	// §3.4.1, inv2543). Its body is taken to run to the next line that
	// starts a SIP message, or to the end of what has arrived; the caller
	// adds the Content-Length before the parser sees it.
	FrameNoLength
	// FrameCRLF: data[:Len] is CR and LF bytes between messages, which a
	// receiver ignores (RFC 3261 §7.5) or answers as a keepalive
	// (RFC 5626 §3.5.1).
	FrameCRLF
	// FrameJunk: data[:Len] is one line that starts no SIP message; skip
	// it and look for the next start line.
	FrameJunk
	// FrameBroken: no message boundary can be found past here: a
	// Content-Length that is not one number, a message or line longer
	// than the limit. data[:Len] is what to answer (Check builds the 400
	// or 513); the stream must then be closed.
	FrameBroken
)

// Framed is the result of [Frame].
type Framed struct {
	Status FrameStatus
	Len    int // bytes of data the status covers
	Body   int // FrameMessage, FrameNoLength: offset of the body
	// TooLarge: FrameBroken because the message exceeds the limit.
	TooLarge bool
}

// CheckBroken builds the verdict on a stream that [Frame] found broken:
// 513 for a message over the limit (RFC 3261 §21.5.14), else what Check
// says of the header section (400 Bad Content-Length). data is data[:f.Len]
// of the buffer given to Frame.
func CheckBroken(dst, data []byte, f Framed, lim Limits) Verdict {
	return check(dst, data, lim, f.TooLarge)
}

// Frame finds the first message in a stream's buffer, so that each
// message can be vetted by [Check] whole before a parser sees it. It looks
// at the header section only to find Content-Length; maxBytes (0: no
// limit) bounds the message as Limits.MaxMessageBytes does a datagram.
// Frame neither keeps nor changes data and does not allocate.
func Frame(data []byte, maxBytes int) Framed {
	if len(data) == 0 {
		return Framed{Status: FrameMore}
	}
	if data[0] == '\r' || data[0] == '\n' {
		n := 0
		for n < len(data) && (data[n] == '\r' || data[n] == '\n') {
			n++
		}
		return Framed{Status: FrameCRLF, Len: n}
	}
	over := func(n int) bool { return maxBytes > 0 && n > maxBytes }

	eol := bytes.Index(data, crlf)
	if eol < 0 {
		if over(len(data)) {
			return Framed{Status: FrameBroken, Len: len(data), TooLarge: true}
		}
		return Framed{Status: FrameMore}
	}
	var method []byte
	if classify(data[:eol], &method) == startNotSIP {
		return Framed{Status: FrameJunk, Len: eol + 2}
	}

	end := bytes.Index(data, crlfcrlf)
	if end < 0 {
		if over(len(data)) {
			return Framed{Status: FrameBroken, Len: len(data), TooLarge: true}
		}
		return Framed{Status: FrameMore}
	}
	body := end + 4
	if over(body) {
		return Framed{Status: FrameBroken, Len: body, TooLarge: true}
	}
	length, found, ok := contentLength(data[:body], eol+2)
	switch {
	case !ok:
		return Framed{Status: FrameBroken, Len: body}
	case !found:
		return Framed{Status: FrameNoLength, Len: body + legacyBody(data[body:]), Body: body}
	case over(body + length):
		return Framed{Status: FrameBroken, Len: body, TooLarge: true}
	case len(data) < body+length:
		return Framed{Status: FrameMore}
	}
	return Framed{Status: FrameMessage, Len: body + length, Body: body}
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// contentLength reads the Content-Length of a header section (which ends
// with its empty line) starting at the first header line p. ok is false
// when a value is not a number or two values are given: the body's end is
// then unknown (RFC 4475 §3.1.2.3 ncl, §3.3.9 mcl01).
func contentLength(hdr []byte, p int) (n int, found, ok bool) {
	for {
		f, next, st := nextField(hdr, p)
		switch st {
		case fieldEnd, fieldTruncated:
			return n, found, true
		case fieldOK:
			if f.name == hdrContentLength {
				v, good := parseUint(hdr[f.value.off:f.value.end])
				if !good || found || v > maxCSeq {
					return 0, found, false
				}
				n, found = v, true
			}
		}
		p = next
	}
}

// legacyBody returns how much of rest is the body of a message without
// Content-Length: up to the first line that starts a SIP message, or all
// of it.
func legacyBody(rest []byte) int {
	for p := 0; p < len(rest); {
		i := bytes.Index(rest[p:], crlf)
		if i < 0 {
			break
		}
		var method []byte
		if i > 0 && classify(rest[p:p+i], &method) != startNotSIP {
			return p
		}
		p += i + 2
	}
	return len(rest)
}

// AppendContentLength appends msg, a message without Content-Length whose
// body starts at body, with a Content-Length field added at the end of its
// header section, so that a stream parser can frame it.
func AppendContentLength(dst, msg []byte, body int) []byte {
	dst = append(dst, msg[:body-2]...)
	dst = append(dst, "Content-Length: "...)
	dst = appendInt(dst, len(msg)-body)
	dst = append(dst, "\r\n\r\n"...)
	return append(dst, msg[body:]...)
}

func appendInt(dst []byte, n int) []byte {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}
