package streams

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// slack is how late a close may come on a loaded machine (2 shared cores,
// the race detector); which limit closed it is asserted by its counter.
const slack = 1500 * time.Millisecond

func testOptions() Options {
	return Options{
		MaxConnections: 100, MaxPerSource: 100,
		IdleTimeout: 600 * time.Millisecond, HandshakeTimeout: 300 * time.Millisecond, MessageTimeout: 400 * time.Millisecond,
		MaxMessageBytes: func() int { return 2048 },
	}
}

// serve runs a stand-in for sipgo's accept and read loops on a loopback
// listener under b, and returns its address.
func serve(t *testing.T, b *Budget, kind Kind, cfg *tls.Config) string {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := b.Listen(inner, kind, cfg)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return inner.Addr().String()
}

// closedAfter dials, runs send, and returns how long until the server
// closed the connection (the client's read sees EOF or a reset).
func closedAfter(t *testing.T, addr string, send func(net.Conn)) time.Duration {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	go send(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept the connection 5 s")
	}
	return time.Since(start)
}

func counter(name string) uint64 { return metrics.GetOrCreateCounter(name).Get() }

func TestDeadlines(t *testing.T) {
	o := testOptions()
	b := NewBudget(o)
	addr := serve(t, b, TCP, nil)
	msg := []byte(sipMsg("body"))

	t.Run("silent connection: handshake timeout", func(t *testing.T) {
		before := counter(`pinhole_stream_closed_total{reason="handshake_timeout"}`)
		d := closedAfter(t, addr, func(net.Conn) {})
		if d < o.HandshakeTimeout-50*time.Millisecond || d > o.HandshakeTimeout+slack {
			t.Errorf("closed after %s, want about %s", d, o.HandshakeTimeout)
		}
		if counter(`pinhole_stream_closed_total{reason="handshake_timeout"}`) != before+1 {
			t.Error("not counted as handshake_timeout")
		}
	})
	t.Run("one message then silence: idle timeout", func(t *testing.T) {
		before := counter(`pinhole_stream_closed_total{reason="idle"}`)
		d := closedAfter(t, addr, func(c net.Conn) { c.Write(msg) })
		if d < o.IdleTimeout-50*time.Millisecond || d > o.IdleTimeout+slack {
			t.Errorf("closed after %s, want about the idle timeout %s", d, o.IdleTimeout)
		}
		if counter(`pinhole_stream_closed_total{reason="idle"}`) != before+1 {
			t.Error("not counted as idle")
		}
	})
	t.Run("CRLF keepalives are activity", func(t *testing.T) {
		d := closedAfter(t, addr, func(c net.Conn) {
			c.Write(msg)
			for range 6 {
				time.Sleep(o.IdleTimeout / 2)
				if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
					return
				}
			}
		})
		if d < 3*o.IdleTimeout {
			t.Errorf("closed after %s although pinged every %s", d, o.IdleTimeout/2)
		}
	})
	t.Run("trickled message: message timeout", func(t *testing.T) {
		before := counter(`pinhole_stream_closed_total{reason="message_timeout"}`)
		d := closedAfter(t, addr, func(c net.Conn) {
			for _, b := range msg {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
		if d > o.MessageTimeout+slack {
			t.Errorf("a byte every 50 ms held the connection %s, past the message timeout %s", d, o.MessageTimeout)
		}
		if counter(`pinhole_stream_closed_total{reason="message_timeout"}`) != before+1 {
			t.Error("not counted as message_timeout")
		}
	})
	t.Run("message over the byte bound", func(t *testing.T) {
		before := counter(`pinhole_stream_closed_total{reason="too_big"}`)
		d := closedAfter(t, addr, func(c net.Conn) { c.Write([]byte(sipMsg(string(make([]byte, 4000))))) })
		if d > slack {
			t.Errorf("closed after %s, want at once", d)
		}
		if counter(`pinhole_stream_closed_total{reason="too_big"}`) != before+1 {
			t.Error("not counted as too_big")
		}
	})
	waitOpen(t, b, 0)
}

func waitOpen(t *testing.T, b *Budget, want int) {
	t.Helper()
	for range 100 {
		if b.Open() == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("open connections %d, want %d", b.Open(), want)
}

func TestLimits(t *testing.T) {
	o := testOptions()
	o.HandshakeTimeout = 10 * time.Second
	o.MaxPerSource, o.MaxConnections = 3, 5
	b := NewBudget(o)
	addr := serve(t, b, TCP, nil)
	dialFrom := func(ip string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	refusedNow := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	}

	before := counter(`pinhole_stream_refused_total{reason="max_per_source"}`)
	for i := range 4 {
		c := dialFrom("127.0.0.2")
		if got := refusedNow(c); got != (i == 3) {
			t.Errorf("connection %d from one source: refused %v", i+1, got)
		}
	}
	if counter(`pinhole_stream_refused_total{reason="max_per_source"}`) != before+1 {
		t.Error("per-source refusal not counted")
	}
	before = counter(`pinhole_stream_refused_total{reason="max_connections"}`)
	for i := range 3 {
		c := dialFrom("127.0.0.3")
		if got := refusedNow(c); got != (i == 2) {
			t.Errorf("connection %d in total: refused %v", 4+i, got)
		}
	}
	if counter(`pinhole_stream_refused_total{reason="max_connections"}`) != before+1 {
		t.Error("total refusal not counted")
	}
	waitOpen(t, b, 5)
}

func TestReserveLowersTheCap(t *testing.T) {
	n, ok := NoFile()
	if !ok {
		t.Skip("no RLIMIT_NOFILE")
	}
	o := testOptions()
	o.MaxConnections, o.FDReserve = 1_000_000, n-10
	if got := NewBudget(o).Limit(); got != 10 {
		t.Errorf("cap with %d descriptors and a reserve of %d: %d, want 10", n, n-10, got)
	}
}

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func TestTLSHandshakeDeadline(t *testing.T) {
	o := testOptions()
	b := NewBudget(o)
	addr := serve(t, b, TLS, selfSigned(t))

	before := counter(`pinhole_stream_closed_total{reason="handshake_timeout"}`)
	// Half a ClientHello, then nothing.
	d := closedAfter(t, addr, func(c net.Conn) { c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0xf0, 0x01}) })
	if d < o.HandshakeTimeout-50*time.Millisecond || d > o.HandshakeTimeout+slack {
		t.Errorf("stalled handshake closed after %s, want about %s", d, o.HandshakeTimeout)
	}
	if counter(`pinhole_stream_closed_total{reason="handshake_timeout"}`) != before+1 {
		t.Error("not counted as handshake_timeout")
	}

	// An honest client: handshake, a message, then kept until idle.
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS handshake through the budget: %v", err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write([]byte(sipMsg("x"))); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.Copy(io.Discard, c)
	if d := time.Since(start); d < o.IdleTimeout-50*time.Millisecond {
		t.Errorf("TLS connection with a message closed after %s, before the idle timeout %s", d, o.IdleTimeout)
	}
}

// fdListener fails accept with EMFILE a few times, as a process out of
// descriptors does, then hands out a real connection.
type fdListener struct {
	net.Listener
	fails int
}

func (l *fdListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// TestAcceptSurvivesEMFILE: sipgo's accept loop ends on the first error
// Accept returns, so the TCP listener stopped for good once descriptors
// ran out. The budget's Accept waits it out and sheds the longest-idle
// connection.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	o := testOptions()
	o.IdleTimeout, o.HandshakeTimeout = time.Minute, time.Minute
	b := NewBudget(o)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	fl := &fdListener{Listener: inner}
	ln := b.Listen(fl, TCP, nil)

	// An idle connection to shed.
	idle, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	first, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	fl.fails = 3
	before := counter(`pinhole_stream_closed_total{reason="shed"}`)
	next, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept returned %v; it must wait descriptor exhaustion out", err)
	}
	c.Close()
	if got := counter(`pinhole_stream_closed_total{reason="shed"}`) - before; got != 1 {
		t.Errorf("shed %d connections, want the one idle connection", got)
	}
	_ = idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("the idle connection was not closed")
	}
	ln.Close()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

// TestEndedBeforeTheReader: Options.Ended hears of a connection's end once,
// before its reader does: on the peer's close, and for WebSocket as soon
// as a Close frame arrives, before the reader has the bytes.
func TestEndedBeforeTheReader(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind Kind
		send string // after the upgrade for WS
	}{
		{"tcp close", TCP, "OPTIONS sip:x SIP/2.0\r\n\r\n"},
		{"ws close frame", WS, "\x88\x80abcd"}, // masked Close, no payload
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			var calls atomic.Int64
			var ended sync.WaitGroup
			ended.Add(1)
			o.Ended = func(kind Kind, local, remote net.Addr) {
				if kind != tc.kind || local == nil || remote == nil {
					t.Errorf("Ended(%v, %v, %v)", kind, local, remote)
				}
				if calls.Add(1) == 1 {
					ended.Done()
				}
			}
			b := NewBudget(o)
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := b.Listen(inner, tc.kind, nil)
			defer ln.Close()
			peer, err := net.Dial("tcp", inner.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.kind == WS {
				_, _ = peer.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			}
			_, _ = peer.Write([]byte(tc.send))
			if tc.kind == TCP {
				peer.Close()
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			for {
				n, err := c.Read(buf)
				if tc.kind == WS && n > 0 && calls.Load() == 0 && bytesHasClose(buf[:n]) {
					t.Fatal("the reader got the Close frame before Ended was called")
				}
				if err != nil || (tc.kind == WS && calls.Load() > 0) {
					break
				}
			}
			ended.Wait()
			_, _ = c.Read(buf)
			if n := calls.Load(); n != 1 {
				t.Errorf("Ended called %d times, want once", n)
			}
		})
	}
}

func bytesHasClose(p []byte) bool {
	for _, b := range p {
		if b == 0x88 {
			return true
		}
	}
	return false
}

// TestHandshakeHook: Options.Handshake hears every TLS handshake with its
// source and outcome; a connection it refuses is closed before sipgo reads
// a byte and counted as tls_refused, one it keeps carries on.
func TestHandshakeHook(t *testing.T) {
	o := testOptions()
	type seen struct {
		src      netip.Addr
		err      bool
		timedOut bool
	}
	calls := make(chan seen, 4)
	keep := atomic.Bool{}
	o.Handshake = func(src netip.Addr, _ tls.ConnectionState, err error, timedOut bool) bool {
		calls <- seen{src, err != nil, timedOut}
		return err == nil && keep.Load()
	}
	addr := serve(t, NewBudget(o), TLS, selfSigned(t))
	loopback := netip.MustParseAddr("127.0.0.1")

	before := counter(`pinhole_stream_closed_total{reason="tls_refused"}`)
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	// The server's handshake ends after the client's; its verdict closes
	// the connection, which the client's read sees.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("a refused connection delivered data")
	}
	c.Close()
	if got := <-calls; got != (seen{src: loopback}) {
		t.Errorf("hook heard %+v, want a successful handshake from %s", got, loopback)
	}
	if counter(`pinhole_stream_closed_total{reason="tls_refused"}`) != before+1 {
		t.Error("a refused connection was not counted as tls_refused")
	}

	keep.Store(true)
	c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(sipMsg("x"))); err != nil {
		t.Fatal(err)
	}
	<-calls
	_ = c.SetReadDeadline(time.Now().Add(o.IdleTimeout / 2))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a kept connection ended early: %v", err)
	}

	// A failed handshake is reported with its error, and not kept.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"))
	if got := <-calls; !got.err || got.timedOut {
		t.Errorf("plain text on the TLS port: hook heard %+v, want a failed handshake", got)
	}
	raw.Close()
}
