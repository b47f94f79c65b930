package engine

import (
	"net/netip"
	"time"

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

// drainRounds bounds the batches read per wake-up, so that one busy loop
// still returns to gnet (and its other sockets' events) regularly.
const drainRounds = 4

// batch answers gnet's datagram and what else waits on the socket.
func (e *Engine) batch(l *loopState, fd int, data []byte, remote netip.AddrPort) {
	lim := e.cfg.Limits()
	now := time.Now()
	e.answer(l, fd, data, remote, lim, now)
	for range drainRounds {
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
		if err != nil || n < l.rx.Cap() {
			break
		}
		now = time.Now()
	}
	if l.tx.Len() > 0 {
		l.sendErrors.Add(uint64(l.tx.Flush(fd)))
	}
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
