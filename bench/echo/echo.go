// Package echo is a trivial SIP responder: it answers every request with a
// canned reply and keeps no state, so that the load generator can be
// measured against something that costs next to nothing. Whatever rate the
// generator reaches against it is the generator's ceiling on that machine;
// a server measured at that rate is limited by the generator, not by itself.
//
// It answers REGISTER without credentials with 401 (one MD5 and one SHA-256
// challenge, a fixed nonce), REGISTER with credentials (unchecked) with 200,
// INVITE with 200, ACK with nothing, any other request with 200, a CRLF
// keepalive with CRLF and a STUN Binding request with a Binding success.
// Receiving and sending are batched with recvmmsg/sendmmsg.
package echo

import (
	"bytes"
	"strconv"

	"github.com/pinhole-sip/pinhole/internal/sipheader"
)

// Nonce is the fixed nonce of the responder's challenges.
const Nonce = "echo-nonce-0123456789abcdef"

// Answer appends the reply to the datagram req to dst and reports whether
// there is one.
func Answer(dst, req []byte) ([]byte, bool) {
	if len(req) <= 4 && len(bytes.Trim(req, "\r\n")) == 0 && len(req) > 0 {
		return append(dst, "\r\n"...), true // RFC 5626 §4.4.1 pong
	}
	if len(req) >= 20 && req[0] == 0x00 && req[1] == 0x01 && bytes.Equal(req[4:8], []byte{0x21, 0x12, 0xa4, 0x42}) {
		dst = append(dst, 0x01, 0x01, 0x00, 0x00) // Binding success, no attributes
		return append(dst, req[4:20]...), true
	}
	sp := bytes.IndexByte(req, ' ')
	if sp <= 0 || bytes.HasPrefix(req, []byte("SIP/2.0")) {
		return dst, false // a response, or junk
	}
	method := req[:sp]
	if string(method) == "ACK" {
		return dst, false
	}
	code, reason := 200, "OK"
	if string(method) == "REGISTER" && header(req, sipheader.Authorization) == nil {
		code, reason = 401, "Unauthorized"
	}
	dst = append(dst, "SIP/2.0 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	dst = append(dst, "\r\n"...)
	hasTag := false
	complete := 0
	for line, rest := nextLine(req); line != nil || len(rest) > 0; line, rest = nextLine(rest) {
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name := bytes.TrimSpace(line[:colon])
		switch sipheader.Lookup(name) {
		case sipheader.Via, sipheader.From, sipheader.CallID, sipheader.CSeq:
			dst = append(dst, line...)
			dst = append(dst, "\r\n"...)
			complete++
		case sipheader.To:
			dst = append(dst, line...)
			hasTag = bytes.Contains(line, []byte(";tag="))
			if !hasTag {
				dst = append(dst, ";tag=echo"...)
			}
			dst = append(dst, "\r\n"...)
			complete++
		case sipheader.Contact:
			if string(method) == "REGISTER" && code == 200 {
				dst = append(dst, line...)
				dst = append(dst, ";expires=3600\r\n"...)
			}
		}
	}
	if complete < 4 {
		return dst[:0], false // not enough of a request to answer
	}
	if code == 401 {
		dst = append(dst, "WWW-Authenticate: Digest realm=\"echo\", nonce=\""+Nonce+"\", algorithm=SHA-256, qop=\"auth\"\r\n"+
			"WWW-Authenticate: Digest realm=\"echo\", nonce=\""+Nonce+"\", algorithm=MD5, qop=\"auth\"\r\n"...)
	}
	if string(method) == "INVITE" {
		dst = append(dst, "Contact: <sip:echo@127.0.0.1>\r\n"...)
	}
	return append(dst, "Content-Length: 0\r\n\r\n"...), true
}

// header returns the value of the first header field named name, or nil.
func header(req []byte, name sipheader.Name) []byte {
	for line, rest := nextLine(req); line != nil || len(rest) > 0; line, rest = nextLine(rest) {
		if len(line) == 0 {
			return nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon > 0 && sipheader.Lookup(bytes.TrimSpace(line[:colon])) == name {
			return bytes.TrimSpace(line[colon+1:])
		}
	}
	return nil
}

func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil
	}
	line = b[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if line == nil {
		line = []byte{}
	}
	return line, b[i+1:]
}
