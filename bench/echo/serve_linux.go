package echo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"
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

// Wait says how the responder waits for datagrams and how many it reads
// per system call.
type Wait uint8

const (
	// Blocking: recvmmsg on a blocking socket, returning once at least one
	// datagram is queued (MSG_WAITFORONE), then one sendmmsg. The least
	// work per datagram a Linux UDP server can do: the generator's
	// ceiling.
	Blocking Wait = iota
	// Loop: the I/O of one of pinhole's event loops (fastpath/engine,
	// gnet underneath), system call for system call: epoll_wait, one
	// datagram with recvfrom (gnet's read), then recvmmsg of up to a
	// batch while batches come back full; once the socket is empty the
	// replies with one sendmmsg and a ppoll of up to idleWait for the
	// next datagram, for at most holdMax; then a non-blocking epoll_wait
	// that finds nothing before the loop yields and blocks again.
	// Against it, the fast path's ratio to the echo is its work per
	// datagram alone: both move the same datagrams with the same batching
	// (issue #17 asks for ≥ 80 %).
	Loop
)

// idleWait and holdMax are fastpath/engine's: how long a loop whose
// socket is empty waits for the next datagram, and how long one call
// from gnet lasts at most.
const (
	idleWait = time.Millisecond
	holdMax  = 20 * time.Millisecond
)

// Serve answers on a UDP socket bound to addr until ctx ends, waiting as
// wait says. ready, if not nil, is closed once the socket is bound.
func Serve(ctx context.Context, addr netip.AddrPort, wait Wait, st *Stats, ready chan<- struct{}) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	flags := unix.SOCK_DGRAM | unix.SOCK_CLOEXEC
	if wait == Loop {
		flags |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(unix.AF_INET, flags, 0)
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
	io := newBatchIO(fd, st)
	if wait == Loop {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return fmt.Errorf("echo: epoll: %w", err)
		}
		defer unix.Close(epfd)
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return fmt.Errorf("echo: epoll add: %w", err)
		}
		if ready != nil {
			close(ready)
		}
		return io.loop(ctx, epfd)
	}
	if ready != nil {
		close(ready)
	}
	for ctx.Err() == nil {
		n, errno := io.recv(unix.MSG_WAITFORONE)
		if errno != 0 {
			if errno == unix.EAGAIN || errno == unix.EINTR {
				continue
			}
			return fmt.Errorf("echo: recvmmsg: %w", errno)
		}
		io.answerBatch(n)
		io.flush()
	}
	return nil
}

// batchIO holds one responder's batches: what recvmmsg reads and what
// sendmmsg sends.
type batchIO struct {
	fd        int
	st        *Stats
	in, out   [batch]mmsghdr
	inIov     [batch]unix.Iovec
	outIov    [batch]unix.Iovec
	names     [batch]unix.RawSockaddrInet4
	outNames  [batch]unix.RawSockaddrInet4
	bufs      [batch][2048]byte
	replyBufs [batch][]byte
	k         int // replies queued in out
	first     [2048]byte
	pfd       [1]unix.PollFd // waitReadable's arguments, kept off the heap
	pts       unix.Timespec
}

func newBatchIO(fd int, st *Stats) *batchIO {
	b := &batchIO{fd: fd, st: st}
	for i := range batch {
		b.inIov[i].Base = &b.bufs[i][0]
		b.inIov[i].SetLen(len(b.bufs[i]))
		b.replyBufs[i] = make([]byte, 0, 2048)
	}
	return b
}

// recv reads up to a batch with recvmmsg.
func (b *batchIO) recv(flags int) (int, unix.Errno) {
	for i := range batch {
		b.in[i].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[i])), Namelen: unix.SizeofSockaddrInet4, Iov: &b.inIov[i], Iovlen: 1}
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(b.fd), uintptr(unsafe.Pointer(&b.in[0])), batch, uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	b.st.Received.Add(uint64(n))
	return int(n), 0
}

// answerBatch queues the replies to the n datagrams recv read.
func (b *batchIO) answerBatch(n int) {
	for i := range n {
		b.answer(b.bufs[i][:b.in[i].n], &b.names[i])
	}
}

// answer queues the reply to req from name, sending the queue first when
// it is full.
func (b *batchIO) answer(req []byte, name *unix.RawSockaddrInet4) {
	if b.k == batch {
		b.flush()
	}
	reply, ok := Answer(b.replyBufs[b.k][:0], req)
	if !ok {
		return
	}
	k := b.k
	b.replyBufs[k] = reply
	b.outNames[k] = *name
	b.outIov[k].Base = &reply[0]
	b.outIov[k].SetLen(len(reply))
	b.out[k].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.outNames[k])), Namelen: unix.SizeofSockaddrInet4, Iov: &b.outIov[k], Iovlen: 1}
	b.k++
}

// flush sends the queued replies with sendmmsg.
func (b *batchIO) flush() {
	for sent := 0; sent < b.k; {
		m, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(b.fd), uintptr(unsafe.Pointer(&b.out[sent])), uintptr(b.k-sent), 0, 0, 0)
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
		b.st.Answered.Add(uint64(m))
	}
	b.k = 0
}

// loop is Serve's Loop wait: see Loop for the system calls it mirrors.
func (b *batchIO) loop(ctx context.Context, epfd int) error {
	var events [8]unix.EpollEvent
	msec := 100 // gnet blocks (-1); 100 ms lets ctx end the loop
	for ctx.Err() == nil {
		n, err := unix.EpollWait(epfd, events[:], msec)
		if n <= 0 {
			if err != nil && err != unix.EINTR {
				return fmt.Errorf("echo: epoll_wait: %w", err)
			}
			msec = 100
			runtime.Gosched()
			continue
		}
		msec = 0
		// gnet's read: one datagram, its address decoded (and allocated)
		// by x/sys/unix.
		m, from, err := unix.Recvfrom(b.fd, b.first[:], 0)
		if err != nil {
			continue
		}
		b.st.Received.Add(1)
		if sa, ok := from.(*unix.SockaddrInet4); ok {
			name := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: sa.Addr}
			name.Port = htons(uint16(sa.Port))
			b.answer(b.first[:m], &name)
		}
		start := time.Now()
		for time.Since(start) < holdMax {
			k, errno := b.recv(0)
			b.answerBatch(k)
			if errno != 0 && errno != unix.EAGAIN {
				break
			}
			if k == batch {
				continue
			}
			b.flush()
			if !b.waitReadable() {
				break
			}
		}
		b.flush()
	}
	return nil
}

// waitReadable is the engine's wait: up to idleWait for a datagram.
func (b *batchIO) waitReadable() bool {
	b.pfd[0] = unix.PollFd{Fd: int32(b.fd), Events: unix.POLLIN}
	b.pts = unix.NsecToTimespec(int64(idleWait))
	n, err := unix.Ppoll(b.pfd[:], &b.pts, nil)
	return err == nil && n > 0 && b.pfd[0].Revents&unix.POLLIN != 0
}

// htons is the port in network byte order, as sockaddr_in holds it.
func htons(port uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], port)
	return *(*uint16)(unsafe.Pointer(&b[0]))
}
