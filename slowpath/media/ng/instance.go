package ng

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// maxReply is the largest UDP payload: a query reply for a call with many
// streams easily passes one MTU, and rtpengine sends it as one datagram.
const maxReply = 65535

// instance is one rtpengine: a connected UDP socket, the commands waiting
// for a reply on it, and whether it is believed to be up.
type instance struct {
	addr   netip.AddrPort
	weight int
	conn   *net.UDPConn
	up     atomic.Bool

	mu      sync.Mutex
	pending map[string]chan []byte

	downs, ups *metrics.Counter
}

func dialInstance(addr netip.AddrPort, weight int) (*instance, error) {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("open ng socket to rtpengine %s: %w", addr, err)
	}
	in := &instance{addr: addr, weight: weight, conn: conn, pending: map[string]chan []byte{}}
	// Believed up until a command or ping says otherwise, as Kamailio's
	// rtpengine module does: a proxy started a moment before rtpengine
	// should not refuse its first calls.
	in.up.Store(true)
	return in, nil
}

// read hands every reply to the command waiting for its cookie, until the
// socket is closed.
func (in *instance) read() {
	buf := make([]byte, maxReply)
	for {
		n, err := in.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ECONNREFUSED: an ICMP port unreachable for an earlier
			// datagram (rtpengine not running). The command times out;
			// the socket stays usable.
			continue
		}
		cookie, body, ok := bytes.Cut(buf[:n], []byte{' '})
		if !ok {
			mMalformed.Inc()
			continue
		}
		in.mu.Lock()
		ch := in.pending[string(cookie)]
		delete(in.pending, string(cookie))
		in.mu.Unlock()
		if ch == nil {
			// A reply to a retransmission that came after the first
			// reply, or after the command gave up.
			mLate.Inc()
			continue
		}
		ch <- bytes.Clone(body) // buffered 1, and the cookie is gone: never blocks
	}
}

// exchange sends msg and waits for the reply with cookie, sending msg again
// each time timeout passes without one, tries times in all. It returns the
// reply's dictionary bytes. closed ends the wait when the client closes.
func (in *instance) exchange(ctx context.Context, closed <-chan struct{}, cookie string, msg []byte, timeout time.Duration, tries int) ([]byte, error) {
	ch := make(chan []byte, 1)
	in.mu.Lock()
	in.pending[cookie] = ch
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		delete(in.pending, cookie)
		in.mu.Unlock()
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for try := 1; ; try++ {
		if try > 1 {
			mRetransmissions.Inc()
		}
		// A failed write (ECONNREFUSED from an earlier ICMP error) is
		// treated as a lost datagram: the next try or the timeout decides.
		_, _ = in.conn.Write(msg)
		select {
		case body := <-ch:
			return body, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("ng to %s: %w", in.addr, ctx.Err())
		case <-closed:
			return nil, fmt.Errorf("ng to %s: %w", in.addr, ErrClosed)
		case <-timer.C:
			if try >= tries {
				return nil, fmt.Errorf("ng to %s: %w after %d tries of %s", in.addr, ErrTimeout, tries, timeout)
			}
			timer.Reset(timeout)
		}
	}
}

// markDown and markUp change the state and count a change.
func (in *instance) markDown() {
	if in.up.Swap(false) {
		in.downs.Inc()
	}
}

func (in *instance) markUp() {
	if !in.up.Swap(true) {
		in.ups.Inc()
	}
}
