package capture

import (
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// Sender timing. A write that takes longer than writeTimeout means the
// collector is not reading; the connection is dropped and dialled again,
// each failed dial doubling the wait up to maxBackoff.
const (
	dialTimeout  = 2 * time.Second
	writeTimeout = 2 * time.Second
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 10 * time.Second
)

// firstBufCap is the first capacity of a packet buffer: a typical SIP
// message and the HEP chunks around it. A larger message grows the
// buffer once; it keeps that size for later messages.
const firstBufCap = 2048

// collector is one destination's bounded queue and its sender. Buffers
// circulate between free and queue; at most size exist, made on first
// need, so the memory held is bounded by the queue size and a quiet
// collector holds little.
type collector struct {
	dest  Collector
	log   *slog.Logger
	free  chan []byte
	queue chan []byte
	made  atomic.Int64

	// Counters, written on the SIP paths only for sampled messages.
	queued, sent, dropped, tooLarge, sendErrors atomic.Uint64

	conn    net.Conn
	backoff time.Duration
	retry   time.Time // no dial before this
}

func newCollector(dest Collector, size int, log *slog.Logger) *collector {
	return &collector{
		dest: dest, log: log.With("collector", dest.String()),
		free: make(chan []byte, size), queue: make(chan []byte, size),
	}
}

// enqueue encodes m into a free buffer and queues it, or counts a drop.
// It never blocks: a buffer taken from free always has room in queue,
// both channels holding size places and at most size buffers existing.
func (co *collector) enqueue(m *Message) {
	var b []byte
	select {
	case b = <-co.free:
	default:
		if co.made.Add(1) > int64(cap(co.queue)) {
			co.made.Add(-1)
			co.dropped.Add(1)
			return
		}
		b = make([]byte, 0, firstBufCap)
	}
	b, err := AppendHEP(b[:0], m)
	if err != nil {
		co.tooLarge.Add(1)
		co.free <- b
		return
	}
	co.queued.Add(1)
	co.queue <- b
}

// run sends queued packets until done is closed.
func (co *collector) run(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case b := <-co.queue:
			if err := co.write(b); err != nil {
				co.sendErrors.Add(1)
			} else {
				co.sent.Add(1)
			}
			co.free <- b
		}
	}
}

// write sends one packet, dialling first when there is no connection and
// the backoff allows. UDP is one datagram per packet; TCP a stream of
// packets, each framed by its own length field.
func (co *collector) write(b []byte) error {
	if co.conn == nil {
		if time.Now().Before(co.retry) {
			return errBackoff
		}
		c, err := net.DialTimeout(co.dest.Network, co.dest.Addr, dialTimeout)
		if err != nil {
			co.failed(err)
			return err
		}
		co.conn = c
		co.backoff = 0
		co.log.Info("capture collector connected")
	}
	if co.dest.Network == "tcp" {
		_ = co.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	if _, err := co.conn.Write(b); err != nil {
		if co.dest.Network == "tcp" {
			_ = co.conn.Close()
			co.conn = nil
			co.failed(err)
		}
		// A UDP write fails when the collector's host answered an
		// earlier datagram with ICMP unreachable; the socket stays.
		return err
	}
	return nil
}

// failed schedules the next dial, logging once per outage rather than per
// packet.
func (co *collector) failed(err error) {
	if co.backoff == 0 {
		co.log.Warn("capture collector unreachable; dropping its packets and retrying", "error", err)
		co.backoff = minBackoff
	} else {
		co.backoff = min(2*co.backoff, maxBackoff)
	}
	co.retry = time.Now().Add(co.backoff)
}

func (co *collector) close() {
	if co.conn != nil {
		_ = co.conn.Close()
		co.conn = nil
	}
}

type backoffError struct{}

func (backoffError) Error() string { return "capture: collector unreachable, waiting to dial again" }

var errBackoff error = backoffError{}
