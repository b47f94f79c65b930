package auth

import (
	"strings"
	"testing"
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
