package sanity

import (
	"bytes"
	"unicode"

	"github.com/pinhole-sip/pinhole/internal/sipheader"
)

// tagLen is the length of the To tag added to a response, 16 hex digits of
// a 64-bit hash: RFC 3261 §19.3 asks for 32 bits of randomness at least.
const tagLen = 16

// appendReply appends the error response to the request in m.
//
// RFC 3261 §8.2.6.2: the response copies the Via header fields, From,
// Call-ID and CSeq of the request, and To with a tag added when it has none.
// Via fields are copied whole and in order, compact or folded as they came;
// a CSeq that does not parse is left out rather than echoed. The caller
// sends the datagram to the request's source, RFC 3261 §18.2.2.
func (m *message) appendReply(dst []byte, st reply) []byte {
	data := m.data
	dst = append(dst, statusLines[st]...)

	// A second pass over the header section finds every Via; the first pass
	// kept only the first, so that the passing path needs no storage.
	for p := m.headers; p < len(data); {
		f, next, fs := nextField(data, p)
		if fs == fieldEnd || fs == fieldTruncated {
			break
		}
		if fs == fieldOK && f.name == hdrVia {
			dst = appendLine(dst, data[f.whole.off:f.whole.end])
		}
		p = next
	}

	if m.from.ok() {
		dst = appendLine(dst, data[m.from.off:m.from.end])
	}
	if m.to.ok() {
		to := data[m.to.off:m.to.end]
		if !hasTag(data[m.toValue.off:m.toValue.end]) {
			// SEMI may have white space, a fold too, before it (RFC
			// 3261 §25.1), but sipgo reads "sip:h:0 ;tag=" as port "0 "
			// and fails on the reply: the tag goes right after the value.
			// What sipgo trims from a value's end (strings.TrimSpace:
			// Unicode white space, form feed included) must go too, or
			// it ends up inside the value once the tag follows it.
			to = bytes.TrimRightFunc(to, unicode.IsSpace)
			dst = append(dst, to...)
			dst = appendTag(dst, data[m.callIDValue.off:m.callIDValue.end])
		} else {
			dst = append(dst, to...)
		}
		dst = append(dst, "\r\n"...)
	}
	if m.callID.ok() {
		dst = appendLine(dst, data[m.callID.off:m.callID.end])
	}
	if m.cseq.ok() {
		if _, ok := m.cseqMethod(); ok {
			dst = appendLine(dst, data[m.cseq.off:m.cseq.end])
		}
	}
	if st == replyBadExtension {
		dst = m.appendUnsupported(dst)
	}
	return append(dst, "Server: pinhole\r\nContent-Length: 0\r\n\r\n"...)
}

// appendUnsupported appends the Unsupported header field a 420 must carry,
// listing the Proxy-Require option-tags not understood (RFC 3261 §16.3
// step 6, §20.40).
func (m *message) appendUnsupported(dst []byte) []byte {
	data := m.data
	dst = append(dst, "Unsupported: "...)
	sep := false
	for p := m.headers; p < len(data); {
		f, next, fs := nextField(data, p)
		if fs == fieldEnd || fs == fieldTruncated {
			break
		}
		if fs == fieldOK && f.name == hdrProxyRequire {
			dst, sep = appendTags(dst, data[f.value.off:f.value.end], sep)
		}
		p = next
	}
	return append(dst, "\r\n"...)
}

func appendLine(dst, line []byte) []byte {
	dst = append(dst, line...)
	return append(dst, "\r\n"...)
}

// appendTag appends ";tag=" and a tag derived from the Call-ID, so that the
// retransmissions of a request get the same To tag (RFC 3261 §8.2.6.2).
// The hash is 64-bit FNV-1a.
func appendTag(dst, callID []byte) []byte {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
		hexDigit = "0123456789abcdef"
	)
	h := uint64(offset64)
	for _, c := range callID {
		h ^= uint64(c)
		h *= prime64
	}
	dst = append(dst, ";tag="...)
	for i := tagLen - 1; i >= 0; i-- {
		dst = append(dst, hexDigit[(h>>(4*uint(i)))&0xf])
	}
	return dst
}

// hasTag reports whether a From or To value (name-addr or addr-spec,
// RFC 3261 §20.20) has a tag parameter. Parameters inside <> belong to the
// URI; without <> every parameter is the header's (RFC 3261 §20.10).
func hasTag(v []byte) bool {
	i := paramsStart(v)
	for i < len(v) {
		if v[i] != ';' {
			i++
			continue
		}
		i++
		for i < len(v) && isLWS(v[i]) {
			i++
		}
		if i+3 > len(v) || !sipheader.EqualFold(v[i:i+3], "tag") {
			continue
		}
		i += 3
		for i < len(v) && isLWS(v[i]) {
			i++
		}
		if i < len(v) && v[i] == '=' {
			return true
		}
	}
	return false
}

// paramsStart returns the offset after the closing '>' of a name-addr, or 0
// for an addr-spec. Quoted display names may hold '<' and '>'.
func paramsStart(v []byte) int {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '<':
			for j := i + 1; j < len(v); j++ {
				if v[j] == '>' {
					return j + 1
				}
			}
			return len(v)
		}
	}
	return 0
}
