package rawreply

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// request is a REGISTER with value as its To and From (without a tag)
// and contact as its Contact.
func request(value, contact string) []byte {
	return []byte("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n" +
		"From: " + value + "\r\nTo: " + value + "\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContact: " + contact + "\r\nContent-Length: 0\r\n\r\n")
}

// FuzzAddressVsSipgo: a From or To value ParseAddress accepts is one
// sipgo parses and prints back byte for byte (a bare one inside angle
// brackets), with the user and host
// ParseAddress found; a Contact ParsableContact accepts is one sipgo
// parses.
func FuzzAddressVsSipgo(f *testing.F) {
	f.Add(`"Alice Smith" <sip:alice@example.com;user=phone>;x=1`, `<sip:alice@10.0.0.1:5060;transport=udp>;+sip.instance="<urn:uuid:1>";reg-id=1`)
	f.Add(`<sips:bob.b@EXAMPLE.com:5061>`, `"B" <sip:b@h>;expires=60`)
	f.Add(`<sip:example.com>;tag=1`, `*`)
	f.Add(`sip:alice@example.com`, `<sip:alice@10.0.0.1>`)
	parser := sip.NewParser()
	f.Fuzz(func(t *testing.T, value, contact string) {
		var a Address
		verbatim := ParseAddress([]byte(value), &a)
		parsable := ParsableContact([]byte(contact))
		if !verbatim {
			return
		}
		if !parsable {
			contact = "<sip:a@b>"
		}
		msg, err := parser.ParseSIP(request(value, contact))
		if err != nil {
			if strings.ContainsAny(value+contact, "\r\n") {
				return // not one header value any more
			}
			t.Fatalf("sipgo refuses To %q / Contact %q (verbatim, parsable %v): %v", value, contact, parsable, err)
		}
		req := msg.(*sip.Request)
		to := req.To()
		want := value
		if a.Bare {
			want = "<" + value + ">"
		}
		if to == nil || to.Value() != want {
			t.Fatalf("To %q prints as %q, want %q", value, to.Value(), want)
		}
		if to.Address.User != string(a.URI.User) || to.Address.Host != string(a.URI.Host) {
			t.Errorf("To %q: sipgo user %q host %q, ParseAddress %q %q", value, to.Address.User, to.Address.Host, a.URI.User, a.URI.Host)
		}
		if _, has := to.Params.Get("tag"); has && !a.Tag {
			t.Errorf("To %q: sipgo sees a tag, ParseAddress none", value)
		}
	})
}

func TestParseAddress(t *testing.T) {
	for v, want := range map[string]bool{
		`<sip:alice@example.com>`:                  true,
		`"Alice" <sip:alice@example.com>;tag=1`:    true,
		`<sips:alice@example.com:5061;user=phone>`: true,
		`sip:alice@example.com`:                    true,  // bare: sipgo adds <>
		`sip:alice@example.com;tag=1`:              false, // bare, with a parameter
		`"Alice"<sip:alice@example.com>`:           false, // sipgo adds the space
		`Alice <sip:alice@example.com>`:            false, // sipgo quotes it
		`<SIP:alice@example.com>`:                  false,
		`<sip:alice:pw@example.com>`:               false,
		`<sip:alice@[2001:db8::1]>`:                false,
		`<sip:alice@example.com>;tag=1;tag=2`:      false,
		`<sip:alice@example.com>;x=`:               false,
		`<sip:alice@example.com:080>`:              false,
		`<sip:alice@example.com>;x="a b"`:          false,
		`" Alice" <sip:alice@example.com>`:         false,
		`<sip:alice@example.com?subject=x>`:        false,
		`<sip:a%20b@example.com>`:                  false,
	} {
		var a Address
		if got := ParseAddress([]byte(v), &a); got != want {
			t.Errorf("ParseAddress(%q) = %v, want %v", v, got, want)
		}
	}
}
