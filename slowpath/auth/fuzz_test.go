package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzCheck feeds arbitrary Authorization values through Check. It must not
// panic, must answer with one of the statuses Check documents, and must never
// accept: the fuzzer cannot forge a nonce's HMAC.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		`Digest username="alice", realm="pinhole", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", uri="sip:pinhole.example", response="ab7a11474ad9be9b4b284ca7ee853dbc", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001`,
		`Digest username="alice", realm="pinhole", nonce="x", uri="sip:other", response="00"`,
		`Digest realm="pinhole", qop=auth-int`,
		`Digest realm="pinhole", algorithm=SHA-512`,
		`Basic abc`,
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	clk := newClock()
	a := newAuth(f, clk, nil)
	f.Fuzz(func(t *testing.T, value string, register bool) {
		if strings.ContainsAny(value, "\r\n") {
			return // one header line; folding is the SIP parser's business
		}
		file, hname := "invite.sip", "Proxy-Authorization"
		if register {
			file, hname = "register.sip", "Authorization"
		}
		req := loadRequest(t, file, hname+": "+value)
		r := a.Check(req, register)
		if r.OK {
			t.Fatalf("Check accepted %q", value)
		}
		switch r.Status {
		case 400, 403:
			if len(r.Headers) != 0 {
				t.Fatalf("status %d with challenges for %q", r.Status, value)
			}
		case 401, 407:
			if want := map[bool]int{true: 401, false: 407}[register]; r.Status != want || len(r.Headers) != 2 {
				t.Fatalf("status %d with %d challenges for %q", r.Status, len(r.Headers), value)
			}
		default:
			t.Fatalf("status %d for %q", r.Status, value)
		}
	})
}

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
		d, err := parseDigest(s)
		if err != nil {
			if v := trimSWS(s); errors.Is(err, errNotDigest) && len(v) > 6 &&
				strings.EqualFold(v[:6], "Digest") && (v[6] == ' ' || v[6] == '\t') {
				t.Fatalf("Digest value %q reported as another scheme", s)
			}
			return
		}
		// Controls other than tab cannot be rendered back; the parser
		// rejects them inside quotes, but escapes can smuggle them in.
		for _, v := range []string{d.username, d.realm, d.nonce, d.uri, d.response, d.algorithm, d.cnonce, d.opaque, d.qop, d.nc} {
			for i := 0; i < len(v); i++ {
				if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
					return
				}
			}
		}
		again, err := parseDigest(render(d))
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", render(d), s, err)
		}
		if diff := cmp.Diff(d, again, cmp.AllowUnexported(digestResponse{})); diff != "" {
			t.Fatalf("round trip of %q (-first +second):\n%s", s, diff)
		}
	})
}
