package engine

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/fastpath/absorb"
	"github.com/pinhole-sip/pinhole/internal/scan"
)

// echo absorbs datagrams that start with "ECHO" by answering "OK" and
// declines the rest; it allocates nothing, so what a datagram costs in
// allocations through the engine is gnet's share.
type echo struct{}

var ok = []byte("OK")

func (echo) Absorb(data []byte, _ scan.Limits, _, _ netip.AddrPort, _ time.Time) ([]byte, absorb.Decline) {
	if bytes.HasPrefix(data, []byte("ECHO")) {
		return ok, absorb.Absorbed
	}
	return nil, absorb.Miss
}

func freePort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func startEcho(t testing.TB, loops int) *Engine { return startEchoBatch(t, loops, 1) }

// startEchoBatch starts an echo engine whose loops move batch datagrams
// per recvmmsg/sendmmsg.
func startEchoBatch(t testing.TB, loops, batch int) *Engine {
	t.Helper()
	addr := netip.MustParseAddrPort("127.0.0.1:" + strconv.Itoa(freePort(t)))
	e, err := Start(Config{
		Addr: addr, Loops: loops, QueueSize: 4096, RecvBuffer: 4 << 20, Batch: batch,
		NewLoop: func() Absorber { return echo{} },
		Limits:  func() scan.Limits { return scan.Limits{MaxMessageBytes: 4096, MaxHeaders: 64} },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return e
}

// One socket address for everything: absorbed replies, handed-off
// datagrams (with their source) and the slow path's writes.
func TestEngineAbsorbsAndHandsOff(t *testing.T) {
	e := startEcho(t, 2)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(e.cfg.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	if _, err := c.Write([]byte("ECHO 1")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "OK" {
		t.Fatalf("absorbed reply %q (%v)", buf[:n], err)
	}
	if _, err := c.Write([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	n, from, err := e.Conn().ReadFrom(buf)
	if err != nil || string(buf[:n]) != "OPTIONS sip:x SIP/2.0\r\n\r\n" || from.String() != c.LocalAddr().String() {
		t.Fatalf("handed off %q from %v (%v)", buf[:n], from, err)
	}
	if e.Conn().LocalAddr().String() != e.cfg.Addr.String() {
		t.Errorf("LocalAddr %v, want %v", e.Conn().LocalAddr(), e.cfg.Addr)
	}
	if _, err := e.Conn().WriteTo([]byte("SIP/2.0 200 OK\r\n\r\n"), from); err != nil {
		t.Fatal(err)
	}
	n, src, err := c.ReadFromUDP(buf)
	if err != nil || src.AddrPort() != e.cfg.Addr {
		t.Fatalf("slow path's write came from %v (%v), want %v", src, err, e.cfg.Addr)
	}
	if _, handed, _ := e.Counts(); handed != 1 {
		t.Errorf("handed %d, want 1", handed)
	}
}

// BenchmarkGnetShare sends datagrams through the engine with an absorber
// that allocates nothing and reports the allocations per datagram seen in
// the process: gnet's share (plus the client's, which is none for a
// connected UDP socket's Write and Read).
func BenchmarkGnetShare(b *testing.B) {
	e := startEcho(b, 1)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(e.cfg.Addr))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg, buf := []byte("ECHO refresh"), make([]byte, 100)
	var before, after runtime.MemStats
	b.ReportAllocs()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N), "process-allocs/datagram")
}
