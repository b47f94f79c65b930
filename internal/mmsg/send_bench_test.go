//go:build linux

package mmsg

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkSend compares answering 64 peers' datagrams with one sendto
// each (net.UDPConn.WriteTo, as the slow path's workers did) against one
// sendmmsg: the receiving side's drain (recvmmsg) is the same for both.
// Reported per datagram; on loopback the sender also pays the delivery.
func BenchmarkSend(b *testing.B) {
	for _, mode := range []string{"sendto", "sendmmsg"} {
		b.Run(mode, func(b *testing.B) {
			srv, fd := socketFD(b, "udp4", "127.0.0.1:0")
			peer, pfd := socketFD(b, "udp4", "127.0.0.1:0")
			_ = unix.SetsockoptInt(pfd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
			const batch = 64
			tx := NewSender(batch, 2048, unix.AF_INET)
			prx := NewReceiver(batch, 2048)
			to := netip.MustParseAddrPort(peer.LocalAddr().String())
			ua := net.UDPAddrFromAddrPort(to)
			msg := bytes.Repeat([]byte("x"), 600)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += batch {
				if mode == "sendto" {
					for range batch {
						_, _ = srv.WriteTo(msg, ua)
					}
				} else {
					for range batch {
						_ = tx.Add(msg, to)
					}
					tx.Flush(fd)
				}
				for got := 0; got < batch; {
					n, _ := prx.Recv(pfd)
					got += n
				}
			}
		})
	}
}
