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

// transport moves the generator's datagrams. Endpoints are source address
// and port pairs: 0…E-1 are the devices' (device i uses endpoint
// i/DevicesPerSocket), E…E+F-1 the flood sources. send may only queue;
// flush hands everything queued to the kernel; poll waits up to timeoutMs
// for datagrams and delivers each with the endpoint it was addressed to.
// Errors of individual datagrams go to fail, for counting.
type transport interface {
	send(ep int32, b []byte) error
	flush(fail func(error))
	poll(timeoutMs int, deliver func(ep int32, b []byte), fail func(error)) error
	close()
}

// sockTransport is Config.IOSocket: one UDP socket per endpoint, connected
// to the server, watched by one epoll set. Connected sockets send with
// write(2), with no address to copy per message, and only receive from the
// server, as a device behind a NAT pinhole would. The generator drives
// epoll itself instead of parking a goroutine per socket: a million
// goroutines would cost gigabytes of stack.
type sockTransport struct {
	epfd   int
	events []unix.EpollEvent
	owner  []int32 // fd → endpoint; -1: none
	fds    []int   // endpoint → fd
	rbuf   []byte
}

const epollBatch = 1024

func newSockTransport(cfg *Config, floods int) (*sockTransport, error) {
	n := cfg.endpoints()
	if err := raiseFDLimit(uint64(n+floods) + 1024); err != nil {
		return nil, err
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create epoll: %w", err)
	}
	s := &sockTransport{epfd: epfd, events: make([]unix.EpollEvent, epollBatch), rbuf: make([]byte, 65536)}
	for ep := range n {
		if err := s.open(cfg.endpointAddr(ep), cfg.Server, int32(ep)); err != nil {
			s.close()
			return nil, fmt.Errorf("device endpoint %d: %w", ep, err)
		}
		if cfg.Progress != nil && ep > 0 && ep%100000 == 0 {
			fmt.Fprintf(cfg.Progress, "opened %d sockets\n", ep)
		}
	}
	for k := range floods {
		if err := s.open(cfg.floodAddr(k), cfg.Server, int32(n+k)); err != nil {
			s.close()
			return nil, fmt.Errorf("flood source %d: %w", k, err)
		}
	}
	return s, nil
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
		return fmt.Errorf("raise the open-file limit to %d for one socket per device (now %d, hard %d, fs.nr_open %s; run as root or raise fs.nr_open, or use -io batch): %w",
			n, r.Cur, r.Max, nrOpen, err)
	}
	return nil
}

// open binds a socket to local, connects it to server and watches it for
// endpoint ep.
func (s *sockTransport) open(local, server netip.AddrPort, ep int32) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open a UDP socket for %v: %w", local, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(local.Port()), Addr: local.Addr().As4()}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("bind %v (is the address local? 127.0.0.0/8 always is; elsewhere add it or `ip route add local PREFIX dev lo`): %w", local, err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(server.Port()), Addr: server.Addr().As4()}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("connect %v to %v: %w", local, server, err)
	}
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("watch the socket of %v: %w", local, err)
	}
	for len(s.owner) <= fd {
		s.owner = append(s.owner, -1)
	}
	s.owner[fd] = ep
	s.fds = append(s.fds, fd)
	return nil
}

// send writes one datagram. EAGAIN (a full send buffer) and ECONNREFUSED
// (an ICMP port unreachable from an earlier datagram: nothing listens) are
// returned for counting.
func (s *sockTransport) send(ep int32, b []byte) error {
	_, err := unix.Write(s.fds[ep], b)
	return err
}

func (s *sockTransport) flush(func(error)) {}

// poll reads one datagram from every socket epoll reports readable.
func (s *sockTransport) poll(timeoutMs int, deliver func(int32, []byte), fail func(error)) error {
	n, err := unix.EpollWait(s.epfd, s.events, timeoutMs)
	if err != nil {
		if errors.Is(err, unix.EINTR) {
			return nil
		}
		return fmt.Errorf("epoll_wait: %w", err)
	}
	for _, ev := range s.events[:n] {
		fd := int(ev.Fd)
		m, err := unix.Read(fd, s.rbuf)
		if err != nil {
			if !errors.Is(err, unix.EAGAIN) {
				fail(err)
			}
			continue
		}
		deliver(s.owner[fd], s.rbuf[:m])
	}
	return nil
}

func (s *sockTransport) close() {
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
