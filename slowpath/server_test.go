package slowpath

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/config"
)

// freeUDPPort asks the kernel for a port that is free right now.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startServer runs the slow path on a loopback UDP port with the given
// YAML lines added to a minimal configuration.
func startServer(t testing.TB, extra string) (*Server, string) {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freeUDPPort(t))
	listen := fmt.Sprintf("listen:\n  udp: [%q]\n", addr)
	return startServerWith(t, listen+extra), addr
}

// startServerWith runs the slow path with a configuration that names its
// own listen section.
func startServerWith(t testing.TB, yaml string) *Server {
	t.Helper()
	yaml += fmt.Sprintf("domains: [example.com]\ndata_dir: %q\nmetrics:\n  listen: \"\"\n", t.TempDir())
	cfg, err := config.Parse([]byte(yaml), "test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func register(user string, callID string, cseq int, local string) []byte {
	return []byte("REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + callID + "-" + strconv.Itoa(cseq) + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:" + user + "@example.com>;tag=" + callID + "\r\nTo: <sip:" + user + "@example.com>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
		"Contact: <sip:" + user + "@" + local + ">\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n")
}

func TestRegisterOverUDP(t *testing.T) {
	s, addr := startServer(t, "")
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	if _, err := c.Write(register("alice", "call-1", 1, local)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	res := buf[:n]
	if !bytes.HasPrefix(res, []byte("SIP/2.0 200 OK\r\n")) || !bytes.Contains(res, []byte(";expires=600")) {
		t.Fatalf("response:\n%s", res)
	}
	got := s.Store().Lookup("alice@example.com")
	if len(got) != 1 || got[0].Flow.Remote.String() != local || got[0].Flow.Local.String() != addr {
		t.Fatalf("binding %+v: want flow %s -> %s", got, local, addr)
	}
}

// BenchmarkRegisterUDP measures REGISTERs answered per second by the
// whole slow path (sipgo parse, transaction, registrar, store) over
// loopback UDP, closed loop with 256 requests outstanding:
//   - new: first registrations, each written through to disk before its 200;
//   - refresh: the same registration again with a higher CSeq, written behind.
//
// The client runs in the same process: run with -cpu 2 and read the
// figure as a lower bound for one server core.
func BenchmarkRegisterUDP(b *testing.B) {
	b.Run("new", func(b *testing.B) {
		benchRegister(b, func(i int) (string, int) { return "n" + strconv.Itoa(i), 1 })
	})
	b.Run("refresh", func(b *testing.B) {
		const users = 10000
		benchRegister(b, func(i int) (string, int) { return "r" + strconv.Itoa(i%users), 1 + i/users })
	})
}

func benchRegister(b *testing.B, next func(i int) (user string, cseq int)) {
	_, addr := startServer(b, "")
	c, err := net.Dial("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.(*net.UDPConn).SetReadBuffer(4 << 20)
	local := c.LocalAddr().String()
	const window = 256
	tokens := make(chan struct{}, window)
	for range window {
		tokens <- struct{}{}
	}
	stop := make(chan struct{})
	answered := make(chan int)
	go func() {
		buf := make([]byte, 4096)
		ok := 0
		for {
			select {
			case <-stop:
				answered <- ok
				return
			default:
			}
			c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := c.Read(buf)
			if err != nil {
				continue
			}
			if bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
				ok++
			}
			select {
			case tokens <- struct{}{}:
			default:
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	lost := 0
	for i := 0; i < b.N; i++ {
		select {
		case <-tokens:
		case <-time.After(100 * time.Millisecond):
			lost++ // a request or its answer was dropped: do not stall
		}
		user, cseq := next(i)
		c.Write(register(user, "bench-"+user, cseq, local))
	}
	for range window {
		select {
		case <-tokens:
		case <-time.After(200 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	close(stop)
	ok := <-answered
	b.ReportMetric(float64(ok)/elapsed.Seconds(), "reg/s")
	b.ReportMetric(float64(lost), "stalls")
}

func TestMalformedRequestGets400(t *testing.T) {
	_, addr := startServer(t, "")
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// No CSeq: sipgo alone would log and drop it; pinhole answers 400.
	bad := "OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP " + c.LocalAddr().String() + ";branch=z9hG4bK-x\r\n" +
		"From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: bad-1\r\nContent-Length: 0\r\n\r\n"
	c.Write([]byte(bad))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 400 Missing CSeq Header\r\n")) || !bytes.Contains(buf[:n], []byte("Call-ID: bad-1")) {
		t.Fatalf("response:\n%s", buf[:n])
	}
	// Junk gets nothing back and does not stop the socket: a REGISTER after it is answered.
	c.Write([]byte("\x16\x03\x01 hello"))
	c.Write(register("bob", "after-junk", 1, c.LocalAddr().String()))
	n, err = c.Read(buf)
	if err != nil || !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200 OK")) {
		t.Fatalf("after junk: %v\n%s", err, buf[:n])
	}
}
