package streams

import (
	"strings"
	"testing"
)

func sipMsg(body string) string {
	return "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\nl: " +
		itoa(len(body)) + "\r\n\r\n" + body
}

func itoa(n int) string {
	s := ""
	for {
		s = string(rune('0'+n%10)) + s
		n /= 10
		if n == 0 {
			return s
		}
	}
}

// TestSIPFramerBoundaries feeds streams in every split and checks where
// messages begin and end: a framer that loses a boundary would time an
// honest device's next message from the wrong moment, or never.
func TestSIPFramerBoundaries(t *testing.T) {
	two := sipMsg("hello") + "\r\n\r\n" + sipMsg("")
	for _, chunk := range []int{1, 2, 3, 7, 64, len(two)} {
		f := &sipFramer{}
		var ended, began int
		for i := 0; i < len(two); i += chunk {
			pr := f.feed([]byte(two[i:min(i+chunk, len(two))]), 65535)
			if pr.over {
				t.Fatalf("chunk %d: over the bound", chunk)
			}
			if pr.began {
				began++
			}
			if pr.ended {
				ended++
			}
		}
		if f.busy() {
			t.Errorf("chunk %d: still in a message after two whole ones", chunk)
		}
		if chunk == len(two) && (began != 1 || ended != 1) {
			t.Errorf("one chunk: began %d ended %d, want 1 and 1 (the chunk reports, not counts)", began, ended)
		}
		if chunk == 1 && (began != 2 || ended < 3) {
			t.Errorf("byte by byte: began %d ended %d, want 2 messages and the keepalive", began, ended)
		}
	}
}

func TestSIPFramerBusyInBody(t *testing.T) {
	f := &sipFramer{}
	m := sipMsg("0123456789")
	f.feed([]byte(m[:len(m)-3]), 65535)
	if !f.busy() {
		t.Fatal("three body bytes short: not busy")
	}
	if pr := f.feed([]byte(m[len(m)-3:]), 65535); !pr.ended || f.busy() {
		t.Fatalf("last body bytes: %+v busy %v, want the message ended", pr, f.busy())
	}
}

func TestSIPFramerBound(t *testing.T) {
	cases := map[string]string{
		"headers without end":         "INVITE sip:a SIP/2.0\r\n" + strings.Repeat("X-Pad: aaaaaaaaaaaaaaaa\r\n", 100),
		"announced body too big":      "INVITE sip:a SIP/2.0\r\nContent-Length: 5000\r\n\r\n",
		"one endless line":            "INVITE sip:a SIP/2.0\r\nSubject: " + strings.Repeat("a", 3000),
		"compact length, big, spaced": "INVITE sip:a SIP/2.0\r\nL  :   999999\r\n\r\n",
	}
	for name, in := range cases {
		f := &sipFramer{}
		if pr := f.feed([]byte(in), 1024); !pr.over {
			t.Errorf("%s: not over a 1024-byte bound", name)
		}
	}
	f := &sipFramer{}
	if pr := f.feed([]byte(sipMsg(strings.Repeat("b", 500))), 1024); pr.over || !pr.ended {
		t.Errorf("a 600-byte message under a 1024-byte bound: %+v", pr)
	}
}

func wsFrame(fin bool, op byte, payload int) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	h := []byte{b0}
	switch {
	case payload < 126:
		h = append(h, 0x80|byte(payload))
	case payload < 1<<16:
		h = append(h, 0x80|126, byte(payload>>8), byte(payload))
	default:
		h = append(h, 0x80|127, 0, 0, 0, 0, byte(payload>>24), byte(payload>>16), byte(payload>>8), byte(payload))
	}
	h = append(h, 1, 2, 3, 4) // mask
	return append(h, make([]byte, payload)...)
}

func TestWSFramer(t *testing.T) {
	upgrade := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
	var s []byte
	s = append(s, upgrade...)
	s = append(s, wsFrame(false, 1, 300)...) // text, continued
	s = append(s, wsFrame(true, 9, 0)...)    // ping between fragments
	s = append(s, wsFrame(true, 0, 200)...)  // continuation, FIN
	for _, chunk := range []int{1, 5, len(s)} {
		f := &wsFramer{}
		sawBusy, ended := false, false
		for i := 0; i < len(s); i += chunk {
			pr := f.feed(s[i:min(i+chunk, len(s))], 65535)
			if pr.over {
				t.Fatalf("chunk %d: over", chunk)
			}
			sawBusy = sawBusy || f.busy()
			ended = ended || pr.ended
		}
		if !f.upgraded || f.busy() || !ended || (chunk == 1 && !sawBusy) {
			t.Errorf("chunk %d: upgraded %v busy %v ended %v sawBusy %v", chunk, f.upgraded, f.busy(), ended, sawBusy)
		}
	}
	f := &wsFramer{}
	f.feed([]byte(upgrade), 65535)
	if pr := f.feed(wsFrame(false, 1, 800)[:20], 1024); pr.over {
		t.Fatal("800 bytes under 1024: over")
	}
	if pr := f.feed(append(make([]byte, 788), wsFrame(true, 0, 300)[:8]...), 1024); !pr.over {
		t.Error("800 + 300 bytes in one message under a 1024 bound: not over")
	}
	if pr := (&wsFramer{}).feed([]byte(strings.Repeat("GET / HTTP/1.1 ", 100)), 1024); !pr.over {
		t.Error("an upgrade request without end: not over")
	}
}
