package scan

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/slowpath/sanity"
)

// FuzzScanVsSipgo: whenever Scan accepts a datagram, the slow path's
// sanity filter passes it, and when sipgo's parser accepts it too they
// agree on every field the fast path reads.
func FuzzScanVsSipgo(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(strings.ReplaceAll(good, "Via:", "v:")))
	f.Add([]byte(strings.Replace(good, "Expires: 600", "Supported: path, outbound\r\nUser-Agent: x", 1)))
	parser := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Register
		if Scan(data, lim, &r) != OK {
			return
		}
		if v := sanity.Check(nil, data, sanity.Limits{MaxMessageBytes: lim.MaxMessageBytes, MaxHeaders: lim.MaxHeaders}); v.Action != sanity.Pass {
			t.Fatalf("scan accepted what sanity refuses (%v)", v.Reason)
		}
		msg, err := parser.ParseSIP(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Method != sip.REGISTER {
			t.Fatalf("scan accepted a non-REGISTER sipgo reads as %T", msg)
		}
		if id := req.CallID(); id == nil || id.Value() != string(r.CallID) {
			t.Errorf("Call-ID: sipgo %v, scan %q", id, r.CallID)
		}
		if cs := req.CSeq(); cs == nil || cs.SeqNo != r.CSeq || cs.MethodName != sip.REGISTER {
			t.Errorf("CSeq: sipgo %v, scan %d", cs, r.CSeq)
		}
		if n := len(req.GetHeaders("Via")); n != r.NumVias {
			t.Errorf("Vias: sipgo %d, scan %d", n, r.NumVias)
		}
		if n := len(req.GetHeaders("Contact")); n != r.NumContact {
			t.Errorf("Contacts: sipgo %d, scan %d", n, r.NumContact)
		}
		if h := req.GetHeader("Expires"); (h != nil) != (r.Expires != nil) {
			t.Errorf("Expires: sipgo %v, scan %q", h, r.Expires)
		}
		if h := req.GetHeader("User-Agent"); (h != nil) != (r.UserAgent != nil) || (h != nil && h.Value() != string(r.UserAgent)) {
			t.Errorf("User-Agent: sipgo %v, scan %q", h, r.UserAgent)
		}
		if h := req.GetHeader("Supported"); (h != nil) != (r.Supported != nil) || (h != nil && h.Value() != string(r.Supported)) {
			t.Errorf("Supported: sipgo %v, scan %q", h, r.Supported)
		}
	})
}
