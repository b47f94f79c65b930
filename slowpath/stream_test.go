package slowpath

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/slowpath/sanity"
)

// startTCPServer runs the slow path with UDP and TCP on loopback and
// returns the TCP address.
func startTCPServer(t *testing.T, extra string) (*Server, string) {
	t.Helper()
	udp := "127.0.0.1:" + strconv.Itoa(freeUDPPort(t))
	tcp := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	s := startServerWith(t, fmt.Sprintf("listen:\n  udp: [%q]\n  tcp: [%q]\n", udp, tcp)+extra)
	return s, tcp
}

func dialTCP(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// readResponse reads one response from a stream: the header section and
// the body its Content-Length gives.
func readResponse(t *testing.T, c net.Conn, r *bufio.Reader) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	length := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read response: %v (so far %q)", err, b.String())
		}
		if line == "\r\n" && b.Len() == 0 {
			continue // a keepalive pong or CRLF between messages
		}
		b.WriteString(line)
		if name, v, ok := strings.Cut(line, ":"); ok && (strings.EqualFold(strings.TrimSpace(name), "content-length") || strings.TrimSpace(name) == "l") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if line == "\r\n" {
			break
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b.String() + string(body)
}

func tcpRegister(user, callID string, local string, edit func(string) string) string {
	m := "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + local + ";branch=z9hG4bK-" + callID + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:" + user + "@example.com>;tag=" + callID + "\r\nTo: <sip:" + user + "@example.com>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:" + user + "@" + local + ";transport=tcp>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
	if edit != nil {
		m = edit(m)
	}
	return m
}

// TestStreamSanity sends, over one TCP connection, requests that the
// sanity filter must refuse, each followed by a good REGISTER: every bad
// one gets its error (sipgo alone answered 200, or nothing and closed
// the connection) and the connection keeps serving.
func TestStreamSanity(t *testing.T) {
	_, addr := startTCPServer(t, "limits:\n  max_headers: 20\n")
	c, r := dialTCP(t, addr)
	local := c.LocalAddr().String()
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{"no From", func(m string) string {
			return strings.Replace(m, "From: <sip:bob@example.com>;tag=nofrom\r\n", "", 1)
		}, "SIP/2.0 400 Missing From Header"},
		{"CSeq method differs", func(m string) string {
			return strings.Replace(m, "CSeq: 1 REGISTER", "CSeq: 1 INVITE", 1)
		}, "SIP/2.0 400 CSeq Mismatch"},
		{"two From", func(m string) string {
			return strings.Replace(m, "To:", "From: <sip:eve@example.com>;tag=x\r\nTo:", 1)
		}, "SIP/2.0 400 Duplicate Header Field"},
		{"two CSeq", func(m string) string {
			return strings.Replace(m, "Expires:", "CSeq: 2 REGISTER\r\nExpires:", 1)
		}, "SIP/2.0 400 Duplicate Header Field"},
		{"Proxy-Require", func(m string) string {
			return strings.Replace(m, "Expires:", "Proxy-Require: sec-agree\r\nExpires:", 1)
		}, "SIP/2.0 420 Bad Extension"},
		{"bad version", func(m string) string {
			return strings.Replace(m, "example.com SIP/2.0\r\n", "example.com SIP/7.0\r\n", 1)
		}, "SIP/2.0 505 Version Not Supported"},
		{"too many headers", func(m string) string {
			return strings.Replace(m, "Expires:", strings.Repeat("X-Filler: 1\r\n", 20)+"Expires:", 1)
		}, "SIP/2.0 400 Too Many Headers"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := tt.edit(tcpRegister("bob", "nofrom", local, nil))
			good := tcpRegister("carol", "good-"+strconv.Itoa(i), local, nil)
			// Both in one write: framing, not the segment, separates them.
			if _, err := c.Write([]byte(bad + good)); err != nil {
				t.Fatal(err)
			}
			if got := readResponse(t, c, r); !strings.HasPrefix(got, tt.want+"\r\n") {
				t.Fatalf("bad request got:\n%s\nwant %s", got, tt.want)
			} else if tt.want == "SIP/2.0 420 Bad Extension" && !strings.Contains(got, "\r\nUnsupported: sec-agree\r\n") {
				t.Errorf("420 without Unsupported: sec-agree:\n%s", got)
			}
			if got := readResponse(t, c, r); !strings.HasPrefix(got, "SIP/2.0 200 OK\r\n") {
				t.Fatalf("good REGISTER after it got:\n%s", got)
			}
		})
	}
}

// TestStreamNULDropped checks a request with a NUL in a header field gets
// no answer and the connection goes on.
func TestStreamNULDropped(t *testing.T) {
	_, addr := startTCPServer(t, "")
	c, r := dialTCP(t, addr)
	local := c.LocalAddr().String()
	bad := tcpRegister("bob", "nul", local, func(m string) string {
		return strings.Replace(m, "Expires: 600", "Expires: 6\x0000", 1)
	})
	good := tcpRegister("carol", "after-nul", local, nil)
	c.Write([]byte(bad + good))
	got := readResponse(t, c, r)
	if !strings.HasPrefix(got, "SIP/2.0 200 OK\r\n") || !strings.Contains(got, "after-nul") {
		t.Fatalf("first answer:\n%s\nwant the good REGISTER's 200 only", got)
	}
}

// TestStreamKeepaliveAndLegacy checks a double-CRLF ping gets its pong
// (RFC 5626 §3.5.1) and an RFC 2543 request without Content-Length is
// still answered.
func TestStreamKeepaliveAndLegacy(t *testing.T) {
	_, addr := startTCPServer(t, "")
	c, r := dialTCP(t, addr)
	local := c.LocalAddr().String()
	c.Write([]byte("\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	pong := make([]byte, 2)
	if _, err := io.ReadFull(r, pong); err != nil || string(pong) != "\r\n" {
		t.Fatalf("pong %q: %v", pong, err)
	}
	legacy := tcpRegister("dave", "legacy", local, func(m string) string {
		return strings.Replace(m, "Content-Length: 0\r\n", "", 1)
	})
	c.Write([]byte(legacy))
	if got := readResponse(t, c, r); !strings.HasPrefix(got, "SIP/2.0 200 OK\r\n") {
		t.Fatalf("REGISTER without Content-Length got:\n%s", got)
	}
}

// TestStreamBrokenFraming checks a Content-Length that is not a number
// gets 400 and the connection is closed: there is no boundary to go on.
func TestStreamBrokenFraming(t *testing.T) {
	_, addr := startTCPServer(t, "")
	c, r := dialTCP(t, addr)
	bad := tcpRegister("bob", "ncl", c.LocalAddr().String(), func(m string) string {
		return strings.Replace(m, "Content-Length: 0", "Content-Length: -999", 1)
	})
	c.Write([]byte(bad))
	if got := readResponse(t, c, r); !strings.HasPrefix(got, "SIP/2.0 400 Bad Content-Length\r\n") {
		t.Fatalf("got:\n%s", got)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("the connection stays open after a framing error")
	}
}

// TestSaneConnAlone drives the wrapper over a pipe, without sipgo: what
// the reader gets is exactly the good messages.
func TestSaneConnAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	lim := sanity.Limits{MaxMessageBytes: 4096, MaxHeaders: 50}
	var refused []sanity.Reason
	sc := NewSaneConn(b, func() sanity.Limits { return lim }, func(r sanity.Reason) { refused = append(refused, r) })
	good := tcpRegister("carol", "g1", "192.0.2.1:5060", nil)
	noFrom := tcpRegister("bob", "g2", "192.0.2.1:5060", func(m string) string {
		return strings.Replace(m, "From: <sip:bob@example.com>;tag=g2\r\n", "", 1)
	})
	go func() {
		a.Write([]byte("junk line\r\n" + noFrom))
		// The 400 comes back on the same connection; read it off the pipe.
		buf := make([]byte, 4096)
		a.Read(buf)
		a.Write([]byte(good[:30]))
		a.Write([]byte(good[30:]))
		a.Close()
	}()
	got, err := io.ReadAll(sc)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != good {
		t.Fatalf("reader got %q, want only the good REGISTER", got)
	}
	if len(refused) != 2 || refused[0] != sanity.ReasonNotSIP || refused[1] != sanity.ReasonMissingHeader {
		t.Errorf("refused %v", refused)
	}
	if _, err := sip.ParseMessage(got); err != nil {
		t.Errorf("sipgo cannot parse what passed: %v", err)
	}
}
