package capture

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Direction says whether pinhole received or sent a message.
type Direction uint8

const (
	Received Direction = iota
	Sent
)

// Config is what New needs; internal/config's capture section maps onto it.
type Config struct {
	Collectors []Collector
	CaptureID  uint32
	// Sample is the share of calls captured, in hundredths of a percent
	// (0–10000): 100 is 1 %. See Sampled.
	Sample uint32
	// QueueSize is how many HEP packets may wait for each collector;
	// past it, messages are dropped and counted.
	QueueSize int
	Received  bool // capture what pinhole receives
	Sent      bool // capture what pinhole sends
	Log       *slog.Logger
}

// Collector is one HEP destination.
type Collector struct {
	Network string // "udp" or "tcp"
	Addr    string // host:port
}

// String is how a collector is named in metrics and logs: "udp:host:port".
func (c Collector) String() string { return c.Network + ":" + c.Addr }

// Capturer sends captured messages to its collectors. Taps feed it; each
// collector has its own queue and sender goroutine, so a dead TCP
// collector does not hold back a working UDP one.
type Capturer struct {
	cfg        Config
	collectors []*collector
	done       chan struct{}
	wg         sync.WaitGroup
	stopOnce   sync.Once

	mu   sync.Mutex
	taps []*Tap
}

// New makes a Capturer; Start runs its senders.
func New(cfg Config) (*Capturer, error) {
	if len(cfg.Collectors) == 0 {
		return nil, errors.New("capture: no collector")
	}
	if cfg.Sample > 10000 {
		return nil, fmt.Errorf("capture: sample %d is over 10000 (100 %%)", cfg.Sample)
	}
	if cfg.QueueSize < 1 {
		return nil, fmt.Errorf("capture: queue size %d: must be at least 1", cfg.QueueSize)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &Capturer{cfg: cfg, done: make(chan struct{})}
	for _, col := range cfg.Collectors {
		c.collectors = append(c.collectors, newCollector(col, cfg.QueueSize, cfg.Log))
	}
	return c, nil
}

// Start runs one sender goroutine per collector.
func (c *Capturer) Start() {
	for _, co := range c.collectors {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			co.run(c.done)
		}()
	}
}

// Close stops the senders; what is still queued is not sent. Taps may
// still be called afterwards: they queue into buffers nobody sends, then
// drop.
func (c *Capturer) Close() {
	c.stopOnce.Do(func() { close(c.done) })
	c.wg.Wait()
	for _, co := range c.collectors {
		co.close()
	}
}

// NewTap returns a tap for one goroutine that sees messages (an event
// loop), or for many (the slow path): its counters are its own, so event
// loops share no cache line per message. A nil *Capturer gives a nil
// *Tap, which captures nothing.
func (c *Capturer) NewTap() *Tap {
	if c == nil {
		return nil
	}
	t := &Tap{c: c, rate: c.cfg.Sample, in: c.cfg.Received, out: c.cfg.Sent}
	c.mu.Lock()
	c.taps = append(c.taps, t)
	c.mu.Unlock()
	return t
}

// Tap is where a SIP path hands the messages it receives and sends.
type Tap struct {
	c       *Capturer
	rate    uint32
	in, out bool
	_       [64]byte
	// sampledOut counts messages of calls not sampled; written by the
	// tap's users, read at scrape time.
	sampledOut atomic.Uint64
	_          [64]byte
}

// Capture captures one message from src to dst if its call is sampled
// and its direction configured. It never blocks; with the call sampled
// out it allocates nothing and does not look at the clock.
func (t *Tap) Capture(dir Direction, tr Transport, src, dst netip.AddrPort, msg []byte) {
	if t == nil || !t.wants(dir) || !looksSIP(msg) {
		return
	}
	id := CallID(msg)
	if !Sampled(id, t.rate) {
		t.sampledOut.Add(1)
		return
	}
	t.c.send(&Message{Src: src, Dst: dst, Transport: tr, Time: time.Now(), CaptureID: t.c.cfg.CaptureID, CallID: id, Payload: msg})
}

// Exchange captures a request received from remote on local and the
// reply sent back, as the fast path's loops answer one: the request's
// Call-ID decides for both (the reply carries the same one, RFC 3261
// §8.2.6.2), so it is looked for once.
func (t *Tap) Exchange(tr Transport, local, remote netip.AddrPort, req, reply []byte) {
	if t == nil || !looksSIP(req) {
		return
	}
	id := CallID(req)
	if !Sampled(id, t.rate) {
		if t.in {
			t.sampledOut.Add(1)
		}
		if t.out {
			t.sampledOut.Add(1)
		}
		return
	}
	m := Message{Transport: tr, Time: time.Now(), CaptureID: t.c.cfg.CaptureID, CallID: id}
	if t.in {
		m.Src, m.Dst, m.Payload = remote, local, req
		t.c.send(&m)
	}
	if t.out && looksSIP(reply) {
		m.Src, m.Dst, m.Payload = local, remote, reply
		t.c.send(&m)
	}
}

func (t *Tap) wants(dir Direction) bool {
	if dir == Received {
		return t.in
	}
	return t.out
}

// Sampled decides whether the call named by callID is captured, rate
// being the share of calls in hundredths of a percent. It hashes the
// Call-ID (FNV-1a, fixed, unseeded) rather than drawing at random, so
// every message of a sampled call is captured — the REGISTER and its
// 200, an INVITE and its BYE — and every pinhole, and every restart,
// samples the same calls. A message without a Call-ID is captured only
// when everything is (rate 10000).
func Sampled(callID []byte, rate uint32) bool {
	if rate >= 10000 {
		return true
	}
	if rate == 0 || len(callID) == 0 {
		return false
	}
	h := uint32(2166136261)
	for _, c := range callID {
		h ^= uint32(c)
		h *= 16777619
	}
	return h%10000 < rate
}

// send encodes m for every collector.
func (c *Capturer) send(m *Message) {
	for _, co := range c.collectors {
		co.enqueue(m)
	}
}
