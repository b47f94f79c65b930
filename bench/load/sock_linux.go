package load

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sockets holds one UDP socket per device plus the flood sources, all
// connected to the server, and the epoll set that watches them. The
// generator drives epoll itself instead of parking a goroutine per socket:
// a million goroutines would cost gigabytes of stack, and one loop that asks
// the kernel which sockets are readable costs one epoll_wait per batch.
//
// Connected sockets send with write(2), with no address to copy per
// message, and only receive from the server, as a device behind a NAT
// pinhole would.
type sockets struct {
	epfd   int
	events []unix.EpollEvent
	owner  []int32 // fd → device index; -1: none; ≤ -2: flood source -2-k
	fds    []int
}

const epollBatch = 1024

func newSockets(n int) (*sockets, error) {
	if err := raiseFDLimit(uint64(n) + 1024); err != nil {
		return nil, err
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create epoll: %w", err)
	}
	return &sockets{epfd: epfd, events: make([]unix.EpollEvent, epollBatch)}, nil
}

// raiseFDLimit lifts RLIMIT_NOFILE to at least n. Root may raise the hard
// limit too, up to fs.nr_open.
func raiseFDLimit(n uint64) error {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return fmt.Errorf("read the open-file limit: %w", err)
	}
	if r.Cur >= n {
		return nil
	}
	want := unix.Rlimit{Cur: n, Max: max(r.Max, n)}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
		nrOpen := "?"
		if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
			nrOpen = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("raise the open-file limit to %d for one socket per device (now %d, hard %d, fs.nr_open %s; run as root or raise fs.nr_open): %w",
			n, r.Cur, r.Max, nrOpen, err)
	}
	return nil
}

// open binds a socket to local, connects it to server and watches it for
// owner (a device index, or a negative flood mark).
func (s *sockets) open(local, server netip.AddrPort, owner int32) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open a UDP socket for %v: %w", local, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(local.Port()), Addr: local.Addr().As4()}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %v (is the address local? 127.0.0.0/8 always is; elsewhere add it or `ip route add local PREFIX dev lo`): %w", local, err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(server.Port()), Addr: server.Addr().As4()}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %v to %v: %w", local, server, err)
	}
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("watch the socket of %v: %w", local, err)
	}
	for len(s.owner) <= fd {
		s.owner = append(s.owner, -1)
	}
	s.owner[fd] = owner
	s.fds = append(s.fds, fd)
	return fd, nil
}

// send writes one datagram. EAGAIN (a full send buffer) and ECONNREFUSED
// (an ICMP port unreachable from an earlier datagram: nothing listens) are
// returned for counting.
func (s *sockets) send(fd int, b []byte) error {
	_, err := unix.Write(fd, b)
	return err
}

// wait returns the descriptors readable within timeoutMs (0: poll, -1: block).
func (s *sockets) wait(timeoutMs int) ([]unix.EpollEvent, error) {
	n, err := unix.EpollWait(s.epfd, s.events, timeoutMs)
	if err != nil {
		if errors.Is(err, unix.EINTR) {
			return nil, nil
		}
		return nil, fmt.Errorf("epoll_wait: %w", err)
	}
	return s.events[:n], nil
}

// read reads one datagram from fd; n < 0 means nothing was there.
func (s *sockets) read(fd int, b []byte) (int, error) {
	n, err := unix.Read(fd, b)
	if err != nil {
		if errors.Is(err, unix.EAGAIN) {
			return -1, nil
		}
		return -1, err
	}
	return n, nil
}

func (s *sockets) close() {
	for _, fd := range s.fds {
		unix.Close(fd)
	}
	unix.Close(s.epfd)
}

func isRefused(err error) bool { return errors.Is(err, unix.ECONNREFUSED) }

// fdLimitNote is printed with the results so a reader knows the scale ran
// with one descriptor per device.
func fdLimitNote() string {
	var r unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &r) != nil {
		return ""
	}
	return strconv.FormatUint(r.Cur, 10)
}
