package load

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	type got struct {
		Request                          bool
		Method, RURI                     string
		Status                           int
		Via, RR, Chall                   []string
		CallID, From, To, Contact, CSeqM string
		CSeq                             uint32
	}
	view := func(m *message) got {
		g := got{Request: m.request, Method: string(m.method), RURI: string(m.ruri), Status: m.status,
			CallID: string(m.callID), From: string(m.from), To: string(m.to), Contact: string(m.contact),
			CSeqM: string(m.cseqMethod), CSeq: m.cseq}
		for _, v := range m.via[:m.nVia] {
			g.Via = append(g.Via, string(v))
		}
		for _, v := range m.rr[:m.nRR] {
			g.RR = append(g.RR, string(v))
		}
		for _, v := range m.chall[:m.nChall] {
			g.Chall = append(g.Chall, string(v))
		}
		return g
	}
	tests := []struct {
		file string
		want got
	}{
		{"401.sip", got{Status: 401, Via: []string{"SIP/2.0/UDP 127.77.0.1:10000;rport=10000;branch=z9hG4bKab.1;received=127.77.0.1"},
			Chall:  []string{`Digest realm="pinhole", nonce="n1", algorithm=SHA-256, qop="auth"`, `Digest realm="pinhole", nonce="n2", algorithm=MD5, qop="auth"`},
			CallID: "c1", From: "<sip:u0000000@127.0.0.1>;tag=t0", To: "<sip:u0000000@127.0.0.1>;tag=x", CSeqM: "REGISTER", CSeq: 1}},
		{"invite.sip", got{Request: true, Method: "INVITE", RURI: "sip:u0000001@127.77.0.1:10001;transport=udp",
			Via:    []string{"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKp1", "SIP/2.0/UDP 127.77.0.1:10000;rport=10000;branch=z9hG4bKab.2"},
			RR:     []string{"<sip:127.0.0.1:5060;lr;ph=a>", "<sip:10.0.0.1;lr>, <sip:10.0.0.2;lr>"},
			CallID: "call-1", From: `"A" <sip:u0000000@127.0.0.1>;tag=t0`, To: "<sip:u0000001@127.0.0.1>",
			Contact: "<sip:u0000000@127.77.0.1:10000>", CSeqM: "INVITE", CSeq: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var m message
			if err := parse(b, &m); err != nil {
				t.Fatalf("parse: %v", err)
			}
			if d := cmp.Diff(tc.want, view(&m)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{
		"",
		"SIP/2.0 20 OK\r\n\r\n",
		"SIP/2.0 200OK\r\nCSeq: 1 REGISTER\r\nCall-ID: x\r\n\r\n",
		"INVITE sip:x SIP/3.0\r\n\r\n",
		"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n",
		"SIP/2.0 200 OK\r\nCSeq: x REGISTER\r\nCall-ID: x\r\n\r\n",
		"SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\n\r\n",
		"SIP/2.0 200 OK\r\nnocolon\r\n\r\n",
		"SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\nCall-ID: x\r\n",
	} {
		var m message
		if err := parse([]byte(in), &m); err == nil {
			t.Errorf("parse(%q) accepted", in)
		}
	}
}

func TestHeaderHelpers(t *testing.T) {
	to := []byte(`"B" <sip:b@h;transport=udp>;tag=abc;x=1`)
	if got := string(param(to, "tag")); got != "abc" {
		t.Errorf("tag = %q", got)
	}
	if got := param([]byte("<sip:b@h;tag=in>"), "tag"); got != nil {
		t.Errorf("tag inside <> = %q", got)
	}
	if got := string(uriOf(to)); got != "sip:b@h;transport=udp" {
		t.Errorf("uri = %q", got)
	}
	if got := string(uriOf([]byte("sip:b@h;tag=1"))); got != "sip:b@h" {
		t.Errorf("addr-spec uri = %q", got)
	}
	var parts []string
	for _, p := range splitComma(nil, []byte(`<sip:a;lr>, "x,y" <sip:b>,<sip:c,d>`)) {
		parts = append(parts, string(p))
	}
	if d := cmp.Diff([]string{"<sip:a;lr>", `"x,y" <sip:b>`, "<sip:c,d>"}, parts); d != "" {
		t.Errorf("splitComma (-want +got):\n%s", d)
	}
	for in, want := range map[string]bool{"\r\n": true, "\r\n\r\n": true, "x": false,
		string([]byte{1, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}): true,
		string([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}): false} {
		if got := isKeepaliveReply([]byte(in)); got != want {
			t.Errorf("isKeepaliveReply(%q) = %v", in, got)
		}
	}
}
