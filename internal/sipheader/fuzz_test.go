package sipheader

import (
	"strings"
	"testing"
)

// reference spells out the RFC 3261 §7.3.3 rule the slow way: lower-case
// an ASCII name and look it up with its compact forms.
var reference = map[string]Name{
	"via": Via, "v": Via,
	"from": From, "f": From,
	"to": To, "t": To,
	"call-id": CallID, "i": CallID,
	"cseq":    CSeq,
	"contact": Contact, "m": Contact,
	"content-length": ContentLength, "l": ContentLength,
	"expires":            Expires,
	"max-forwards":       MaxForwards,
	"user-agent":         UserAgent,
	"supported":          Supported,
	"require":            Require,
	"proxy-require":      ProxyRequire,
	"path":               Path,
	"route":              Route,
	"record-route":       RecordRoute,
	"authorization":      Authorization,
	"www-authenticate":   WWWAuthenticate,
	"proxy-authenticate": ProxyAuthenticate,
}

func FuzzLookup(f *testing.F) {
	for _, s := range []string{"Via", "v", "CALL-ID", "i", "k", "call\rid", "To ", "Content-Length", "\x16ia", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, name []byte) {
		got := Lookup(name)
		want := Other
		ascii := true
		for _, c := range name {
			ascii = ascii && c < 0x80
		}
		if ascii {
			want = reference[strings.ToLower(string(name))]
		}
		if got != want {
			t.Fatalf("Lookup(%q) = %q, want %q", name, got, want)
		}
		if got != Other && len(name) > 1 && !EqualFold(name, got.String()) {
			t.Fatalf("Lookup(%q) = %q, but EqualFold disagrees", name, got)
		}
	})
}
