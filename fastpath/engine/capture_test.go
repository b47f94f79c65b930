package engine

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/fastpath/absorb"
	"github.com/pinhole-sip/pinhole/internal/capture"
	"github.com/pinhole-sip/pinhole/internal/scan"
)

// registrar answers every REGISTER with a fixed 200, as a loop answers an
// absorbed refresh; it allocates nothing.
type registrar struct{}

var ok200 = []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1;rport=5062;received=127.0.0.1\r\n" +
	"From: <sip:b@localhost>;tag=1\r\nTo: <sip:b@localhost>;tag=2\r\nCall-ID: same\r\nCSeq: 2 REGISTER\r\n" +
	"Contact: <sip:b@127.0.0.1:5062>;expires=600\r\nContent-Length: 0\r\n\r\n")

func (registrar) Absorb(data []byte, _ scan.Limits, _, _ netip.AddrPort, _ time.Time) ([]byte, absorb.Decline) {
	return ok200, absorb.Absorbed
}

// refreshes are REGISTERs of n calls, so a sample of calls picks some.
func refreshes(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte("REGISTER sip:localhost SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1;rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:b@localhost>;tag=1\r\nTo: <sip:b@localhost>\r\n" +
			"Call-ID: refresh-" + strconv.Itoa(i) + "@bench\r\nCSeq: 2 REGISTER\r\n" +
			"Contact: <sip:b@127.0.0.1:5062>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n")
	}
	return out
}

// startRegistrar runs a one-loop engine answering every REGISTER, with
// capture off (rate < 0) or on at rate hundredths of a percent to a UDP
// collector that reads and discards; batch is Config.Batch.
func startRegistrar(t testing.TB, rate, batch int) (*Engine, *capture.Capturer) {
	t.Helper()
	var c *capture.Capturer
	if rate >= 0 {
		sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sink.Close() })
		go func() {
			buf := make([]byte, 1<<16)
			for {
				if _, err := sink.Read(buf); err != nil {
					return
				}
			}
		}()
		c, err = capture.New(capture.Config{
			Collectors: []capture.Collector{{Network: "udp", Addr: sink.LocalAddr().String()}},
			Sample:     uint32(rate), QueueSize: 4096, Received: true, Sent: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Start()
		t.Cleanup(c.Close)
	}
	addr := netip.MustParseAddrPort("127.0.0.1:" + strconv.Itoa(freePort(t)))
	e, err := Start(Config{
		Addr: addr, Loops: 1, QueueSize: 64, RecvBuffer: 1 << 20, Capture: c, Batch: batch,
		NewLoop: func() Absorber { return registrar{} },
		Limits:  func() scan.Limits { return scan.Limits{MaxMessageBytes: 4096, MaxHeaders: 64} },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	})
	return e, c
}

// A loop's answered refresh and its answer both reach the capture, with
// gnet's one datagram at a time and with batched I/O.
func TestLoopCapturesExchange(t *testing.T) {
	for _, batch := range []int{1, 64} {
		t.Run("batch="+strconv.Itoa(batch), func(t *testing.T) { loopCapturesExchange(t, batch) })
	}
}

func loopCapturesExchange(t *testing.T, batch int) {
	e, c := startRegistrar(t, 10000, batch)
	dev, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(e.cfg.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if _, err := dev.Write(refreshes(1)[0]); err != nil {
		t.Fatal(err)
	}
	_ = dev.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := dev.Read(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); c.Stats(0).Sent < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("capture stats %+v, want the refresh and its answer sent", c.Stats(0))
		}
	}
}

// BenchmarkLoopCapture is BenchmarkGnetShare with a REGISTER and a 200
// through one loop (unbatched: one client sends one at a time), capture off, on at a 1 % sample of calls, and on for
// every call: what capture adds to an absorbed refresh, in time and in
// allocations per datagram (the process's, gnet's share included).
func BenchmarkLoopCapture(b *testing.B) {
	for _, bc := range []struct {
		name string
		rate int
	}{{"off", -1}, {"sample=1%", 100}, {"sample=100%", 10000}} {
		b.Run(bc.name, func(b *testing.B) {
			e, _ := startRegistrar(b, bc.rate, 1)
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(e.cfg.Addr))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msgs, buf := refreshes(1000), make([]byte, 1000)
			var before, after runtime.MemStats
			b.ReportAllocs()
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(msgs[i%len(msgs)]); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N), "process-allocs/datagram")
		})
	}
}
