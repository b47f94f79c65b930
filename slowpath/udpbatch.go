package slowpath

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/pinhole-sip/pinhole/internal/mmsg"
)

// udpReadBatch is how many datagrams one recvmmsg(2) of a slow-path UDP
// listener takes at most. Under load the socket holds many; a CPU profile
// of refreshes through the slow path on one core (2026-12-07) had
// recvfrom at 14 % of pinhole's time, one system call per REGISTER. A
// quiet socket gives batches of one, and costs what recvfrom did.
const udpReadBatch = 32

// batchedUDP is a UDP listener of the slow path that reads datagrams in
// batches (recvmmsg) and hands them to sipgo's reader one ReadFrom at a
// time, as net.UDPConn would: the same bytes, the same *net.UDPAddr
// source (an IPv6 link-local one with its zone). Everything else (writes,
// the socket's descriptor for the NAT pinger) is the UDPConn's.
//
// Only sipgo's one reading goroutine per listener calls ReadFrom: it is
// not safe for concurrent use.
type batchedUDP struct {
	*net.UDPConn
	raw  syscall.RawConn
	rx   *mmsg.Receiver
	next int // the next datagram of the batch to hand out
	n    int // datagrams in the batch
	// zones are the names of the interfaces that IPv6 link-local sources
	// arrived by, by index, as the standard library names them.
	zones map[uint32]string
	// out holds the answers the read filter wrote (replyInReader) until
	// the reader next waits for datagrams; waiting is true while it does.
	// mu guards both: the reader and the filter are one goroutine in
	// pinhole, but take may be called from elsewhere (tests do), and an
	// answer batched while the reader waits would wait with it.
	mu      sync.Mutex
	out     *answerBatch
	waiting bool
}

// newBatchedUDP reads c in batches of udpReadBatch datagrams of up to
// maxDatagram bytes (no UDP payload is larger, so none is cut short;
// sipgo's own buffer is that size too, msgsize.go). The slots are
// allocated once and only the bytes datagrams fill are touched.
func newBatchedUDP(c *net.UDPConn) (*batchedUDP, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("UDP listener %v: %w", c.LocalAddr(), err)
	}
	return &batchedUDP{UDPConn: c, raw: raw, rx: mmsg.NewReceiver(udpReadBatch, maxDatagram), out: newAnswerBatch(), waiting: true}, nil
}

// replyInReader sends b to to, batched with the other answers written
// while the reader hands out the current batch of datagrams: they leave
// with one sendmmsg(2) before ReadFrom reads the next batch, so an answer
// waits at most for the rest of its batch to be filtered. The read
// filter's 401s (rawchallenge.go) cost a sendto each before: 0.26 s of
// 1.64 s of samples at 8 000 first registrations/s over veth (profile of
// 2026-12-07). Called while the reader waits, it writes at once.
func (c *batchedUDP) replyInReader(b []byte, to net.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting {
		_, _ = c.WriteTo(b, to)
		return
	}
	c.out.write(c, b, to)
}

// ReadFrom copies the next datagram into b, reading a new batch once the
// last one is handed out; it waits (in the poller, as net.UDPConn does)
// while the socket is empty. A datagram longer than b is cut to b, as
// recvfrom cuts it.
func (c *batchedUDP) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		for c.next < c.n {
			i := c.next
			c.next++
			data, from, ok := c.rx.Datagram(i)
			if !ok {
				// A source that is neither IPv4 nor IPv6: none on a UDP
				// socket. Skipped rather than handed out without one.
				continue
			}
			return copy(b, data), c.source(i, from), nil
		}
		c.next, c.n = 0, 0
		c.mu.Lock()
		c.out.flush() // the answers to the batch just handed out
		c.waiting = true
		c.mu.Unlock()
		var rerr error
		err := c.raw.Read(func(fd uintptr) bool {
			c.n, rerr = c.rx.Recv(int(fd))
			return c.n > 0 || rerr != nil // false: wait until readable
		})
		c.mu.Lock()
		c.waiting = false
		c.mu.Unlock()
		if err != nil {
			return 0, nil, err // net.ErrClosed once the listener is closed
		}
		if rerr != nil {
			return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: os.NewSyscallError("recvmmsg", rerr)}
		}
	}
}

// source is from as net.UDPConn.ReadFrom returns it; for an IPv6 scoped
// source, with the interface's name as zone (its index when it has none).
func (c *batchedUDP) source(i int, from netip.AddrPort) *net.UDPAddr {
	ua := net.UDPAddrFromAddrPort(from)
	if scope := c.rx.ScopeID(i); scope != 0 && from.Addr().Is6() {
		zone, ok := c.zones[scope]
		if !ok {
			zone = strconv.FormatUint(uint64(scope), 10)
			if ifi, err := net.InterfaceByIndex(int(scope)); err == nil {
				zone = ifi.Name
			}
			if c.zones == nil {
				c.zones = map[uint32]string{}
			}
			c.zones[scope] = zone
		}
		ua.Zone = zone
	}
	return ua
}
