package midreg

import (
	"strings"
	"testing"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// FuzzParseToken: any user part either is no token or splits into parts
// that rebuild it; a token pinhole makes always parses back.
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{"alice~c1a2b3c4d", "alice~p00000000", "a~b~affffffff", "alice", "~c12345678", "alice~x12345678", "alice~c1234567g"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if tk, ok := parseToken(s); ok {
			if got := tk.user + string(tokenSep) + string(tk.kind) + tk.hash; got != s {
				t.Fatalf("parseToken(%q) rebuilt as %q", s, got)
			}
		}
		if s == "" {
			return // an AOR always has a user (registrar.AOR)
		}
		b := location.Binding{AOR: s + "@example.com", Contact: "sip:" + s + "@h"}
		for _, tok := range []string{contactToken(&b), pathToken(b.AOR, s), aorToken(b.AOR)} {
			tk, ok := parseToken(tok)
			if !ok || tk.user != s {
				t.Fatalf("token %q of user %q does not parse back (%+v, %v)", tok, s, tk, ok)
			}
			if got := tk.match(b.AOR, []location.Binding{b}); tk.kind != kindPath && len(got) != 1 {
				t.Fatalf("token %q does not match its own binding", tok)
			}
		}
	})
}

// FuzzSplitContacts: a Contact value from an upstream never panics the
// parser, and every entry it returns has a host.
func FuzzSplitContacts(f *testing.F) {
	for _, s := range []string{
		`<sip:a~c1a2b3c4d@edge:5060>;expires=3600, <sip:b@10.0.0.2>;expires=60`,
		`"Al, ice" <sip:a@h>;q=0.5;expires=10`,
		`sip:a@h;expires=1`, `*`, `<sip:a@h`, `"\"<", <sip:b@h>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range splitContacts(s) {
			if c.uri.Host == "" && !strings.Contains(s, "@") && c.uri.User != "" {
				t.Fatalf("entry without host from %q: %+v", s, c.uri)
			}
		}
	})
}
