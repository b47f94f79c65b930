package slowpath

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"
)

func TestParserCommaSeparatedContacts(t *testing.T) {
	raw := "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK1\r\n" +
		"From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:a@1.2.3.4:5060;ob>;expires=30, sip:b@h;q=0.5,\t\"Bob, Jr\" <sip:c@[2001:db8::1]:5070>;q=0.7\r\n" +
		"m: sip:d@h\r\n" +
		"Content-Length: 0\r\n\r\n"
	msg, err := newParser(65535).ParseSIP([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var got []string
	for _, h := range msg.(*sip.Request).GetHeaders("Contact") {
		got = append(got, h.Value())
	}
	want := []string{
		"<sip:a@1.2.3.4:5060;ob>;expires=30",
		"<sip:b@h>;q=0.5",
		"\"Bob, Jr\" <sip:c@[2001:db8::1]:5070>;q=0.7",
		"<sip:d@h>",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("contacts (-want +got):\n%s", diff)
	}
}

func TestParserSizeLimit(t *testing.T) {
	raw := "OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := newParser(64).ParseSIP([]byte(raw)); err == nil {
		t.Fatal("a message over the limit was parsed")
	}
}

// TestParserParamWhitespace: whitespace around ";" and "=" in From, To,
// Via and Contact parameters (RFC 3261 §25.1 SEMI, EQUAL) is no part of
// the name or value. RFC 4475's wsinv writes its From tag so; with the
// space kept, sipgo found no tag and could not key the transaction.
func TestParserParamWhitespace(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("sanity", "testdata", "rfc4475", "wsinv.sip"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := newParser(65535).ParseSIP(raw)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	req := msg.(*sip.Request)
	for _, c := range []struct {
		what string
		got  sip.HeaderParams
		name string
		want string
	}{
		{"From", req.From().Params, "tag", "98asjd8"},
		{"To", req.To().Params, "tag", "1918181833n"},
		{"Via", req.Via().Params, "branch", "390skdjuw"},
	} {
		if v, ok := c.got.Get(c.name); !ok || v != c.want {
			t.Errorf("%s %s = %q (%v), want %q; params %#v", c.what, c.name, v, ok, c.want, c.got)
		}
	}
	if _, err := sip.ServerTxKeyMake(req); err != nil {
		t.Errorf("no server transaction key: %v", err)
	}
	if got := req.From().Value(); !strings.HasSuffix(got, ">;tag=98asjd8") {
		t.Errorf("From written on as %q, want the tag without whitespace", got)
	}
}
