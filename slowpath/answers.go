package slowpath

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pinhole-sip/pinhole/internal/mmsg"
)

// answerBatch collects the answers one stateless worker writes while
// other REGISTERs wait in its queue, and sends them with one sendmmsg(2)
// once the queue is empty or the batch is full. One sendto per answer
// cost 5-8 us on this kind of machine against 2.3-2.7 us per datagram in
// a sendmmsg of 64 (BenchmarkSend in internal/mmsg, 2026-12-07, load 7),
// and it was 22 % of pinhole's time answering refreshes on one core.
//
// Only answers on pinhole's own UDP sockets are batched (batchable);
// any other socket is written at once, as before. Only the
// goroutine that owns a batch uses it: each worker has its own, and the
// store's committer has one (stateless.committed) for the 200s of new and
// changed bindings it completes, sent after each group commit
// (location.Memory.AfterCommits).
type answerBatch struct {
	tx       *mmsg.Sender
	txFamily int             // the family tx writes destinations for
	conn     net.PacketConn  // the socket the datagrams in tx leave from
	raw      syscall.RawConn // conn's, for sendmmsg
	// sockets are the sockets seen: their descriptor and address family,
	// which decides how a destination is written.
	sockets map[net.PacketConn]batchSocket
}

type batchSocket struct {
	raw    syscall.RawConn
	family int
}

// batchable reports whether answers written on conn may wait in a batch:
// pinhole's own UDP sockets, the slow path's listeners (batchedUDP) and
// the fast path's hand-off sockets (loopFiltered: the event loops' own,
// handed to the slow path through its hooks; the first registrations'
// 200s leave through them from the committer). Never a socket wrapped by
// the capture, which must see each write.
func batchable(conn net.PacketConn) bool {
	switch conn.(type) {
	case *batchedUDP, loopFiltered:
		return true
	}
	return false
}

// answerBatchSize is how many answers one sendmmsg carries at most, and
// answerSlot the size of the largest one batched: a 200 with a few
// contacts is well under it; a longer answer is sent alone, in order.
const (
	answerBatchSize = 32
	answerSlot      = 4096
)

func newAnswerBatch() *answerBatch {
	return &answerBatch{sockets: map[net.PacketConn]batchSocket{}}
}

// write sends b to to from conn: into the batch when both are what
// sendmmsg can carry, else at once (after what is batched, so that the
// answers leave in the order they were written).
func (o *answerBatch) write(conn net.PacketConn, b []byte, to net.Addr) {
	ua, uok := to.(*net.UDPAddr)
	if o == nil || !uok || len(b) > answerSlot || len(b) == 0 || !batchable(conn) {
		o.flush()
		_, _ = conn.WriteTo(b, to)
		return
	}
	if o.conn != conn || o.tx.Full() {
		o.flush()
		if !o.use(conn) {
			_, _ = conn.WriteTo(b, to)
			return
		}
	}
	if o.tx.Add(b, ua.AddrPort()) != nil {
		// A destination the socket's family cannot carry: WriteTo
		// returns the same refusal, as it did before batching.
		o.flush()
		_, _ = conn.WriteTo(b, to)
	}
}

// use points the batch at conn, which must be empty; false when conn's
// descriptor or family cannot be had (then it is written directly).
func (o *answerBatch) use(conn net.PacketConn) bool {
	sock, ok := o.sockets[conn]
	if !ok {
		sc, isSys := conn.(syscall.Conn)
		if !isSys {
			return false
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		family := 0
		cerr := raw.Control(func(fd uintptr) {
			family, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		})
		if cerr != nil || err != nil || family != unix.AF_INET && family != unix.AF_INET6 {
			return false
		}
		sock = batchSocket{raw: raw, family: family}
		o.sockets[conn] = sock
	}
	if o.tx == nil || o.txFamily != sock.family {
		o.tx, o.txFamily = mmsg.NewSender(answerBatchSize, answerSlot, sock.family), sock.family
	}
	o.conn, o.raw = conn, sock.raw
	return true
}

// flush sends what is batched. A datagram the kernel refuses is lost, as
// an answer whose WriteTo failed was; one refused for a full send buffer
// too, where WriteTo would have waited for room (a UDP socket's buffer
// fills only when the interface's queue does, which drops anyway). On a
// closed socket the batch is dropped.
func (o *answerBatch) flush() {
	if o == nil || o.tx == nil || o.tx.Len() == 0 {
		return
	}
	tx := o.tx
	if err := o.raw.Write(func(fd uintptr) bool {
		tx.Flush(int(fd))
		return true // never wait: Flush skipped what the kernel refused
	}); err != nil {
		tx.Reset()
	}
}
