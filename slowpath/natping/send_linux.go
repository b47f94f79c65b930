package natping

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxBatch is how many datagrams one sendmmsg(2) carries. The kernel caps
// vlen at UIO_MAXIOV (1024); 64 keeps the arrays small and already makes
// the syscall cost per ping negligible.
const maxBatch = 64

// mmsghdr is struct mmsghdr from <sys/socket.h>; x/sys/unix has no type
// for it.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// batch holds the kernel-facing arrays of one sendmmsg call, reused.
type batch struct {
	hdrs  [maxBatch]mmsghdr
	iovs  [maxBatch]unix.Iovec
	names [maxBatch]unix.RawSockaddrInet6 // large enough for either family
	n     int
}

// add queues payload to dst; v4 says the socket is AF_INET.
func (b *batch) add(payload []byte, dst netip.AddrPort, v4 bool) bool {
	if b.n == maxBatch || len(payload) == 0 {
		return false
	}
	i := b.n
	name := &b.names[i]
	*name = unix.RawSockaddrInet6{}
	var nlen uint32
	if v4 {
		if !dst.Addr().Unmap().Is4() {
			return false
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		sa.Family = unix.AF_INET
		sa.Addr = dst.Addr().Unmap().As4()
		putPort(&sa.Port, dst.Port())
		nlen = unix.SizeofSockaddrInet4
	} else {
		name.Family = unix.AF_INET6
		name.Addr = dst.Addr().As16()
		putPort(&name.Port, dst.Port())
		nlen = unix.SizeofSockaddrInet6
	}
	b.iovs[i] = unix.Iovec{Base: &payload[0]}
	b.iovs[i].SetLen(len(payload))
	h := &b.hdrs[i].hdr
	*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(name)), Namelen: nlen, Iov: &b.iovs[i]}
	h.SetIovlen(1)
	b.n++
	return true
}

// putPort stores a port in network byte order.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// send transmits the queued datagrams through the socket behind rc and
// empties the batch. It returns how many were sent and the first error; a
// datagram the kernel refuses (e.g. no route) is skipped, not retried.
func (b *batch) send(rc syscall.RawConn) (sent int, err error) {
	defer func() {
		b.n = 0
		runtime.KeepAlive(b)
	}()
	for off := 0; off < b.n; {
		var n int
		var errno syscall.Errno
		werr := rc.Write(func(fd uintptr) bool {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd,
				uintptr(unsafe.Pointer(&b.hdrs[off])), uintptr(b.n-off), unix.MSG_DONTWAIT, 0, 0)
			if e == unix.EAGAIN || e == unix.EINTR {
				return false // wait until the socket is writable
			}
			n, errno = int(r), e
			return true
		})
		switch {
		case werr != nil:
			return sent, fmt.Errorf("sendmmsg: %w", werr)
		case errno != 0:
			// The first datagram failed; skip it and go on.
			if err == nil {
				err = fmt.Errorf("sendmmsg: %w", errno)
			}
			off++
		case n == 0:
			return sent, errors.New("sendmmsg: sent nothing")
		default:
			sent += n
			off += n
		}
	}
	return sent, err
}
