package registrar

import (
	"net/netip"
	"testing"

	"github.com/pinhole-sip/pinhole/slowpath/trust"
)

// TestPathOnlyFromTrustedProxies: RFC 3327 §5 lets a registrar use Path
// from proxies it trusts. A device that writes its own Path (naming
// pinhole, to loop, or a third party, to reflect calls) has it ignored:
// not stored, not echoed. A peer on the trust list keeps it.
func TestPathOnlyFromTrustedProxies(t *testing.T) {
	const path = "<sip:edge.example.com;lr>"
	for _, tt := range []struct {
		name    string
		trusted *trust.List
		want    string
	}{
		{name: "device", trusted: nil, want: ""},
		{name: "other prefix", trusted: trust.New(netip.MustParsePrefix("10.0.0.0/8")), want: ""},
		{name: "trusted proxy", trusted: trust.New(netip.MustParsePrefix("198.51.100.0/24")), want: path},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.r.cfg.Trusted = tt.trusted
			res := f.register("path-1", 1, public, "Contact: <sip:alice@192.0.2.10:5060>", "Path: "+path, "Supported: path")
			if res.StatusCode != 200 {
				t.Fatalf("REGISTER got %d", res.StatusCode)
			}
			bs := f.store.Lookup("alice@example.com")
			if len(bs) != 1 || bs[0].Path != tt.want {
				t.Fatalf("stored %+v, want one binding with Path %q", bs, tt.want)
			}
			echoed := ""
			if h := res.GetHeader("Path"); h != nil {
				echoed = h.Value()
			}
			if echoed != tt.want {
				t.Errorf("200 echoes Path %q, want %q", echoed, tt.want)
			}
		})
	}
}
