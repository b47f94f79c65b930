package rawreply

import (
	"net/netip"
	"strconv"

	"github.com/pinhole-sip/pinhole/internal/digest"
)

// Head is what a response copies from its REGISTER (sipgo's
// NewResponseFromRequest): the Vias, top first, with the top one
// described by TopVia (ParseVia), and the From, To, Call-ID and CSeq
// values, trimmed, with FromBare and ToBare set for a bare URI that
// sipgo prints inside angle brackets (ParseAddress). The slices alias the
// request.
type Head struct {
	Vias     [][]byte
	TopVia   *Via
	From     []byte
	To       []byte // without a tag: the writer adds one
	FromBare bool
	ToBare   bool
	CallID   []byte
	CSeq     uint32
}

// TopVia writes a reply's top Via value from the request's (AppendTopVia
// or AppendRportVia).
type TopVia func(dst, v []byte, p *Via, src netip.AddrPort) []byte

// AppendHead appends a response's status line (status, with its CRLF) and
// the headers sipgo's NewResponseFromRequest copies from the request, in
// its order: the Vias (the top one written by top), From, To with the tag
// tagHi:tagLo, Call-ID and CSeq. A 200 and a 401 differ only in what
// follows.
func AppendHead(b []byte, status string, h *Head, top TopVia, remote netip.AddrPort, tagHi, tagLo uint64) []byte {
	b = append(b, status...)
	b = append(b, "Via: "...)
	b = top(b, h.Vias[0], h.TopVia, remote)
	b = append(b, "\r\n"...)
	for _, v := range h.Vias[1:] {
		b = append(b, "Via: "...)
		b = append(b, v...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "From: "...)
	b = appendAddress(b, h.From, h.FromBare)
	b = append(b, "\r\nTo: "...)
	b = appendAddress(b, h.To, h.ToBare)
	b = append(b, ";tag="...)
	b = AppendUUID(b, tagHi, tagLo)
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, h.CallID...)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendUint(b, uint64(h.CSeq), 10)
	return append(b, " REGISTER\r\n"...)
}

// appendAddress appends a From or To value as sipgo prints it.
func appendAddress(b, v []byte, bare bool) []byte {
	if !bare {
		return append(b, v...)
	}
	b = append(b, '<')
	b = append(b, v...)
	return append(b, '>')
}

// AppendChallenge appends the 401 the registrar sends to a REGISTER
// without credentials (slowpath/auth through sipgo's
// NewResponseFromRequest): the head (the top Via with rport and received
// only when rport was asked, RFC 3581 §4), Content-Length, then one
// WWW-Authenticate per algorithm, most preferred first (RFC 8760 §2.3), all
// in realm rlm and sharing nonce.
func AppendChallenge(b []byte, h *Head, remote netip.AddrPort, tagHi, tagLo uint64, rlm digest.Realm, algs []digest.Algorithm, nonce []byte) []byte {
	return AppendRechallenge(b, h, remote, tagHi, tagLo, rlm, algs, nonce, false)
}

// AppendRechallenge is AppendChallenge for a REGISTER whose credentials
// earned a new challenge: a nonce pinhole did not issue (stale false), or
// the right response to an expired nonce (stale true: RFC 7616 §3.3, the
// client retries with the new nonce without asking its user).
func AppendRechallenge(b []byte, h *Head, remote netip.AddrPort, tagHi, tagLo uint64, rlm digest.Realm, algs []digest.Algorithm, nonce []byte, stale bool) []byte {
	b = AppendHead(b, "SIP/2.0 401 Unauthorized\r\n", h, AppendRportVia, remote, tagHi, tagLo)
	b = append(b, "Content-Length: 0\r\n"...)
	for _, alg := range algs {
		b = append(b, "WWW-Authenticate: "...)
		b = digest.AppendChallenge(b, rlm, alg, nonce, stale)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// AppendUUID writes a random (version 4) UUID from the 128 bits hi:lo,
// as sipgo's tags are (RFC 3261 §19.3: at least 32 random bits; here 122).
func AppendUUID(b []byte, hi, lo uint64) []byte {
	var u [16]byte
	for i := 0; i < 8; i++ {
		u[i] = byte(hi >> (56 - 8*i))
		u[8+i] = byte(lo >> (56 - 8*i))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hex[c>>4], hex[c&0x0f])
	}
	return b
}
