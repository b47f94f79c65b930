package sdp

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePlain(t *testing.T) {
	s, err := Parse(read(t, "plain.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	if o := s.Origin(); o != (Origin{"alice", "2890844526", "2890844526", "IN", "IP4", "192.168.1.20"}) {
		t.Errorf("Origin = %+v", o)
	}
	c, ok := s.Connection()
	if !ok || c.Addr != netip.MustParseAddr("192.168.1.20") {
		t.Errorf("Connection = %+v, %v", c, ok)
	}
	if len(s.Media) != 1 {
		t.Fatalf("%d media sections, want 1", len(s.Media))
	}
	m := s.Media[0]
	want := &Media{Type: "audio", Port: 49170, Proto: "RTP/AVP", Formats: []string{"0", "8", "101"}, Lines: m.Lines}
	if d := cmp.Diff(want, m); d != "" {
		t.Errorf("media (-want +got):\n%s", d)
	}
	if v, ok := m.Attribute("fmtp"); !ok || v != "101 0-16" {
		t.Errorf("a=fmtp = %q, %v", v, ok)
	}
	if _, ok := m.Attribute("sendrecv"); !ok {
		t.Error("a=sendrecv not found")
	}
	p := s.Profile()
	if p.WebRTC() || p.Secure || p.ICE || p.DTLS {
		t.Errorf("plain RTP/AVP read as %+v", p)
	}
	if d := cmp.Diff([]netip.Addr{netip.MustParseAddr("192.168.1.20")}, p.Addrs, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("Addrs (-want +got):\n%s", d)
	}
}

func TestParseWebRTC(t *testing.T) {
	s, err := Parse(read(t, "webrtc.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Profile()
	if !p.WebRTC() || !p.Secure || !p.Feedback || !p.DTLS || !p.ICE {
		t.Errorf("browser offer read as %+v", p)
	}
	// The rejected data channel (port 0) adds no address.
	if len(p.Addrs) != 1 {
		t.Errorf("Addrs = %v, want the audio section's only", p.Addrs)
	}
	if s.Media[1].Active() {
		t.Error("m= with port 0 reported active")
	}
}

// Printing gives CRLF line ends and every line back in its order, whatever
// the input's line ends.
func TestMarshalKeepsLines(t *testing.T) {
	for _, name := range []string{"plain.sdp", "webrtc.sdp"} {
		lf := read(t, name)
		s, err := Parse(lf)
		if err != nil {
			t.Fatal(err)
		}
		want := strings.ReplaceAll(string(lf), "\n", "\r\n")
		if got := string(s.Marshal()); got != want {
			t.Errorf("%s printed (-want +got):\n%s", name, cmp.Diff(want, got))
		}
		crlf, err := Parse([]byte(want))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(s, crlf); d != "" {
			t.Errorf("%s with CRLF parses differently (-LF +CRLF):\n%s", name, d)
		}
	}
}

func TestUnknownLinesKept(t *testing.T) {
	in := "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=x\r\nx=vendor thing\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=video 5000/2 RTP/AVP 96\r\ny=other\r\na=rtpmap:96 H264/90000\r\n"
	s, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s.Marshal()); got != in {
		t.Errorf("printed %q, want %q", got, in)
	}
	if s.Media[0].PortCount != 2 {
		t.Errorf("PortCount = %d", s.Media[0].PortCount)
	}
}

func TestParseRefuses(t *testing.T) {
	ok := "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
	if _, err := Parse([]byte(ok)); err != nil {
		t.Fatalf("the base body is refused: %v", err)
	}
	for name, in := range map[string]string{
		"empty":             "",
		"only line ends":    "\r\n\r\n",
		"not sdp":           "INVITE sip:x SIP/2.0\r\n",
		"version 1":         strings.Replace(ok, "v=0", "v=1", 1),
		"o before v":        "o=- 1 1 IN IP4 10.0.0.1\nv=0\ns=-\n",
		"no s":              "v=0\no=- 1 1 IN IP4 10.0.0.1\nc=IN IP4 10.0.0.1\n",
		"short o":           strings.Replace(ok, "o=- 1 1 IN IP4 10.0.0.1", "o=- 1 IN IP4", 1),
		"bad c":             strings.Replace(ok, "c=IN IP4 10.0.0.1", "c=IN IP4", 1),
		"c type mismatch":   strings.Replace(ok, "c=IN IP4 10.0.0.1", "c=IN IP4 ::1", 1),
		"no c anywhere":     strings.Replace(ok, "c=IN IP4 10.0.0.1\n", "", 1),
		"port too big":      strings.Replace(ok, "4000", "70000", 1),
		"port not a number": strings.Replace(ok, "4000", "x", 1),
		"port count 0":      strings.Replace(ok, "4000", "4000/0", 1),
		"m without formats": strings.Replace(ok, "RTP/AVP 0", "RTP/AVP", 1),
		"blank line inside": strings.Replace(ok, "s=-\n", "s=-\n\n", 1),
		"upper-case type":   ok + "A=x\n",
		"no equals":         ok + "a\n",
		"NUL in value":      ok + "a=x\x00y\n",
		"bare CR in value":  ok + "a=x\ry\n",
		"second v":          strings.Replace(ok, "t=0 0", "v=0", 1),
		"t= in media":       ok + "t=0 0\n",
		"o= in media":       ok + "o=- 1 1 IN IP4 10.0.0.1\n",
	} {
		s, err := Parse([]byte(in))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse = %v, %v; want ErrMalformed", name, s, err)
		}
	}
}

func TestErrorNamesLine(t *testing.T) {
	_, err := Parse([]byte("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4\n"))
	if err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("error %v does not name line 4", err)
	}
}

func TestRejectedMediaNeedsNoConnection(t *testing.T) {
	in := "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\nc=IN IP4 10.0.0.1\nm=video 0 RTP/AVP 96\n"
	if _, err := Parse([]byte(in)); err != nil {
		t.Errorf("a rejected section without c= is refused: %v", err)
	}
}

func TestFinalLineEndOptional(t *testing.T) {
	a, err := Parse(bytes.TrimRight(read(t, "plain.sdp"), "\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Parse(read(t, "plain.sdp"))
	if d := cmp.Diff(b, a); d != "" {
		t.Errorf("(-with +without final line end):\n%s", d)
	}
}
