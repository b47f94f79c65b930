package slowpath

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/google/go-cmp/cmp"
)

// discardConn is a net.Conn whose writes succeed and go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error) { return len(b), nil }

// wsStream is what sipgo and gobwas write on an accepted WebSocket
// connection: the upgrade answer, then frames (header and payload in
// separate writes), as separate Write calls.
func wsStream(t testing.TB, frames ...ws.Frame) [][]byte {
	t.Helper()
	writes := [][]byte{[]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: sip\r\n\r\n")}
	for _, f := range frames {
		var h bytes.Buffer
		if err := ws.WriteHeader(&h, f.Header); err != nil {
			t.Fatal(err)
		}
		writes = append(writes, h.Bytes())
		if len(f.Payload) > 0 {
			writes = append(writes, f.Payload)
		}
	}
	return writes
}

func TestWSSentConn(t *testing.T) {
	small := "SIP/2.0 200 OK\r\nCall-ID: a\r\n\r\n"
	mid := "OPTIONS sip:x SIP/2.0\r\n" + strings.Repeat("X-Pad: y\r\n", 40) + "\r\n" // 126–65535: 16-bit length
	big := strings.Repeat("z", 70000)                                                // 64-bit length, over the capture bound
	frames := []ws.Frame{
		ws.NewTextFrame([]byte(small)),
		ws.NewPingFrame([]byte("ping")),
		ws.NewTextFrame([]byte(mid)),
		ws.NewFrame(ws.OpText, false, []byte("frag")), // a fragment: not a whole message
		ws.NewFrame(ws.OpContinuation, true, []byte("ment")),
		ws.NewTextFrame([]byte(big)),
		ws.NewBinaryFrame([]byte(small)),
		ws.NewTextFrame(nil),
	}
	want := []string{small, mid, small, ""}
	writes := wsStream(t, frames...)
	// Whole writes, as gobwas makes them, then the same bytes one at a
	// time and in odd pieces: the headers are followed across writes.
	all := bytes.Join(writes, nil)
	splits := map[string][][]byte{"as written": writes, "bytewise": nil, "sevens": nil}
	for i := range all {
		splits["bytewise"] = append(splits["bytewise"], all[i:i+1])
	}
	for i := 0; i < len(all); i += 7 {
		splits["sevens"] = append(splits["sevens"], all[i:min(i+7, len(all))])
	}
	for name, ws := range splits {
		t.Run(name, func(t *testing.T) {
			var got []string
			c := newWSSentConn(discardConn{}, func(msg []byte) { got = append(got, string(msg)) })
			for _, w := range ws {
				if n, err := c.Write(w); n != len(w) || err != nil {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("captured (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzWSSentConn: any bytes written after the upgrade, cut anywhere,
// never make the follower panic or report more than was written.
func FuzzWSSentConn(f *testing.F) {
	f.Add(bytes.Join(wsStream(f, ws.NewTextFrame([]byte("SIP/2.0 200 OK\r\n\r\n"))), nil), uint8(3))
	f.Add([]byte("HTTP/1.1 101 x\r\n\r\n\x81\xfe\xff"), uint8(1))
	f.Add([]byte("HTTP/1.1 101 x\r\n\r\n\x81\xff\xff\xff\xff\xff\xff\xff\xff\xff"), uint8(5))
	f.Fuzz(func(t *testing.T, stream []byte, cut uint8) {
		step := int(cut%16) + 1
		total := 0
		c := newWSSentConn(discardConn{}, func(msg []byte) {
			total += len(msg)
			if len(msg) > wsMaxCaptured {
				t.Fatalf("captured %d bytes", len(msg))
			}
		})
		for i := 0; i < len(stream); i += step {
			_, _ = c.Write(stream[i:min(i+step, len(stream))])
		}
		if total > len(stream) {
			t.Fatalf("captured %d bytes of %d written", total, len(stream))
		}
	})
}
