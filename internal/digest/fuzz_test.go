package digest

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseDigest checks that the parser never panics and that whatever it
// accepts survives a render and re-parse unchanged: quoting and unquoting
// agree, so two parsers of pinhole's own challenges cannot disagree.
func FuzzParseDigest(f *testing.F) {
	for _, s := range []string{
		`Digest username="alice", realm="pinhole", nonce="n", uri="sip:pinhole.example", response="00", algorithm=SHA-256, cnonce="c", qop=auth, nc=00000001`,
		`digest USERNAME="a\"b", realm="x,y"`,
		`Digest realm=`,
		"Digest ,,username=u,",
		`Basic abc`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			if v := trimSWS(s); errors.Is(err, ErrNotDigest) && len(v) > 6 &&
				strings.EqualFold(v[:6], "Digest") && (v[6] == ' ' || v[6] == '\t') {
				t.Fatalf("Digest value %q reported as another scheme", s)
			}
			return
		}
		// Controls other than tab cannot be rendered back; the parser
		// rejects them inside quotes, but escapes can smuggle them in.
		for _, v := range []string{d.Username, d.Realm, d.Nonce, d.URI, d.Response, d.Algorithm, d.CNonce, d.Opaque, d.QOP, d.NC} {
			for i := 0; i < len(v); i++ {
				if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
					return
				}
			}
		}
		again, err := Parse(render(d))
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", render(d), s, err)
		}
		if diff := cmp.Diff(d, again); diff != "" {
			t.Fatalf("round trip of %q (-first +second):\n%s", s, diff)
		}
	})
}
