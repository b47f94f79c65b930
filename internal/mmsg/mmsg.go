//go:build linux

// Package mmsg moves UDP datagrams in batches, many per system call, with
// recvmmsg(2) and sendmmsg(2). One recvfrom and one sendto per datagram
// cost more than answering a REGISTER refresh from the fast path's cache;
// a batch of 64 pays the system call once (docs/fastpath.md, "Batched
// datagram I/O").
//
// A Receiver and a Sender each own fixed buffers, made once: moving a
// batch allocates nothing. Neither is safe for concurrent use; each event
// loop has its own.
package mmsg

import (
	"errors"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of <sys/socket.h> (a msghdr and the length the
// kernel fills in), which x/sys/unix does not define.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// slots are the fixed buffers of one batch: a header, an iovec, a socket
// address (large enough for IPv6) and a data buffer per datagram.
type slots struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	bufs  [][]byte
}

func newSlots(batch, size int) slots {
	s := slots{
		hdrs:  make([]mmsghdr, batch),
		iovs:  make([]unix.Iovec, batch),
		names: make([]unix.RawSockaddrInet6, batch),
		bufs:  make([][]byte, batch),
	}
	for i := range s.bufs {
		s.bufs[i] = make([]byte, size)
	}
	return s
}

// Receiver reads up to a batch of datagrams per call.
type Receiver struct {
	s slots
	n int
}

// NewReceiver makes a receiver of batch datagrams of at most size bytes
// each (a longer datagram is truncated: size it past the largest message
// accepted).
func NewReceiver(batch, size int) *Receiver {
	r := &Receiver{s: newSlots(batch, size)}
	s := &r.s
	for i := range s.hdrs {
		s.iovs[i].Base = &s.bufs[i][0]
		s.iovs[i].SetLen(len(s.bufs[i]))
		s.hdrs[i] = mmsghdr{hdr: unix.Msghdr{
			Name: (*byte)(unsafe.Pointer(&s.names[i])), Namelen: unix.SizeofSockaddrInet6,
			Iov: &s.iovs[i], Iovlen: 1,
		}}
	}
	return r
}

// Cap is the batch size.
func (r *Receiver) Cap() int { return len(r.s.bufs) }

// Recv reads the datagrams queued on fd, up to a batch, without waiting:
// 0 and no error when none is queued.
func (r *Receiver) Recv(fd int) (int, error) {
	s := &r.s
	// The kernel writes back only the name length, the flags and the
	// datagram's length, and only in the headers it filled: restoring the
	// name lengths of the last call's datagrams readies the batch. Writing
	// every header afresh cost the whole batch's headers (64 × 64 B) on
	// every call, most of them for a few datagrams under moderate load.
	for i := range r.n {
		s.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		s.hdrs[i].hdr.Flags = 0
	}
	r.n = 0
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&s.hdrs[0])),
			uintptr(len(s.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			r.n = 0
			return 0, nil
		case errno != 0:
			r.n = 0
			return 0, errno
		}
		r.n = int(n)
		return r.n, nil
	}
}

// Datagram returns the i-th datagram of the last Recv and its source (an
// IPv4 peer on a dual-stack socket as IPv4). The bytes are valid until the
// next Recv. ok is false for a datagram longer than a slot (truncated) or
// a source that is not IPv4 or IPv6.
func (r *Receiver) Datagram(i int) (data []byte, from netip.AddrPort, ok bool) {
	s := &r.s
	from, ok = decode(&s.names[i])
	if s.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 {
		ok = false
	}
	return s.bufs[i][:s.hdrs[i].n], from, ok
}

// ScopeID returns the IPv6 scope (interface index) of the i-th datagram's
// source, 0 for an IPv4 source or an address without one. Datagram drops
// it; a reader that prints a link-local source as the standard library
// does (fe80::1%eth0) needs it.
func (r *Receiver) ScopeID(i int) uint32 {
	if name := &r.s.names[i]; name.Family == unix.AF_INET6 {
		return name.Scope_id
	}
	return 0
}

// Sender collects replies and sends them with one system call.
type Sender struct {
	s      slots
	n      int
	family int // of the socket: how destinations are written
}

// NewSender makes a sender of batch datagrams of at most size bytes each,
// for a socket of family unix.AF_INET or unix.AF_INET6.
func NewSender(batch, size, family int) *Sender {
	return &Sender{s: newSlots(batch, size), family: family}
}

// Len is how many datagrams wait for Flush; Full reports a full batch.
func (t *Sender) Len() int   { return t.n }
func (t *Sender) Full() bool { return t.n == len(t.s.bufs) }

// Reset drops what waits for Flush.
func (t *Sender) Reset() { t.n = 0 }

// ErrTooBig: the datagram does not fit a slot.
var ErrTooBig = errors.New("mmsg: datagram larger than a slot")

// ErrFull: the batch is full; Flush first.
var ErrFull = errors.New("mmsg: batch full")

// Add copies b into the batch, to be sent to to.
func (t *Sender) Add(b []byte, to netip.AddrPort) error {
	s := &t.s
	if t.n == len(s.bufs) {
		return ErrFull
	}
	if len(b) > len(s.bufs[t.n]) || len(b) == 0 {
		return ErrTooBig
	}
	i := t.n
	copy(s.bufs[i], b)
	namelen, ok := encode(&s.names[i], to, t.family)
	if !ok {
		return errors.New("mmsg: destination does not fit the socket's family")
	}
	s.iovs[i].Base = &s.bufs[i][0]
	s.iovs[i].SetLen(len(b))
	s.hdrs[i] = mmsghdr{hdr: unix.Msghdr{
		Name: (*byte)(unsafe.Pointer(&s.names[i])), Namelen: namelen,
		Iov: &s.iovs[i], Iovlen: 1,
	}}
	t.n++
	return nil
}

// Flush sends every datagram added since the last Flush and reports how
// many could not be sent. A datagram the kernel refuses (a full socket
// buffer, a peer's ICMP error reported on the socket) is skipped; the
// rest still go.
func (t *Sender) Flush(fd int) (failed int) {
	s := &t.s
	for sent := 0; sent < t.n; {
		m, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&s.hdrs[sent])),
			uintptr(t.n-sent), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			// The first datagram of the rest failed: skip it.
			failed++
			sent++
			continue
		}
		sent += int(m)
	}
	t.n = 0
	return failed
}

// decode reads a socket address the kernel wrote.
func decode(name *unix.RawSockaddrInet6) (netip.AddrPort, bool) {
	switch name.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(&sa.Port)), true
	case unix.AF_INET6:
		a := netip.AddrFrom16(name.Addr).Unmap()
		return netip.AddrPortFrom(a, ntohs(&name.Port)), true
	}
	return netip.AddrPort{}, false
}

// encode writes to for a socket of the given family: an IPv4 peer of an
// IPv6 socket as a v4-mapped address.
func encode(name *unix.RawSockaddrInet6, to netip.AddrPort, family int) (uint32, bool) {
	a := to.Addr()
	switch {
	case family == unix.AF_INET && a.Is4():
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		htons(&sa.Port, to.Port())
		return unix.SizeofSockaddrInet4, true
	case family == unix.AF_INET6:
		*name = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		htons(&name.Port, to.Port())
		return unix.SizeofSockaddrInet6, true
	}
	return 0, false
}

// ntohs and htons read and write a port in a socket address, where it is
// in network byte order whatever the host's.
func ntohs(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func htons(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}
