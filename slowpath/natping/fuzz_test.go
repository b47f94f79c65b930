package natping

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/bpf"
)

// FuzzToken checks Token against sipgo: whatever Token accepts, sipgo must
// parse as a response with that Call-ID.
func FuzzToken(f *testing.F) {
	f.Add([]byte(reply("Call-ID: ph-0123456789abcdef")))
	f.Add([]byte(reply("i: ph-00000000000000ff")))
	f.Add([]byte("SIP/2.0 200 OK\r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		tok, ok := Token(msg)
		if !ok {
			return
		}
		if tok == 0 {
			t.Fatal("token 0 accepted")
		}
		m, err := sip.ParseMessage(msg)
		if err != nil {
			return // sipgo is stricter about the rest of the message
		}
		res, isRes := m.(*sip.Response)
		if !isRes {
			t.Fatalf("Token accepted a request: %q", msg)
		}
		if id := res.CallID(); id != nil && !strings.EqualFold(id.Value(), bpf.CallID(tok)) {
			t.Fatalf("Token %#x, sipgo's Call-ID %q", tok, id.Value())
		}
	})
}
