package absorb

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/rawreply"
)

// FuzzContactPrintedAsIs: a Contact value printedAsIs vouches for is
// what sipgo prints after parsing it, byte for byte, so that a fill from
// bytes hashes it as a fill through sipgo does.
func FuzzContactPrintedAsIs(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "corpus", "*.sip"))
	contactLine := regexp.MustCompile(`(?mi)^(?:Contact|m)[ \t]*:[ \t]*([^\r\n]*)`)
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, m := range contactLine.FindAllSubmatch(b, -1) {
			f.Add(bytes.ReplaceAll(m[1], []byte("{{LOCAL}}"), []byte("10.0.0.5:5060")))
		}
	}
	for _, v := range []string{`<sip:a@h>;x=1;X=2`, `<sip:a@h>;p="a b"`, `<sip:a@h>;p=`, `"A" <sip:a@h>`, `<sip:a@h>;p="<x;y>";q`} {
		f.Add([]byte(v))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if !rawreply.ParsableContact(v) || !printedAsIs(v) {
			return
		}
		got, ok := contact(v)
		if !ok || got != string(v) {
			t.Fatalf("printedAsIs(%q), yet sipgo prints %q (parsed: %v)", v, got, ok)
		}
	})
}

// splitReplyTail is replyTail as it was before it cut the lines in place
// (split, then each line copied with its CRLF): FuzzReplyTail holds the
// new one to it.
func splitReplyTail(s string, nVia int) ([]string, bool) {
	lines := strings.Split(s, "\r\n")
	// status, nVia Vias, From, To, Call-ID, CSeq, tail..., Date, "", ""
	head := 1 + nVia + 4
	if len(lines) < head+3 || lines[0] != "SIP/2.0 200 OK" || lines[len(lines)-1] != "" || lines[len(lines)-2] != "" {
		return nil, false
	}
	for i := 1; i <= nVia; i++ {
		if !strings.HasPrefix(lines[i], "Via: ") {
			return nil, false
		}
	}
	want := [4]string{"From: ", "To: ", "Call-ID: ", "CSeq: "}
	for i, p := range want {
		if !strings.HasPrefix(lines[1+nVia+i], p) {
			return nil, false
		}
	}
	date := len(lines) - 3
	if !strings.HasPrefix(lines[date], "Date: ") {
		return nil, false
	}
	tail := make([]string, 0, date-head)
	for _, l := range lines[head:date] {
		if strings.HasPrefix(l, "Date: ") || strings.HasPrefix(l, "Via: ") {
			return nil, false
		}
		tail = append(tail, l+"\r\n")
	}
	return tail, true
}

// FuzzReplyTail: replyTail accepts the replies the split version
// accepted, and cuts the same lines from them.
func FuzzReplyTail(f *testing.F) {
	for _, nVia := range []int{1, 2} {
		vias := strings.Repeat("Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKx;rport=5060;received=10.0.0.5\r\n", nVia)
		ok := "SIP/2.0 200 OK\r\n" + vias + "From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\n" +
			"Content-Length: 0\r\nContact: <sip:a@10.0.0.5:5060>;expires=3600\r\nDate: Mon, 07 Dec 2026 10:00:00 GMT\r\n\r\n"
		f.Add(ok, nVia)
		f.Add(strings.Replace(ok, "Date", "X-Date", 1), nVia)
		f.Add(strings.Replace(ok, "Content-Length: 0\r\n", "", 1), nVia)
		f.Add(ok+"x", nVia)
	}
	f.Fuzz(func(t *testing.T, s string, nVia int) {
		if nVia < 0 || nVia > 4 {
			return
		}
		got, ok := replyTail(s, nVia)
		want, wantOK := splitReplyTail(s, nVia)
		if ok != wantOK {
			t.Fatalf("replyTail(%q, %d) ok = %v, the split version %v", s, nVia, ok, wantOK)
		}
		if ok && (len(got) != 0 || len(want) != 0) {
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("replyTail(%q, %d) (-split +cut):\n%s", s, nVia, diff)
			}
		}
	})
}
