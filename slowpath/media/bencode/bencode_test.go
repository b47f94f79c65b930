package bencode

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestUnmarshal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any
	}{
		{"4:spam", "spam"},
		{"0:", ""},
		{"i42e", int64(42)},
		{"i-7e", int64(-7)},
		{"i0e", int64(0)},
		{"le", []any{}},
		{"de", map[string]any{}},
		{"l4:spami3ee", []any{"spam", int64(3)}},
		// rtpengine's own replies do not sort their keys.
		{"d6:result2:ok3:sdp3:v=0e", map[string]any{"result": "ok", "sdp": "v=0"}},
		{"d3:sdp3:v=06:result2:oke", map[string]any{"result": "ok", "sdp": "v=0"}},
		{"d6:totalsd3:RTPd7:packetsi5eeee", map[string]any{"totals": map[string]any{"RTP": map[string]any{"packets": int64(5)}}}},
		{"3:a\x00b", "a\x00b"},
	} {
		got, err := Unmarshal([]byte(tc.in))
		if err != nil {
			t.Errorf("Unmarshal(%q): %v", tc.in, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("Unmarshal(%q) (-want +got):\n%s", tc.in, d)
		}
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	for _, in := range []string{
		"", "i", "ie", "i-e", "i-0e", "i03e", "i+3e", "i3", "i99999999999999999999e",
		"5:abc", "-1:a", "01:a", "3x:abc", "l", "li1e", "d", "d1:a", "di1ei2ee",
		"d1:ai1e1:ai2ee", "x", "4:spamX", "i1ei2e",
		strings.Repeat("l", MaxDepth+1) + strings.Repeat("e", MaxDepth+1),
	} {
		if v, err := Unmarshal([]byte(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("Unmarshal(%q) = %v, %v; want ErrSyntax", in, v, err)
		}
	}
	deep := strings.Repeat("l", MaxDepth) + strings.Repeat("e", MaxDepth)
	if _, err := Unmarshal([]byte(deep)); err != nil {
		t.Errorf("nesting of exactly MaxDepth refused: %v", err)
	}
}

func TestMarshal(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{"ping", "4:ping"},
		{[]byte("ab"), "2:ab"},
		{42, "i42e"},
		{int64(-1), "i-1e"},
		{true, "i1e"},
		{[]string{"trust-address", "symmetric"}, "l13:trust-address9:symmetrice"},
		// Keys sorted: the output is canonical whatever the map's order.
		{map[string]any{"command": "offer", "call-id": "c1", "flags": []string{}}, "d7:call-id2:c17:command5:offer5:flagslee"},
		{[]any{map[string]any{}, int64(0)}, "ldei0ee"},
	} {
		got, err := Marshal(tc.in)
		if err != nil {
			t.Errorf("Marshal(%#v): %v", tc.in, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("Marshal(%#v) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if _, err := Marshal(map[string]any{"x": 1.5}); err == nil {
		t.Error("Marshal of a float succeeded; bencoding has no floats")
	}
}

// A typical offer and a query reply: the cost per ng command on the slow
// path (go test -bench . -benchmem ./slowpath/media/bencode/).
func BenchmarkMarshalOffer(b *testing.B) {
	offer := map[string]any{
		"command": "offer", "call-id": "a84b4c76e66710@pc33.example.com", "from-tag": "1928301774",
		"sdp":     strings.Repeat("a=rtpmap:0 PCMU/8000\r\n", 20),
		"replace": []string{"origin", "session-connection"}, "received-from": []string{"IP4", "203.0.113.5"},
	}
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf, _ = Append(buf[:0], offer)
	}
}

func BenchmarkUnmarshalQuery(b *testing.B) {
	stats := map[string]any{"packets": 5, "bytes": 800, "errors": 0}
	stream := map[string]any{"local port": 30000, "stats": stats, "flags": []string{"RTP", "filled", "confirmed"},
		"endpoint": map[string]any{"family": "IPv4", "address": "203.0.113.5", "port": 4000}}
	tag := map[string]any{"tag": "f1", "created": 1402064111,
		"medias": []any{map[string]any{"index": 1, "type": "audio", "protocol": "RTP/AVP", "streams": []any{stream, stream}}}}
	reply, err := Marshal(map[string]any{"result": "ok", "totals": map[string]any{"RTP": stats, "RTCP": stats},
		"tags": map[string]any{"f1": tag, "t1": tag}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(reply); err != nil {
			b.Fatal(err)
		}
	}
}
