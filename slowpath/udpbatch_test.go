package slowpath

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestBatchedUDPReadsAsUDPConn: the slow path's listener, read in batches,
// hands sipgo every datagram with the source net.UDPConn gives for it
// (the same text: it becomes the request's source and the retransmission
// key), in order, including more datagrams than one batch holds, and a
// datagram cut to a short buffer as recvfrom cuts it.
func TestBatchedUDPReadsAsUDPConn(t *testing.T) {
	for _, tc := range []struct{ listen, peerNet, dst string }{
		{"127.0.0.1:0", "udp4", "127.0.0.1"},
		{"[::1]:0", "udp6", "::1"},
		{"[::]:0", "udp4", "127.0.0.1"}, // dual stack: an IPv4 peer, v4-mapped on the socket
	} {
		t.Run(tc.listen+"/"+tc.peerNet, func(t *testing.T) {
			pc, err := listenUDP(tc.listen)
			if err != nil {
				t.Skipf("listen %s: %v", tc.listen, err)
			}
			t.Cleanup(func() { pc.Close() })
			if _, ok := pc.(*batchedUDP); !ok {
				t.Fatalf("listenUDP returned %T, not the batched reader", pc)
			}
			port := pc.LocalAddr().(*net.UDPAddr).Port
			var peers []net.Conn
			for range 3 {
				p, err := net.Dial(tc.peerNet, net.JoinHostPort(tc.dst, strconv.Itoa(port)))
				if err != nil {
					t.Skipf("dial %s: %v", tc.peerNet, err)
				}
				t.Cleanup(func() { p.Close() })
				peers = append(peers, p)
			}
			// Twice a batch and a bit, so that batches refill.
			const n = 2*udpReadBatch + 5
			for i := range n {
				if _, err := peers[i%len(peers)].Write([]byte(fmt.Sprintf("datagram %d", i))); err != nil {
					t.Fatal(err)
				}
			}
			if err := pc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, maxDatagram)
			for i := range n {
				m, from, err := pc.ReadFrom(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if got, want := string(buf[:m]), fmt.Sprintf("datagram %d", i); got != want {
					t.Errorf("read %q, want %q", got, want)
				}
				ua, ok := from.(*net.UDPAddr)
				if !ok {
					t.Fatalf("source is %T, not *net.UDPAddr", from)
				}
				if want := peers[i%len(peers)].LocalAddr().String(); ua.String() != want {
					t.Errorf("datagram %d from %s, want %s", i, ua, want)
				}
			}
			// A short buffer gets the datagram's head.
			if _, err := peers[0].Write([]byte("0123456789")); err != nil {
				t.Fatal(err)
			}
			if m, _, err := pc.ReadFrom(buf[:4]); err != nil || string(buf[:m]) != "0123" {
				t.Errorf("short buffer: %q, %v", buf[:m], err)
			}
		})
	}
}

// TestBatchedUDPSameSourceAsStandard compares the two readers on the same
// datagram: the source's text and its IP's form are net.UDPConn's.
func TestBatchedUDPSameSourceAsStandard(t *testing.T) {
	std, err := listenUDPSocket("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { std.Close() })
	bat, err := listenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bat.Close() })
	p, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	read := func(c net.PacketConn) *net.UDPAddr {
		t.Helper()
		if _, err := p.WriteTo([]byte("x"), c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, from, err := c.ReadFrom(make([]byte, 16))
		if err != nil {
			t.Fatal(err)
		}
		return from.(*net.UDPAddr)
	}
	a, b := read(std), read(bat)
	if a.String() != b.String() || len(a.IP) != len(b.IP) || a.Zone != b.Zone {
		t.Errorf("standard reader: %s (IP of %d bytes, zone %q); batched: %s (%d bytes, zone %q)",
			a, len(a.IP), a.Zone, b, len(b.IP), b.Zone)
	}
}

// TestBatchedUDPCloseEndsRead: closing the listener ends a ReadFrom that
// waits on an empty socket with net.ErrClosed, the error on which sipgo's
// reader stops quietly.
func TestBatchedUDPCloseEndsRead(t *testing.T) {
	pc, err := listenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := pc.ReadFrom(make([]byte, 64))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it wait in the poller
	pc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("ReadFrom after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrom still waits after Close")
	}
}

// BenchmarkUDPRead compares reading queued datagrams as sipgo's reader
// does (ReadFrom, one at a time) from a plain net.UDPConn ("recvfrom")
// and from the batched listener ("recvmmsg"), 32 queued at a time: the
// sending side (one sendmmsg per 32) is the same for both. Per datagram.
func BenchmarkUDPRead(b *testing.B) {
	for _, mode := range []string{"recvfrom", "recvmmsg"} {
		b.Run(mode, func(b *testing.B) {
			open := listenUDPSocket
			if mode == "recvmmsg" {
				open = listenUDP
			}
			pc, err := open("127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { pc.Close() })
			peer, err := listenUDP("127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { peer.Close() })
			out := newAnswerBatch()
			msg := bytes.Repeat([]byte("x"), 600)
			buf := make([]byte, maxDatagram)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += udpReadBatch {
				for range udpReadBatch {
					out.write(peer, msg, pc.LocalAddr())
				}
				out.flush()
				for range udpReadBatch {
					if _, _, err := pc.ReadFrom(buf); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
