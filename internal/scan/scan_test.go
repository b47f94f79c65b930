package scan

import (
	"strings"
	"testing"
)

var lim = Limits{MaxMessageBytes: 4096, MaxHeaders: 64}

const good = "REGISTER sip:example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-1;rport\r\n" +
	"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:alice@example.com>\r\n" +
	"Call-ID: c1@device\r\nCSeq: 7 REGISTER\r\nContact: <sip:alice@10.0.0.2:5060>\r\n" +
	"Expires: 600\r\nContent-Length: 0\r\n\r\n"

func TestScan(t *testing.T) {
	var r Register
	if why := Scan([]byte(good), lim, &r); why != OK {
		t.Fatalf("good REGISTER refused: %v", why)
	}
	if string(r.CallID) != "c1@device" || r.CSeq != 7 || r.NumVias != 1 || r.NumContact != 1 || r.ExpiresVal != 600 ||
		string(r.To) != "<sip:alice@example.com>" || string(r.RequestURI) != "sip:example.com" {
		t.Errorf("fields: %+v", r)
	}
	tests := []struct {
		name string
		edit func(string) string
		want Reason
	}{
		{"options", func(s string) string { return strings.Replace(s, "REGISTER sip", "OPTIONS sip", 1) }, NotRegister},
		{"version", func(s string) string { return strings.Replace(s, "SIP/2.0\r\n", "SIP/3.0\r\n", 1) }, BadStartLine},
		{"folded", func(s string) string { return strings.Replace(s, "Expires: 600", "User-Agent: a\r\n b", 1) }, Folded},
		{"NUL byte", func(s string) string { return strings.Replace(s, "Expires: 600", "User-Agent: a\x00b", 1) }, BadLine},
		{"bare LF", func(s string) string { return strings.Replace(s, "Max-Forwards: 70\r\n", "Max-Forwards: 70\n", 1) }, BadLine},
		{"bare CR in a value", func(s string) string { return strings.Replace(s, "Expires: 600", "User-Agent: a\rb", 1) }, BadLine},
		{"bare LF in the last header", func(s string) string { return strings.Replace(s, "Content-Length: 0\r\n", "Content-Length: 0\n", 1) }, BadLine},
		{"bare LF before a CRLF pair", func(s string) string { return strings.Replace(s, "Expires: 600", "User-Agent: a\n\r\nb: c", 1) }, BadLine},
		{"no empty line", func(s string) string { return strings.TrimSuffix(s, "\r\n") }, BadLine},
		{"empty line after a bare CR", func(s string) string {
			return strings.Replace(s, "Content-Length: 0\r\n\r\n", "Content-Length: 0\r\r\n\r\n", 1)
		}, BadLine},
		{"NUL in the last header", func(s string) string { return strings.Replace(s, "Content-Length: 0", "Content-Length: 0\x00", 1) }, BadLine},
		{"bare LF in a body", func(s string) string {
			return strings.Replace(s, "Content-Length: 0\r\n\r\n", "Content-Length: 2\r\n\r\n\n\n", 1)
		}, Body},
		{"space before colon", func(s string) string { return strings.Replace(s, "Expires: 600", "Expires : 600", 1) }, BadLine},
		{"second To", func(s string) string { return strings.Replace(s, "Expires: 600", "t: <sip:bob@example.com>", 1) }, Duplicate},
		{"second Call-ID", func(s string) string { return strings.Replace(s, "Expires: 600", "i: other", 1) }, Duplicate},
		{"Require", func(s string) string { return strings.Replace(s, "Expires: 600", "Require: path", 1) }, Unsupported},
		{"Path", func(s string) string { return strings.Replace(s, "Expires: 600", "Path: <sip:p@x;lr>", 1) }, Unsupported},
		{"two contacts on a line", func(s string) string { return strings.Replace(s, "10.0.0.2:5060>", "10.0.0.2:5060>, <sip:b@h>", 1) }, MultiValue},
		// What slowpath/sanity refuses (400 Malformed Address) is not
		// absorbed either.
		{"unterminated quote in Contact", func(s string) string {
			return strings.Replace(s, "Contact: <sip:alice@10.0.0.2:5060>", `Contact: "Alice <sip:alice@10.0.0.2:5060>`, 1)
		}, BadAddress},
		{"URI headers outside brackets in To", func(s string) string {
			return strings.Replace(s, "To: <sip:alice@example.com>", "To: sip:alice@example.com?x=1", 1)
		}, BadAddress},
		{"quoted display name is fine", func(s string) string {
			return strings.Replace(s, "From: <sip:alice@example.com>", `From: "A \"q\" <x>" <sip:alice@example.com>`, 1)
		}, OK},
		{"no contact", func(s string) string { return strings.Replace(s, "Contact: <sip:alice@10.0.0.2:5060>\r\n", "", 1) }, Missing},
		{"CSeq method", func(s string) string { return strings.Replace(s, "7 REGISTER", "7 INVITE", 1) }, BadCSeq},
		{"CSeq too big", func(s string) string { return strings.Replace(s, "7 REGISTER", "2147483648 REGISTER", 1) }, BadCSeq},
		{"Expires word", func(s string) string { return strings.Replace(s, "Expires: 600", "Expires: soon", 1) }, BadNumber},
		{"Max-Forwards 0", func(s string) string { return strings.Replace(s, "Max-Forwards: 70", "Max-Forwards: 0", 1) }, BadNumber},
		{"body", func(s string) string {
			return strings.Replace(s, "Content-Length: 0\r\n\r\n", "Content-Length: 2\r\n\r\nhi", 1)
		}, Body},
		{"too large", func(s string) string { return strings.Replace(s, "Expires: 600", "X: "+strings.Repeat("a", 5000), 1) }, TooLarge},
		{"too many headers", func(s string) string {
			return strings.Replace(s, "Expires: 600", strings.Repeat("X: a\r\n", 64)+"Expires: 600", 1)
		}, TooManyHeaders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Scan([]byte(tt.edit(good)), lim, &r); got != tt.want {
				t.Errorf("Scan = %v, want %v", got, tt.want)
			}
		})
	}
}

func BenchmarkScan(b *testing.B) {
	data := []byte(good)
	var r Register
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if Scan(data, lim, &r) != OK {
			b.Fatal("refused")
		}
	}
}
