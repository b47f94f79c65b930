package engine

import (
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinhole-sip/pinhole/fastpath/absorb"
	"github.com/pinhole-sip/pinhole/internal/capture"
	"github.com/pinhole-sip/pinhole/internal/scan"
)

// Batched datagram I/O inside gnet's loops (docs/fastpath.md, "Batched
// datagram I/O"). gnet wakes a loop when its socket is readable, reads one
// datagram with recvfrom and hands it to OnTraffic; the loop's reply
// leaves with one sendto, and the next datagram needs another epoll_wait.
// At a refresh costing ~1 µs to absorb, those three system calls were
// most of the loop's time. So once gnet has handed over its datagram, the
// loop reads whatever else is queued on the same socket, up to a batch per
// recvmmsg, and sends every reply with one sendmmsg: gnet stays the event
// loop (it still owns the socket, the wake-ups, the start and the stop),
// and a busy socket costs one wake-up per batch instead of one per
// datagram. Under light load nothing is queued and the extra recvmmsg
// finds nothing (one cheap EAGAIN); under load the batch fills.

// slotSize is the room for one datagram: the largest UDP payload, so that
// nothing is truncated. Buffers are touched only as far as datagrams reach,
// so a batch costs resident memory in proportion to what it carries.
const slotSize = 64 << 10

// batch answers gnet's datagram and what else reaches the socket while
// the loop is busy.
//
// Once the socket is empty the loop sends its replies and waits for the
// next datagram here, in ppoll, for up to idleWait, instead of returning
// to gnet: gnet would poll again without blocking, find nothing, call
// runtime.Gosched and block in epoll_wait, and the next datagram would
// cost it a recvfrom, a fresh Conn and its address (allocations that
// bring collections on) before handing it back here. The Gosched is the
// worse part: it puts the loop in the global run queue, where a goroutine
// whose timer fired (the touch flush waking from its pause) can take the
// loop's P first and keep it for milliseconds (an execution trace at
// 48 000 refreshes/s: the loop runnable for 10.8 ms behind the touch
// flush; docs/fastpath.md, "Threads and Ps"). Blocked in ppoll the loop
// keeps its P and its thread, as in epoll_wait. It returns to gnet when
// the socket stays empty for idleWait, or after holdMax: gnet's task
// queue (Stop) is served between calls.
func (e *Engine) batch(l *loopState, fd int, data []byte, remote netip.AddrPort) {
	lim := e.cfg.Limits()
	now := time.Now()
	start := now
	e.answer(l, fd, data, remote, lim, now)
	for {
		n, err := l.rx.Recv(fd)
		if n > 0 {
			l.batches.Add(1)
			l.batched.Add(uint64(n))
		}
		for i := range n {
			d, from, ok := l.rx.Datagram(i)
			if !ok || len(d) == 0 {
				l.dropped.Add(1)
				continue
			}
			e.answer(l, fd, d, from, lim, now)
		}
		now = time.Now()
		if err != nil || now.Sub(start) >= holdMax {
			break
		}
		if n == l.rx.Cap() {
			continue // more may be queued
		}
		// The socket is empty: the replies leave before the loop waits.
		if l.tx.Len() > 0 {
			l.sendErrors.Add(uint64(l.tx.Flush(fd)))
		}
		if !l.waitReadable(fd, idleWait) {
			break
		}
		l.waits.Add(1)
		now = time.Now()
	}
	if l.tx.Len() > 0 {
		l.sendErrors.Add(uint64(l.tx.Flush(fd)))
	}
}

const (
	// idleWait is how long a loop whose socket is empty waits for the
	// next datagram before it returns to gnet.
	idleWait = time.Millisecond
	// holdMax bounds one call from gnet, so that gnet's own tasks (its
	// Stop among them) wait at most that long on a busy socket.
	holdMax = 20 * time.Millisecond
)

// waitReadable waits up to d for a datagram on fd; false when none came
// (or a signal, or an error on the socket, ended the wait).
func (l *loopState) waitReadable(fd int, d time.Duration) bool {
	l.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	l.pts = unix.NsecToTimespec(int64(d))
	n, err := unix.Ppoll(l.pfd[:], &l.pts, nil)
	return err == nil && n > 0 && l.pfd[0].Revents&unix.POLLIN != 0
}

// answer absorbs one datagram into the send batch, or hands it to the
// slow path (which copies it).
func (e *Engine) answer(l *loopState, fd int, data []byte, remote netip.AddrPort, lim scan.Limits, now time.Time) {
	reply, d := []byte(nil), absorb.Miss
	if l.abs != nil {
		reply, d = l.abs.Absorb(data, lim, e.cfg.Addr, remote, now)
	}
	if reply == nil {
		reply = e.challenge(l, data, remote, d)
	}
	if reply != nil {
		if l.tx.Full() {
			l.sendErrors.Add(uint64(l.tx.Flush(fd)))
		}
		if l.tx.Add(reply, remote) != nil {
			l.sendErrors.Add(1)
		} else if l.tap != nil {
			// Captured as it joins the batch: the reply is valid only
			// until the next Absorb or challenge, and the batch leaves at
			// the end of the wake-up (a failed sendmmsg is counted in
			// sendErrors).
			l.tap.Exchange(capture.UDP, e.cfg.Addr, remote, data, reply)
		}
		return
	}
	e.handOff(l, data, remote)
}
