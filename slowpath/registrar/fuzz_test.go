package registrar

import (
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// FuzzProcess feeds arbitrary REGISTERs (whatever sipgo's parser accepts)
// to the registrar: it must answer every one with a final status, never
// panic, and never store more contacts than allowed or a lapsed binding.
func FuzzProcess(f *testing.F) {
	for _, seed := range []string{
		"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1;rport\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: a\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@198.51.100.7>;expires=120;q=0.5\r\nContent-Length: 0\r\n\r\n",
		"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: a\r\nCSeq: 2 REGISTER\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n",
		"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:bob@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: b\r\nCSeq: 7 REGISTER\r\nContact: <sip:bob@10.0.0.1;ob>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\r\nSupported: outbound, path\r\nPath: <sip:edge.example.net;lr>\r\nRequire: path\r\nContent-Length: 0\r\n\r\n",
		"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: a\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@h:1>, <sip:b@h:2>;expires=0, <sip:c@h:3>;q=0\r\nExpires: 30\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		msg, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Method != sip.REGISTER {
			return
		}
		now := t0
		store, err := location.Open(location.Options{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		r, err := New(Config{Domains: []string{"example.com"}, MinExpires: 60, MaxExpires: 3600, DefaultExpires: 1800, MaxContacts: 3,
			Now: func() time.Time { return now }}, store, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetSource(public.Remote.String())
		for range 2 { // twice: the second meets what the first stored
			res := r.Process(req, public)
			if res == nil || res.StatusCode < 200 || res.StatusCode > 699 {
				t.Fatalf("no final response: %v", res)
			}
			if res.StatusCode == 200 {
				// The contact's expires parameter as a device reads it,
				// not text: "<sip:0;expires=0>" is a URI parameter
				// inside the brackets, which the registrar rightly
				// ignores (RFC 3261 §20.10).
				for _, h := range res.GetHeaders("Contact") {
					var uri sip.Uri
					params := sip.NewParams()
					if _, err := sip.ParseAddressValue(h.Value(), &uri, &params); err != nil {
						t.Fatalf("200 lists a Contact sipgo cannot read back: %q: %v", h.Value(), err)
					}
					v, ok := params.Get("expires")
					if n, err := strconv.Atoi(v); !ok || err != nil || n <= 0 {
						t.Fatalf("200 lists a lapsed contact or one without an expiry: %s", h.Value())
					}
				}
			}
		}
		if _, n := store.Len(); n > 3 {
			t.Fatalf("%d bindings stored, max_contacts is 3", n)
		}
	})
}
