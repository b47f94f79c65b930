package load

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchTransport is Config.IOBatch: a few unconnected UDP sockets bound to
// the wildcard address, each carrying many device endpoints. A datagram's
// source address is set per datagram (IP_PKTINFO ipi_spec_dst: the kernel
// accepts any local address, and all of 127.0.0.0/8, or a prefix routed
// `local` to lo, is local), its source port is the socket's; an answer is
// told apart by its destination address (IP_PKTINFO on receive) and the
// socket it arrived on. Datagrams cross the kernel mmsgBatch at a time
// (sendmmsg/recvmmsg): the per-call cost, about 1 µs of syscall entry and
// socket lookup, is what held the one-socket-per-device generator near
// 150 000 requests/s on one core.
type batchTransport struct {
	epfd       int
	events     []unix.EpollEvent
	socks      []*bsock
	byFD       map[int]int // fd → socket index
	base       uint32      // Sources.Addr() as a number
	k          int         // sockets
	e          int         // device endpoints
	devAddrs   int
	floods     int
	server     unix.RawSockaddrInet4
	serverPort int
}

// mmsgBatch is how many datagrams one sendmmsg/recvmmsg moves. 64 makes
// the call's fixed cost a few percent of the datagrams' own.
const mmsgBatch = 64

// Slot sizes: generator requests are under 1.5 KB (an INVITE with SDP and
// credentials); a larger one is sent alone. Answers above inSlot arrive
// truncated and are counted as receive errors.
const (
	outSlot = 2048
	inSlot  = 4096
	ctlLen  = 32 // CMSG_SPACE(sizeof(struct in_pktinfo))
)

// mmsghdr is struct mmsghdr of <sys/socket.h>, which x/sys/unix does not
// define: a msghdr and the length the kernel fills in.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

type bsock struct {
	fd     int
	port   int
	out    [mmsgBatch]mmsghdr
	outIov [mmsgBatch]unix.Iovec
	outCtl [mmsgBatch][ctlLen]byte
	outBuf [mmsgBatch][outSlot]byte
	queued int
	in     [mmsgBatch]mmsghdr
	inIov  [mmsgBatch]unix.Iovec
	inName [mmsgBatch]unix.RawSockaddrInet4
	inCtl  [mmsgBatch][ctlLen]byte
	inBuf  [mmsgBatch][inSlot]byte
}

var (
	errStranger  = errors.New("load: datagram from or to an address the generator does not use")
	errTruncated = errors.New("load: datagram larger than the receive slot")
)

func newBatchTransport(cfg *Config, floods int) (*batchTransport, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create epoll: %w", err)
	}
	b4 := cfg.Sources.Addr().As4()
	t := &batchTransport{epfd: epfd, events: make([]unix.EpollEvent, 64), byFD: map[int]int{},
		base: binary.BigEndian.Uint32(b4[:]), k: cfg.Sockets, e: cfg.endpoints(), devAddrs: cfg.deviceAddrs(), floods: floods}
	t.server.Family = unix.AF_INET
	t.server.Addr = cfg.Server.Addr().As4()
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&t.server.Port))[:], cfg.Server.Port())
	t.serverPort = int(cfg.Server.Port())
	for k := range cfg.Sockets {
		if err := t.open(cfg.PortBase + k); err != nil {
			t.close()
			return nil, err
		}
	}
	return t, nil
}

func (t *batchTransport) open(port int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open a UDP socket: %w", err)
	}
	// Deep queues, past net.core.{r,w}mem_max when root (FORCE): one socket
	// now carries thousands of devices' answers, and a few milliseconds of
	// preemption on a shared core would overflow the 208 KB default
	// (about a hundred datagrams) and measure the scheduler.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 16<<20)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
		unix.Close(fd)
		return fmt.Errorf("IP_PKTINFO: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("bind 0.0.0.0:%d (batch io binds the wildcard address on -port-base…+sockets): %w", port, err)
	}
	if err := unix.EpollCtl(t.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("watch the socket on port %d: %w", port, err)
	}
	s := &bsock{fd: fd, port: port}
	for i := range mmsgBatch {
		// The control message of every outgoing slot is written once;
		// send only changes ipi_spec_dst.
		h := (*unix.Cmsghdr)(unsafe.Pointer(&s.outCtl[i][0]))
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		s.inIov[i].Base = &s.inBuf[i][0]
		s.inIov[i].SetLen(inSlot)
	}
	t.byFD[fd] = len(t.socks)
	t.socks = append(t.socks, s)
	return nil
}

// source returns the socket and the source address of endpoint ep.
func (t *batchTransport) source(ep int32) (int, uint32) {
	if int(ep) < t.e {
		return int(ep) % t.k, t.base + 1 + uint32(int(ep)/t.k)
	}
	return 0, t.base + 1 + uint32(t.devAddrs) + uint32(int(ep)-t.e)
}

func (t *batchTransport) send(ep int32, b []byte) error {
	k, src := t.source(ep)
	s := t.socks[k]
	if len(b) > outSlot {
		return t.sendOne(s, src, b)
	}
	if s.queued == mmsgBatch {
		t.flushSock(s, nil)
	}
	i := s.queued
	s.queued++
	n := copy(s.outBuf[i][:], b)
	binary.BigEndian.PutUint32(s.outCtl[i][unix.SizeofCmsghdr+4:], src) // ipi_spec_dst
	s.outIov[i].Base = &s.outBuf[i][0]
	s.outIov[i].SetLen(n)
	s.out[i].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&t.server)), Namelen: unix.SizeofSockaddrInet4,
		Iov: &s.outIov[i], Iovlen: 1, Control: &s.outCtl[i][0]}
	s.out[i].hdr.SetControllen(ctlLen)
	return nil
}

// sendOne sends a datagram too large for a slot on its own.
func (t *batchTransport) sendOne(s *bsock, src uint32, b []byte) error {
	var ctl [ctlLen]byte
	h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	binary.BigEndian.PutUint32(ctl[unix.SizeofCmsghdr+4:], src)
	return unix.Sendmsg(s.fd, b, ctl[:], &unix.SockaddrInet4{Port: t.serverPort, Addr: t.server.Addr}, 0)
}

func (t *batchTransport) flush(fail func(error)) {
	for _, s := range t.socks {
		if s.queued > 0 {
			t.flushSock(s, fail)
		}
	}
}

func (t *batchTransport) flushSock(s *bsock, fail func(error)) {
	for sent := 0; sent < s.queued; {
		m, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.out[sent])), uintptr(s.queued-sent), 0, 0, 0)
		if errno != 0 {
			if errno == unix.EINTR {
				continue
			}
			// The datagram at sent was refused (EAGAIN: a full send
			// buffer; it is lost, as on a congested link, and the
			// retransmission timer covers it): count it, send the rest.
			if fail != nil {
				fail(errno)
			}
			sent++
			continue
		}
		sent += int(m)
	}
	s.queued = 0
}

// poll waits for readable sockets and drains each, up to four batches per
// socket per call so that sending is never starved.
func (t *batchTransport) poll(timeoutMs int, deliver func(int32, []byte), fail func(error)) error {
	n, err := unix.EpollWait(t.epfd, t.events, timeoutMs)
	if err != nil {
		if errors.Is(err, unix.EINTR) {
			return nil
		}
		return fmt.Errorf("epoll_wait: %w", err)
	}
	for _, ev := range t.events[:n] {
		k := t.byFD[int(ev.Fd)]
		s := t.socks[k]
		for range 4 {
			got := t.recv(s, k, deliver, fail)
			if got < mmsgBatch {
				break
			}
		}
	}
	return nil
}

func (t *batchTransport) recv(s *bsock, k int, deliver func(int32, []byte), fail func(error)) int {
	for i := range mmsgBatch {
		s.in[i].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&s.inName[i])), Namelen: unix.SizeofSockaddrInet4,
			Iov: &s.inIov[i], Iovlen: 1, Control: &s.inCtl[i][0]}
		s.in[i].hdr.SetControllen(ctlLen)
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.in[0])), mmsgBatch, unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		if errno != unix.EAGAIN && errno != unix.EINTR {
			fail(errno)
		}
		return 0
	}
	for i := range int(n) {
		h := &s.in[i]
		if h.hdr.Flags&unix.MSG_TRUNC != 0 {
			fail(errTruncated)
			continue
		}
		if s.inName[i].Addr != t.server.Addr || s.inName[i].Port != t.server.Port || h.hdr.Controllen < unix.SizeofCmsghdr+unix.SizeofInet4Pktinfo {
			fail(errStranger)
			continue
		}
		c := (*unix.Cmsghdr)(unsafe.Pointer(&s.inCtl[i][0]))
		if c.Level != unix.IPPROTO_IP || c.Type != unix.IP_PKTINFO {
			fail(errStranger)
			continue
		}
		dst := binary.BigEndian.Uint32(s.inCtl[i][unix.SizeofCmsghdr+8:]) // ipi_addr: the header's destination
		ep := t.endpointOf(dst, k)
		if ep < 0 {
			fail(errStranger)
			continue
		}
		deliver(ep, s.inBuf[i][:h.n])
	}
	return int(n)
}

// endpointOf is the endpoint a datagram to address dst on socket k is for,
// or -1.
func (t *batchTransport) endpointOf(dst uint32, k int) int32 {
	a := int(dst - t.base - 1)
	switch {
	case a < 0:
		return -1
	case a < t.devAddrs:
		if ep := a*t.k + k; ep < t.e {
			return int32(ep)
		}
	case a-t.devAddrs < t.floods && k == 0:
		return int32(t.e + a - t.devAddrs)
	}
	return -1
}

func (t *batchTransport) close() {
	for _, s := range t.socks {
		unix.Close(s.fd)
	}
	unix.Close(t.epfd)
}
