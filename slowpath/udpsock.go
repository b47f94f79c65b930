package slowpath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
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

// udpSockets maps a listener's local address to its socket, so the read
// filter can answer a malformed request from the socket it arrived on.
type udpSockets struct {
	mu    sync.RWMutex
	conns map[string]net.PacketConn
}

func (u *udpSockets) add(c net.PacketConn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conns == nil {
		u.conns = map[string]net.PacketConn{}
	}
	u.conns[c.LocalAddr().String()] = c
}

func (u *udpSockets) get(addr string) net.PacketConn {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return u.conns[addr]
}

// UDPSocket returns the UDP socket pinhole listens on at local, so that
// the NAT pinger sends from the address and port a device registered to.
func (s *Server) UDPSocket(local netip.AddrPort) (syscall.RawConn, error) {
	pc := s.udp.get(local.String())
	if pc == nil {
		return nil, fmt.Errorf("no UDP listener on %v", local)
	}
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("UDP listener on %v has no file descriptor", local)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("UDP listener on %v: %w", local, err)
	}
	return rc, nil
}
