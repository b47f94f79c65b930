package slowpath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
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
// caps the request at rmem_max, which is still an improvement. The socket
// may bind an address the box does not hold (freeBind). sipgo reads it in
// batches (batchedUDP, udpbatch.go). It is the listener of the slow path
// alone: with the fast path on, the hand-off's sockets are used instead.
func listenUDP(addr string) (net.PacketConn, error) {
	pc, err := listenUDPSocket(addr)
	if err != nil {
		return nil, err
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return pc, nil
	}
	bc, err := newBatchedUDP(uc)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	return bc, nil
}

// listenUDPSocket opens the socket listenUDP reads.
func listenUDPSocket(addr string) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpReceiveBuffer)
			if errors.Is(serr, unix.EPERM) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, udpReceiveBuffer)
			}
			if serr == nil {
				serr = freeBind(network, fd)
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

// freeBind lets a listener bind an address that is not (yet) on any of
// the box's interfaces: both boxes of an active/standby pair listen on the
// virtual address, and keepalived moves it to one of them later
// (docs/cluster.md). The socket receives once the address arrives and
// sends from it while it is there; while it is not, the kernel refuses
// to send from it (EINVAL), so the standby's socket cannot leak packets
// with the VIP as their source. IP_FREEBIND does for this socket what
// the net.ipv4.ip_nonlocal_bind sysctl does for every socket in the
// namespace; the fast path's gnet sockets, which pinhole does not create,
// need the sysctl.
func freeBind(network string, fd uintptr) error {
	level, opt := unix.IPPROTO_IP, unix.IP_FREEBIND
	if strings.HasSuffix(network, "6") {
		// Linux 4.15 and later: its own option for IPv6.
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_FREEBIND
	}
	if err := unix.SetsockoptInt(int(fd), level, opt, 1); err != nil {
		return fmt.Errorf("set IP_FREEBIND: %w", err)
	}
	return nil
}

// freeBindControl is a net.ListenConfig Control that sets freeBind.
func freeBindControl(network, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) { serr = freeBind(network, fd) }); err != nil {
		return err
	}
	return serr
}
