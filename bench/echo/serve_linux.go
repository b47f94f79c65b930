package echo

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batch is how many datagrams one recvmmsg/sendmmsg moves. 64 amortizes
// the syscall well past the point where parsing dominates.
const batch = 64

// mmsghdr is struct mmsghdr of <sys/socket.h> (msghdr plus the length the
// kernel fills in), which x/sys/unix does not define.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// Stats counts what the responder did.
type Stats struct {
	Received, Answered atomic.Uint64
}

// Serve answers on a UDP socket bound to addr until ctx ends. ready, if
// not nil, is closed once the socket is bound.
func Serve(ctx context.Context, addr netip.AddrPort, st *Stats, ready chan<- struct{}) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("echo: open socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}); err != nil {
		return fmt.Errorf("echo: bind %v: %w", addr, err)
	}
	// A blocking socket with a receive timeout: the loop notices ctx within
	// 100 ms and costs nothing while idle.
	tv := unix.Timeval{Usec: 100000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("echo: set receive timeout: %w", err)
	}
	// A deep receive queue, past net.core.rmem_max when root (FORCE): with
	// the default 208 KB, about a hundred queued datagrams, a few
	// milliseconds of preemption on a shared core would drop requests and
	// the generator's ceiling would measure the scheduler.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	if ready != nil {
		close(ready)
	}

	var (
		in, out   [batch]mmsghdr
		inIov     [batch]unix.Iovec
		outIov    [batch]unix.Iovec
		names     [batch]unix.RawSockaddrInet4
		outNames  [batch]unix.RawSockaddrInet4
		bufs      [batch][2048]byte
		replyBufs [batch][]byte
	)
	for i := range batch {
		inIov[i].Base = &bufs[i][0]
		inIov[i].SetLen(len(bufs[i]))
		replyBufs[i] = make([]byte, 0, 2048)
	}
	for ctx.Err() == nil {
		for i := range batch {
			in[i].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&names[i])), Namelen: unix.SizeofSockaddrInet4, Iov: &inIov[i], Iovlen: 1}
		}
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&in[0])), batch, unix.MSG_WAITFORONE, 0, 0)
		if errno != 0 {
			if errno == unix.EAGAIN || errno == unix.EINTR {
				continue
			}
			return fmt.Errorf("echo: recvmmsg: %w", errno)
		}
		st.Received.Add(uint64(n))
		k := 0
		for i := range int(n) {
			reply, ok := Answer(replyBufs[k][:0], bufs[i][:in[i].n])
			if !ok {
				continue
			}
			replyBufs[k] = reply
			outNames[k] = names[i]
			outIov[k].Base = &reply[0]
			outIov[k].SetLen(len(reply))
			out[k].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&outNames[k])), Namelen: unix.SizeofSockaddrInet4, Iov: &outIov[k], Iovlen: 1}
			k++
		}
		for sent := 0; sent < k; {
			m, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&out[sent])), uintptr(k-sent), 0, 0, 0)
			if errno != 0 {
				if errors.Is(errno, unix.EINTR) {
					continue
				}
				// A peer that went away (ECONNREFUSED from an earlier ICMP):
				// skip that datagram, answer the rest.
				sent++
				continue
			}
			sent += int(m)
			st.Answered.Add(uint64(m))
		}
	}
	return nil
}
