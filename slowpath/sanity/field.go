package sanity

import (
	"bytes"

	"github.com/pinhole-sip/pinhole/internal/sipheader"
	"github.com/pinhole-sip/pinhole/internal/sipsyntax"
)

// field is one header field: a line "name HCOLON value" and the folded
// continuation lines that follow it (RFC 3261 §7.3.1).
type field struct {
	name  hdr
	whole span // from the name to the end of the last line, without its CRLF
	value span // after the colon to the end of the last line, untrimmed
}

// fieldStatus is what nextField found at an offset.
type fieldStatus uint8

const (
	fieldOK        fieldStatus = iota
	fieldMalformed             // no colon, a bad name, a bare CR or an orphan continuation line
	fieldEnd                   // the empty line ending the header section
	fieldTruncated             // the data ends before the field is known to be complete
)

// nextField reads the header field starting at p and returns the offset of
// the next line. Lines end with CRLF, as sipgo requires (RFC 3261 §7). A field
// is complete only once the first byte of the following line is seen: until
// then a continuation line may still follow, so a field cut by the end of
// the data is reported as truncated rather than returned half.
func nextField(data []byte, p int) (field, int, fieldStatus) {
	var f field
	cr, st := lineEnd(data, p)
	if st != fieldOK {
		return f, cr + 1, st
	}
	if cr == p {
		return f, p + 2, fieldEnd
	}
	if isWS(data[p]) {
		// A continuation line with no field to continue.
		return f, cr + 2, fieldMalformed
	}
	end, next := cr, cr+2
	for {
		if next >= len(data) {
			return f, next, fieldTruncated
		}
		if !isWS(data[next]) {
			break
		}
		cr, st = lineEnd(data, next)
		if st != fieldOK {
			return f, cr + 1, st
		}
		end, next = cr, cr+2
	}

	i := p
	for i < end && sipsyntax.IsTokenChar(data[i]) {
		i++
	}
	nameEnd := i
	for i < end && isWS(data[i]) {
		i++
	}
	if nameEnd == p || i == end || data[i] != ':' {
		return f, next, fieldMalformed
	}
	f.name = lookup(data[p:nameEnd])
	f.whole = span{p, end}
	f.value = span{i + 1, end}
	return f, next, fieldOK
}

// lineEnd returns the offset of the CR ending the line that starts at p.
// A CR not followed by LF makes the line malformed, as it does for sipgo;
// the returned offset is then that CR.
func lineEnd(data []byte, p int) (int, fieldStatus) {
	i := bytes.IndexByte(data[p:], '\r')
	if i < 0 {
		return len(data) - 1, fieldTruncated
	}
	cr := p + i
	if cr+1 >= len(data) {
		return cr, fieldTruncated
	}
	if data[cr+1] != '\n' {
		return cr, fieldMalformed
	}
	return cr, fieldOK
}

// lookup sorts a header name into the fields Check looks at.
func lookup(name []byte) hdr {
	switch sipheader.Lookup(name) {
	case sipheader.Via:
		return hdrVia
	case sipheader.From:
		return hdrFrom
	case sipheader.To:
		return hdrTo
	case sipheader.CallID:
		return hdrCallID
	case sipheader.CSeq:
		return hdrCSeq
	case sipheader.ContentLength:
		return hdrContentLength
	case sipheader.MaxForwards:
		return hdrMaxForwards
	case sipheader.Expires:
		return hdrExpires
	case sipheader.Contact:
		return hdrContact
	case sipheader.ProxyRequire:
		return hdrProxyRequire
	}
	// Content-Type is no field the fast path reads, so sipheader leaves it
	// out; "c" is its compact form (RFC 3261 §20.15).
	if sipheader.EqualFold(name, "content-type") || sipheader.EqualFold(name, "c") {
		return hdrContentType
	}
	return hdrOther
}

// unknownTag reports whether a Proxy-Require value (option-tag *(COMMA
// option-tag), RFC 3261 §20.29) names a tag outside
// supportedProxyExtensions.
func unknownTag(v []byte) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		if i < 0 {
			i = len(v)
		}
		tag := v[:i]
		s := trimLWS(tag, span{0, len(tag)})
		if tag = tag[s.off:s.end]; len(tag) > 0 && !knownTag(tag) {
			return true
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return false
}

func knownTag(tag []byte) bool {
	for _, t := range supportedProxyExtensions {
		if sipheader.EqualFold(tag, t) {
			return true
		}
	}
	return false
}

// appendTags appends the option-tags of v that are not supported,
// separated by ", ", after the ones dst already holds (sep says whether
// one was written).
func appendTags(dst, v []byte, sep bool) ([]byte, bool) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		if i < 0 {
			i = len(v)
		}
		tag := v[:i]
		s := trimLWS(tag, span{0, len(tag)})
		if tag = tag[s.off:s.end]; len(tag) > 0 && !knownTag(tag) && sipsyntax.IsToken(tag) {
			if sep {
				dst = append(dst, ", "...)
			}
			dst, sep = append(dst, tag...), true
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return dst, sep
}

// hasPrefixFold reports whether b starts with the lower-case ASCII string
// prefix, ignoring case.
func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && sipheader.EqualFold(b[:len(prefix)], prefix)
}

// indexFold returns the first index of the lower-case ASCII string s in b,
// ignoring case, or -1.
func indexFold(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if sipheader.EqualFold(b[i:i+len(s)], s) {
			return i
		}
	}
	return -1
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isAlpha(c byte) bool { return 'a' <= lower(c) && lower(c) <= 'z' }

func isWS(c byte) bool { return c == ' ' || c == '\t' }

// isLWS is true for the bytes of linear white space inside a field value,
// where CR and LF only occur as part of a fold.
func isLWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func allDigits(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// parseUint parses a decimal number surrounded by optional linear white
// space. Values above 2^31-1 saturate: every limit checked here is lower.
func parseUint(b []byte) (int, bool) {
	i, j := 0, len(b)
	for i < j && isLWS(b[i]) {
		i++
	}
	for j > i && isLWS(b[j-1]) {
		j--
	}
	if i == j {
		return 0, false
	}
	n := 0
	for _, c := range b[i:j] {
		if !isDigit(c) {
			return 0, false
		}
		if n <= maxCSeq {
			n = n*10 + int(c-'0')
		}
	}
	return n, true
}

// trimLWS returns s without leading and trailing linear white space.
func trimLWS(data []byte, s span) span {
	for s.off < s.end && isLWS(data[s.off]) {
		s.off++
	}
	for s.end > s.off && isLWS(data[s.end-1]) {
		s.end--
	}
	return s
}
