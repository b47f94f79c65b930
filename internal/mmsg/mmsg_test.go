//go:build linux

package mmsg

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketFD returns the descriptor of a UDP socket bound to addr.
func socketFD(t testing.TB, network, addr string) (*net.UDPConn, int) {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("%s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	uc := c.(*net.UDPConn)
	raw, err := uc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return uc, fd
}

// TestBatchRoundTrip: datagrams from several peers are read in one batch
// with their sources, and replies sent in one batch reach each peer.
func TestBatchRoundTrip(t *testing.T) {
	for _, tc := range []struct{ network, addr, peer string }{
		{"udp4", "127.0.0.1:0", "udp4"},
		{"udp6", "[::1]:0", "udp6"},
		{"udp", "[::]:0", "udp4"}, // dual stack: an IPv4 peer, v4-mapped on the wire
	} {
		t.Run(tc.network+"/"+tc.peer, func(t *testing.T) {
			srv, fd := socketFD(t, tc.network, tc.addr)
			family := unix.AF_INET6
			if tc.network == "udp4" {
				family = unix.AF_INET
			}
			port := srv.LocalAddr().(*net.UDPAddr).Port
			dst := fmt.Sprintf("127.0.0.1:%d", port)
			if tc.peer == "udp6" {
				dst = fmt.Sprintf("[::1]:%d", port)
			}
			var peers []*net.UDPConn
			for i := range 5 {
				p, err := net.Dial(tc.peer, dst)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { p.Close() })
				if _, err := p.Write([]byte(fmt.Sprintf("request %d", i))); err != nil {
					t.Fatal(err)
				}
				peers = append(peers, p.(*net.UDPConn))
			}
			rx, tx := NewReceiver(8, 2048), NewSender(8, 2048, family)
			got := 0
			for got < len(peers) {
				n, err := rx.Recv(fd)
				if err != nil {
					t.Fatal(err)
				}
				for i := range n {
					data, from, ok := rx.Datagram(i)
					if !ok || !bytes.HasPrefix(data, []byte("request ")) {
						t.Fatalf("datagram %q from %v (%v)", data, from, ok)
					}
					if err := tx.Add(append([]byte("reply to "), data...), from); err != nil {
						t.Fatal(err)
					}
				}
				got += n
			}
			if failed := tx.Flush(fd); failed != 0 {
				t.Fatalf("%d replies failed", failed)
			}
			for i, p := range peers {
				buf := make([]byte, 100)
				if err := p.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
					t.Fatal(err)
				}
				n, err := p.Read(buf)
				if err != nil || string(buf[:n]) != fmt.Sprintf("reply to request %d", i) {
					t.Fatalf("peer %d got %q, %v", i, buf[:n], err)
				}
			}
			if n, err := rx.Recv(fd); n != 0 || err != nil {
				t.Fatalf("empty socket: %d, %v", n, err)
			}
		})
	}
}

func TestSenderLimits(t *testing.T) {
	tx := NewSender(1, 16, unix.AF_INET)
	to := netip.MustParseAddrPort("127.0.0.1:9")
	if err := tx.Add(make([]byte, 17), to); err != ErrTooBig {
		t.Errorf("oversized datagram: %v", err)
	}
	if err := tx.Add([]byte("x"), netip.MustParseAddrPort("[::1]:9")); err == nil {
		t.Error("an IPv6 destination on an IPv4 socket was accepted")
	}
	if err := tx.Add([]byte("x"), to); err != nil {
		t.Fatal(err)
	}
	if err := tx.Add([]byte("y"), to); err != ErrFull || !tx.Full() {
		t.Errorf("second datagram in a batch of one: %v", err)
	}
}

// BenchmarkBatch: what moving a datagram costs in a batch of 64, both ways.
func BenchmarkBatch(b *testing.B) {
	srv, fd := socketFD(b, "udp4", "127.0.0.1:0")
	p, err := net.Dial("udp4", srv.LocalAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	pfd := func() int {
		raw, _ := p.(*net.UDPConn).SyscallConn()
		var fd int
		_ = raw.Control(func(f uintptr) { fd = int(f) })
		return fd
	}()
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	_ = unix.SetsockoptInt(pfd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	const batch = 64
	rx, tx := NewReceiver(batch, 2048), NewSender(batch, 2048, unix.AF_INET)
	prx := NewReceiver(batch, 2048)
	ptx := NewSender(batch, 2048, unix.AF_INET)
	to := netip.MustParseAddrPort(srv.LocalAddr().String())
	msg := bytes.Repeat([]byte("x"), 400)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		for range batch {
			_ = ptx.Add(msg, to)
		}
		ptx.Flush(pfd)
		for got := 0; got < batch; {
			n, _ := rx.Recv(fd)
			for i := range n {
				data, from, _ := rx.Datagram(i)
				_ = tx.Add(data, from)
			}
			got += n
		}
		tx.Flush(fd)
		for got := 0; got < batch; {
			n, _ := prx.Recv(pfd)
			got += n
		}
	}
}

// TestReceiverReuse: one Receiver read again and again, with batches of
// every size and a truncated datagram among them, reports each datagram
// with its own source and length: Recv readies only the headers the last
// call used, so nothing of an earlier batch may leak into a later one.
func TestReceiverReuse(t *testing.T) {
	srv, fd := socketFD(t, "udp4", "127.0.0.1:0")
	var peers []*net.UDPConn
	for range 3 {
		p, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		peers = append(peers, p)
	}
	const slot = 64
	rx := NewReceiver(4, slot)
	type dgram struct {
		peer int
		size int
	}
	rounds := [][]dgram{
		{{0, 10}, {1, 20}, {2, 30}, {0, 40}},
		{{1, slot + 10}},           // truncated: not ok
		{{2, 5}},                   // the slot the truncated one used, ok again
		{{0, 1}, {1, 2}, {2, 3}},   // fewer than the last full batch
		{{2, slot}, {1, slot - 1}}, // exactly a slot
	}
	for r, round := range rounds {
		for _, d := range round {
			if _, err := peers[d.peer].Write(bytes.Repeat([]byte{byte('a' + r)}, d.size)); err != nil {
				t.Fatal(err)
			}
		}
		n, err := rx.Recv(fd)
		if err != nil || n != len(round) {
			t.Fatalf("round %d: %d datagrams, %v; want %d", r, n, err, len(round))
		}
		for i, d := range round {
			data, from, ok := rx.Datagram(i)
			want := netip.MustParseAddrPort(peers[d.peer].LocalAddr().String())
			if from != want {
				t.Errorf("round %d datagram %d: from %v, want %v", r, i, from, want)
			}
			if truncated := d.size > slot; ok == truncated {
				t.Errorf("round %d datagram %d of %d bytes: ok %v", r, i, d.size, ok)
			}
			if !bytes.Equal(data, bytes.Repeat([]byte{byte('a' + r)}, min(d.size, slot))) {
				t.Errorf("round %d datagram %d: %q", r, i, data)
			}
		}
	}
}
