package slowpath

import (
	"context"
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// udpReceiveBuffer is the kernel receive buffer pinhole asks for on each
// UDP listener. The default (net.core.rmem_default, 208 KiB here) holds
// about 300 REGISTERs: measured on 2026-11-30, 8 000 refreshes/s from the
// load generator against one core overflowed it in bursts (55 000
// RcvbufErrors in 15 s, every one a retransmission and up to 11 s of
// latency) while the CPU was half idle, because sipgo's reader goroutine
// waits its turn behind the per-request goroutines. 16 MiB absorbs those
// bursts (about 23 000 REGISTERs, a few seconds at the target rate).
const udpReceiveBuffer = 16 << 20

// listenUDP opens a UDP listener with a large receive buffer. As root it
// uses SO_RCVBUFFORCE to pass net.core.rmem_max; otherwise the kernel
// caps the request at rmem_max, which is still an improvement.
func listenUDP(addr string) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpReceiveBuffer)
			if errors.Is(serr, unix.EPERM) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, udpReceiveBuffer)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.ListenPacket(context.Background(), "udp", addr)
}
