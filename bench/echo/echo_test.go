package echo

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAnswer(t *testing.T) {
	const hdrs = "Via: SIP/2.0/UDP 127.77.0.1:10000;rport;branch=z9hG4bKx\r\nFrom: <sip:u@h>;tag=a\r\nTo: <sip:u@h>\r\nCall-ID: c\r\nCSeq: 1 %s\r\n"
	req := func(method, extra string) string {
		return method + " sip:h SIP/2.0\r\n" + strings.Replace(hdrs, "%s", method, 1) + extra + "Content-Length: 0\r\n\r\n"
	}
	common := "Via: SIP/2.0/UDP 127.77.0.1:10000;rport;branch=z9hG4bKx\r\nFrom: <sip:u@h>;tag=a\r\nTo: <sip:u@h>;tag=echo\r\nCall-ID: c\r\nCSeq: 1 "
	tests := []struct {
		name string
		in   string
		want string
		ok   bool
	}{
		{"register challenged", req("REGISTER", "Contact: <sip:u@127.77.0.1:10000>\r\n"),
			"SIP/2.0 401 Unauthorized\r\n" + common + "REGISTER\r\n" +
				`WWW-Authenticate: Digest realm="echo", nonce="` + Nonce + `", algorithm=SHA-256, qop="auth"` + "\r\n" +
				`WWW-Authenticate: Digest realm="echo", nonce="` + Nonce + `", algorithm=MD5, qop="auth"` + "\r\nContent-Length: 0\r\n\r\n", true},
		{"register with credentials", req("REGISTER", "Contact: <sip:u@127.77.0.1:10000>\r\nAuthorization: Digest x=y\r\n"),
			"SIP/2.0 200 OK\r\n" + common + "REGISTER\r\nContact: <sip:u@127.77.0.1:10000>;expires=3600\r\nContent-Length: 0\r\n\r\n", true},
		{"invite", req("INVITE", ""), "SIP/2.0 200 OK\r\n" + common + "INVITE\r\nContact: <sip:echo@127.0.0.1>\r\nContent-Length: 0\r\n\r\n", true},
		{"options", req("OPTIONS", ""), "SIP/2.0 200 OK\r\n" + common + "OPTIONS\r\nContent-Length: 0\r\n\r\n", true},
		{"ack", req("ACK", ""), "", false},
		{"response", "SIP/2.0 200 OK\r\n\r\n", "", false},
		{"crlf", "\r\n\r\n", "\r\n", true},
		{"stun", "\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl", "\x01\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl", true},
		{"junk", "\x00\x01junk", "", false},
		{"incomplete", "OPTIONS sip:h SIP/2.0\r\nVia: x\r\n\r\n", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Answer(nil, []byte(tc.in))
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if d := cmp.Diff(tc.want, string(got)); ok && d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func BenchmarkAnswer(b *testing.B) {
	b.ReportAllocs()
	req := []byte("REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP 127.77.0.1:10000;rport;branch=z9hG4bKx\r\nFrom: <sip:u@h>;tag=a\r\nTo: <sip:u@h>\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\nContact: <sip:u@127.77.0.1:10000>\r\nAuthorization: Digest x\r\nContent-Length: 0\r\n\r\n")
	out := make([]byte, 0, 2048)
	for range b.N {
		out, _ = Answer(out[:0], req)
	}
}
