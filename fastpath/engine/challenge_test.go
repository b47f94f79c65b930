package engine

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/fastpath/absorb"
	"github.com/pinhole-sip/pinhole/internal/scan"
)

// scanning declines every datagram like absorb.Loop does: Scanned when
// the scanner refuses it, else a miss with its scan kept.
type scanning struct {
	reg scan.Register
	ok  bool
}

func (s *scanning) Absorb(data []byte, lim scan.Limits, _, _ netip.AddrPort, _ time.Time) ([]byte, absorb.Decline) {
	if s.ok = scan.Scan(data, lim, &s.reg) == scan.OK; !s.ok {
		return nil, absorb.Scanned
	}
	return nil, absorb.Miss
}

func (s *scanning) Scanned() *scan.Register {
	if !s.ok {
		return nil
	}
	return &s.reg
}

// TestChallengeGetsTheLoopsScan: the Challenge hook is handed the loop's
// scan of the REGISTER instead of scanning it again, and is not asked at
// all about a REGISTER the scanner refused (it would refuse it too); with
// batching off and on.
func TestChallengeGetsTheLoopsScan(t *testing.T) {
	good := []byte("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-1\r\n" +
		"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:alice@10.0.0.2:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	// A folded header line: the scanner refuses it.
	folded := bytes.Replace(good, []byte("Call-ID: c1\r\n"), []byte("Call-ID:\r\n c1\r\n"), 1)
	for _, batch := range []int{1, 8} {
		t.Run("batch="+strconv.Itoa(batch), func(t *testing.T) {
			var asked, withScan atomic.Int32
			var abs *scanning // made and read on the loop's goroutine
			addr := netip.MustParseAddrPort("127.0.0.1:" + strconv.Itoa(freePort(t)))
			e, err := Start(Config{
				Addr: addr, Loops: 1, QueueSize: 64, Batch: batch,
				NewLoop: func() Absorber { abs = &scanning{}; return abs },
				Limits:  func() scan.Limits { return scan.Limits{MaxMessageBytes: 4096, MaxHeaders: 64} },
				Challenge: func(dst, data []byte, r *scan.Register, _ netip.AddrPort) ([]byte, bool) {
					asked.Add(1)
					if r == &abs.reg && string(r.CallID) == "c1" && r.CSeq == 1 && bytes.Equal(data, good) {
						withScan.Add(1)
					}
					return append(dst, "SIP/2.0 401 Unauthorized\r\n\r\n"...), true
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = e.Stop(ctx)
			})
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 2048)
			if _, err := c.Write(good); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if n, err := c.Read(buf); err != nil || !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 401")) {
				t.Fatalf("reply %q (%v)", buf[:n], err)
			}
			if _, err := c.Write(folded); err != nil {
				t.Fatal(err)
			}
			_ = e.Conn().SetReadDeadline(time.Now().Add(2 * time.Second))
			if n, _, err := e.Conn().ReadFrom(buf); err != nil || !bytes.Equal(buf[:n], folded) {
				t.Fatalf("the refused REGISTER was not handed off: %v", err)
			}
			if asked.Load() != 1 || withScan.Load() != 1 {
				t.Errorf("hook asked %d times (want 1), %d with the loop's scan of that datagram (want 1)", asked.Load(), withScan.Load())
			}
		})
	}
}
