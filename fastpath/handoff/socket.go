package handoff

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sendSocket is how the slow path writes from a fast-path listener: a
// duplicate of the event loops' socket, driven with raw system calls and
// never registered with the Go runtime's network poller.
//
// Why not a net.UDPConn on the duplicate, as before: a duplicate shares
// the socket itself, and the runtime registers what it polls
// edge-triggered for reading too. Every datagram that reached the loops
// then also woke the runtime's poller: an idle thread left epoll_wait,
// took a P, found no goroutine waiting on the socket and slept again, on
// the loops' core, once per datagram. At 64 000 refreshes/s that was
// 22 000 P starts a second and ~17 % of pinhole's CPU in findRunnable
// (execution trace and profile, docs/fastpath.md, "Threads and Ps").
// The slow path only writes here (its datagrams come through the queue),
// so nothing needs the poller: a send that finds the socket's buffer full
// waits in ppoll instead.
type sendSocket struct {
	fd     int
	family int // AF_INET or AF_INET6: how destinations are written
	// mu is held shared by each write and alone by Close, so that the
	// descriptor is never closed (and its number reused) under a write.
	mu       sync.RWMutex
	closed   bool
	closing  atomic.Bool  // asks writes waiting for room to give up
	deadline atomic.Int64 // write deadline, Unix nanoseconds; 0: none
}

// newSendSocket takes ownership of fd, a UDP socket (IPv4 or IPv6) in
// non-blocking mode.
func newSendSocket(fd int) (*sendSocket, error) {
	family, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return nil, os.NewSyscallError("getsockopt SO_DOMAIN", err)
	}
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return nil, fmt.Errorf("handoff: socket family %d is not IP", family)
	}
	return &sendSocket{fd: fd, family: family}, nil
}

// writeTo sends b to addr (a *net.UDPAddr), waiting for room in the
// socket's buffer if it is full, until the write deadline.
func (s *sendSocket) writeTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: syscall.EINVAL}
	}
	sa, err := s.sockaddr(ua)
	if err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: err}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: net.ErrClosed}
	}
	for {
		err := unix.Sendto(s.fd, b, unix.MSG_DONTWAIT, sa)
		switch {
		case err == nil:
			return len(b), nil
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN):
			if err := s.waitWritable(); err != nil {
				return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: err}
			}
		default:
			return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: os.NewSyscallError("sendto", err)}
		}
	}
}

// sockaddr writes ua for this socket's family (an IPv4 destination as
// IPv4-mapped on an IPv6 socket, as the net package does).
func (s *sendSocket) sockaddr(ua *net.UDPAddr) (unix.Sockaddr, error) {
	ap := ua.AddrPort()
	a := ap.Addr()
	if s.family == unix.AF_INET {
		a = a.Unmap()
		if !a.Is4() {
			return nil, syscall.EAFNOSUPPORT
		}
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if ua.Zone != "" {
		ifi, err := net.InterfaceByName(ua.Zone)
		if err != nil {
			return nil, err
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return sa, nil
}

// pollSlice bounds one wait for room, so that Close is not held up by a
// write that never gets it.
const pollSlice = 50 * time.Millisecond

// waitWritable waits until the socket has room to send, the write
// deadline passes or the socket is being closed. Called with mu held.
func (s *sendSocket) waitWritable() error {
	for {
		if s.closing.Load() {
			return net.ErrClosed
		}
		wait := pollSlice
		if d := s.deadline.Load(); d != 0 {
			left := time.Until(time.Unix(0, d))
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			wait = min(wait, left)
		}
		fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLOUT}}
		ts := unix.NsecToTimespec(int64(wait))
		n, err := unix.Ppoll(fds, &ts, nil)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return os.NewSyscallError("ppoll", err)
		}
		if n > 0 {
			return nil
		}
	}
}

// setWriteDeadline sets the deadline of writes waiting for room; the zero
// time clears it.
func (s *sendSocket) setWriteDeadline(t time.Time) {
	if t.IsZero() {
		s.deadline.Store(0)
		return
	}
	s.deadline.Store(t.UnixNano())
}

// close closes the descriptor once no write uses it.
func (s *sendSocket) close() error {
	s.closing.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	s.closed = true
	return os.NewSyscallError("close", unix.Close(s.fd))
}

// rawConn gives the descriptor to code that batches its own sends
// (sendmmsg), as net.UDPConn's SyscallConn does for writing and control.
type rawConn struct{ s *sendSocket }

// errNoRead: the slow path reads a fast-path listener through the queue;
// reading the socket itself would take datagrams from the loops.
var errNoRead = errors.New("handoff: the listener's socket is read by the event loops only")

func (r rawConn) Control(f func(fd uintptr)) error {
	r.s.mu.RLock()
	defer r.s.mu.RUnlock()
	if r.s.closed {
		return net.ErrClosed
	}
	f(uintptr(r.s.fd))
	return nil
}

func (r rawConn) Read(func(fd uintptr) bool) error { return errNoRead }

// Write calls f until it reports done, waiting for room in between (f
// sends without blocking, as with a net.UDPConn's RawConn).
func (r rawConn) Write(f func(fd uintptr) bool) error {
	r.s.mu.RLock()
	defer r.s.mu.RUnlock()
	if r.s.closed {
		return net.ErrClosed
	}
	for !f(uintptr(r.s.fd)) {
		if err := r.s.waitWritable(); err != nil {
			return err
		}
	}
	return nil
}
