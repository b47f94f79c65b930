package registrar

import (
	"net/netip"
	"strconv"
	"time"
	"unsafe"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/rawreply"
)

// AppendOK appends to b the 200 that ok builds through sipgo for a
// REGISTER that Register applied as a, written from bytes (the stateless
// path's raw 200, slowpath/raw200.go): the head copied from the request
// (h; the top Via with rport and received as sipgo and addReceived add
// them, rawreply.AppendTopVia), Content-Length, one Contact per live
// binding in ok's order with the same parameters, Require as ok adds it,
// and Date. tagHi:tagLo is the To tag.
//
// It reports false, having written something unusable, when a stored
// Contact is not a URI that sipgo prints back unchanged
// (rawreply.ParseURI): another path may have stored one, and ok prints
// it as sipgo reparses it; or when ok would echo Path. The caller then
// builds the 200 with OK.
func AppendOK(b []byte, h *rawreply.Head, remote netip.AddrPort, tagHi, tagLo uint64, f *Fields, a *Applied) ([]byte, bool) {
	b = rawreply.AppendHead(b, "SIP/2.0 200 OK\r\n", h, rawreply.AppendTopVia, remote, tagHi, tagLo)
	b = append(b, "Content-Length: 0\r\n"...)
	location.SortByQContact(a.Stored)
	outbound := false
	var u rawreply.URI
	for i := range a.Stored {
		bd := &a.Stored[i]
		left := int(bd.Expires.Sub(a.Now) / time.Second)
		if left <= 0 {
			continue
		}
		if !rawreply.ParseURI(unsafe.Slice(unsafe.StringData(bd.Contact), len(bd.Contact)), &u) {
			return b, false
		}
		b = append(b, "Contact: <"...)
		b = append(b, bd.Contact...)
		b = append(b, ">;expires="...)
		b = strconv.AppendInt(b, int64(left), 10)
		if bd.Q != 1000 {
			b = append(b, ";q="...)
			b = append(b, FormatQ(bd.Q)...)
		}
		if bd.Instance != "" {
			b = append(b, `;+sip.instance="<`...)
			b = append(b, bd.Instance...)
			b = append(b, `>"`...)
		}
		if bd.RegID != 0 {
			b = append(b, ";reg-id="...)
			b = strconv.AppendUint(b, uint64(bd.RegID), 10)
			outbound = true
		}
		b = append(b, "\r\n"...)
	}
	if outbound && f.SupportsOutbound {
		b = append(b, "Require: outbound\r\n"...)
	}
	if a.PathOK && len(f.Path) > 0 && f.SupportsPath {
		// ok echoes Path (RFC 3327 §5.3). The raw path never reads one
		// (the scanner refuses Path), so it is left to ok, not written
		// here untested.
		return b, false
	}
	b = append(b, "Date: "...)
	b = append(b, httpDate(a.Now)...)
	return append(b, "\r\n\r\n"...), true
}
