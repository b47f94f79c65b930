package slowpath

import (
	"bytes"
	"strconv"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/sipheader"
	"github.com/pinhole-sip/pinhole/internal/sipsyntax"
)

// rawTransactionID appends to dst what transactionID appends for the
// request in msg arriving from source, read from the raw bytes without
// parsing the message. It recognises only the plain form nearly every
// device sends: an RFC 3261 branch, a top Via "SIP/2.0/<transport>
// host[:port];params" with no whitespace inside and no brackets, and
// "CSeq: <number> <method>". For anything else ok is false and the
// request is parsed as before: the key is an optimisation, so it may miss,
// but whenever ok it equals the parsed key (FuzzRawTransactionID), since a
// key that differed could answer one request with another's response.
func rawTransactionID(dst, msg, source []byte) (_ []byte, ok bool) {
	var via, cseq []byte
	crlf := []byte("\r\n")
	reqLine, rest, found := bytes.Cut(msg, crlf)
	if !found || bytes.ContainsAny(reqLine, "\r\n") {
		return dst, false
	}
	for len(rest) > 0 && (via == nil || cseq == nil) {
		var line []byte
		if line, rest, found = bytes.Cut(rest, crlf); !found {
			return dst, false // no end of headers
		}
		if bytes.ContainsAny(line, "\r\n") {
			// A bare CR or LF: parsers split such lines differently.
			return dst, false
		}
		if len(line) == 0 {
			break // the end of the headers
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // a folded line of another field (Via and CSeq check theirs)
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			return dst, false
		}
		name := bytes.TrimRight(line[:c], " \t")
		value := bytes.TrimSpace(line[c+1:])
		switch {
		case via == nil && (sipheader.EqualFold(name, "via") || sipheader.EqualFold(name, "v")):
			via = value
			if nextFolded(rest) {
				return dst, false
			}
		case cseq == nil && sipheader.EqualFold(name, "cseq"):
			cseq = value
			if nextFolded(rest) {
				return dst, false
			}
		}
	}
	if via == nil || cseq == nil {
		return dst, false
	}
	host, port, branch, ok := plainVia(via)
	if !ok {
		return dst, false
	}
	seq, method, ok := plainCSeq(cseq)
	if !ok {
		return dst, false
	}
	dst = append(dst, branch...)
	dst = append(dst, 0)
	for _, b := range host {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		dst = append(dst, b)
	}
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, int64(port), 10)
	dst = append(dst, 0)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, ' ')
	dst = append(dst, method...)
	dst = append(dst, 0)
	dst = append(dst, source...)
	return dst, true
}

func nextFolded(rest []byte) bool {
	return len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t')
}

// plainVia reads "SIP/2.0/<token> host[:port];params" (the first value of
// the field) and its branch, which must carry the RFC 3261 cookie.
func plainVia(v []byte) (host []byte, port int, branch []byte, ok bool) {
	if !bytes.HasPrefix(v, []byte("SIP/2.0/")) {
		return nil, 0, nil, false
	}
	v = v[len("SIP/2.0/"):]
	sp := bytes.IndexByte(v, ' ')
	if sp <= 0 || !sipsyntax.IsToken(v[:sp]) {
		return nil, 0, nil, false
	}
	v = v[sp+1:]
	semi := bytes.IndexByte(v, ';')
	if semi <= 0 {
		return nil, 0, nil, false
	}
	sentBy, params := v[:semi], v[semi:]
	if comma := bytes.IndexByte(params, ','); comma >= 0 {
		params = params[:comma]
	}
	host = sentBy
	if c := bytes.IndexByte(sentBy, ':'); c >= 0 {
		host = sentBy[:c]
		digits := sentBy[c+1:]
		if len(digits) == 0 || len(digits) > 5 {
			return nil, 0, nil, false
		}
		for _, d := range digits {
			if d < '0' || d > '9' {
				return nil, 0, nil, false
			}
			port = port*10 + int(d-'0')
		}
		if port == 0 || port > 65535 {
			return nil, 0, nil, false
		}
	}
	if len(host) == 0 {
		return nil, 0, nil, false
	}
	for _, b := range host {
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '.' || b == '-') {
			return nil, 0, nil, false
		}
	}
	// ";name[=value]" repeated, the first branch wins (as sipgo's Get).
	for len(params) > 0 {
		if params[0] != ';' {
			return nil, 0, nil, false
		}
		params = params[1:]
		end := bytes.IndexByte(params, ';')
		if end < 0 {
			end = len(params)
		}
		p := params[:end]
		params = params[end:]
		name, value, _ := bytes.Cut(p, []byte("="))
		if !sipsyntax.IsToken(name) || (len(value) > 0 && !sipsyntax.IsToken(value)) {
			return nil, 0, nil, false
		}
		if branch == nil && string(name) == "branch" {
			branch = value
		}
	}
	if len(branch) <= len(sip.RFC3261BranchMagicCookie) || !bytes.HasPrefix(branch, []byte(sip.RFC3261BranchMagicCookie)) {
		return nil, 0, nil, false
	}
	return host, port, branch, true
}

// plainCSeq reads "<number> <method>".
func plainCSeq(v []byte) (uint64, []byte, bool) {
	sp := bytes.IndexByte(v, ' ')
	if sp <= 0 || sp > 10 {
		return 0, nil, false
	}
	var seq uint64
	for _, d := range v[:sp] {
		if d < '0' || d > '9' {
			return 0, nil, false
		}
		seq = seq*10 + uint64(d-'0')
	}
	if seq > 1<<32-1 {
		return 0, nil, false
	}
	method := v[sp+1:]
	if !sipsyntax.IsToken(method) {
		return 0, nil, false
	}
	return seq, method, true
}
