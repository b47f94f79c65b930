package natping

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// Method is what a ping is.
type Method int

const (
	// MethodOptions sends a SIP OPTIONS; the device's answer proves it alive.
	MethodOptions Method = iota
	// MethodCRLF sends the RFC 5626 double-CRLF: it keeps the NAT open but
	// most devices do not answer it, so it never removes a binding.
	MethodCRLF
)

// ParseMethod parses "options" or "crlf".
func ParseMethod(s string) (Method, error) {
	switch s {
	case "options":
		return MethodOptions, nil
	case "crlf":
		return MethodCRLF, nil
	}
	return 0, fmt.Errorf("NAT ping method %q: must be options or crlf", s)
}

// Sockets returns the socket pinhole listens on at local, the one a device
// registered to: pings must leave from it (docs/architecture.md, "One
// address, one port").
type Sockets func(local netip.AddrPort) (syscall.RawConn, error)

// Kernel is the XDP program's view of replies and liveness (bpf.NATPings
// and bpf.Alive); nil when XDP is not running.
type Kernel interface {
	// ExpectBatch records the tokens of pings about to leave.
	ExpectBatch(addrs []netip.AddrPort, tokens []uint64) error
	// AnsweredToken reports whether addr answered the ping with token.
	AnsweredToken(addr netip.AddrPort, token uint64) bool
	// LastSeen is when addr last sent a keepalive or answered a ping.
	LastSeen(addr netip.AddrPort) (time.Time, bool)
	// Forget drops what is held for addr.
	Forget(addr netip.AddrPort) error
}

// Config configures a Pinger.
type Config struct {
	Interval time.Duration
	Method   Method
	// MaxMissed unanswered OPTIONS in a row remove a binding; 0 = never.
	MaxMissed int
	// Host, if set, is written as pinhole's host in Via and From instead
	// of the socket's address (advertise.host).
	Host    string
	Store   location.Store
	Sockets Sockets
	Kernel  Kernel // may be nil
	Log     *slog.Logger
	// Slots is how many sends one interval is divided into; default one
	// per 10 ms. Targets are spread evenly over them.
	Slots int
	// ActsFor, when set, picks the bindings this box pings: with several
	// edges sharing one store, only the owner's socket crosses the
	// device's NAT, and a second edge's pings would only be dropped there
	// (slowpath.Server.ActsFor, docs/cluster.md). nil: every binding.
	ActsFor func(location.Binding) bool
}

// flowKey names a device's NAT binding: where it is, and our socket.
type flowKey struct {
	remote, local netip.AddrPort
}

// binding is enough of a location.Binding to find it again.
type binding struct {
	aor, contact, instance string
	regID                  uint32
}

// target is one NAT binding to ping and the bindings that use it (a
// device with several lines or outbound flows shares one).
type target struct {
	key      flowKey
	uri, aor string // Request-URI and To of the ping
	bindings []binding
	updated  time.Time // latest Updated of its bindings
}

// state is what the pinger remembers of a flow between pings.
type state struct {
	token     uint64
	sentAt    time.Time
	answered  bool      // seen by Reply (userspace, without XDP)
	missed    int       // unanswered pings in a row
	firstMiss time.Time // when the first of them was sent
	seen      bool      // in the current cycle's snapshot
}

var (
	sentTotal     = metrics.GetOrCreateCounter("pinhole_natping_sent_total")
	answeredTotal = metrics.GetOrCreateCounter("pinhole_natping_answered_total")
	missedTotal   = metrics.GetOrCreateCounter("pinhole_natping_missed_total")
	removedTotal  = metrics.GetOrCreateCounter("pinhole_natping_removed_total")
	errorsTotal   = metrics.GetOrCreateCounter("pinhole_natping_send_errors_total")
)

// Pinger pings NAT'd UDP bindings. Create it with New, run it with Run.
type Pinger struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	states map[flowKey]*state

	targets int // gauge: flows in the last snapshot, read under mu
	gauge   *metrics.Gauge
}

// New checks cfg and returns a Pinger.
func New(cfg Config) (*Pinger, error) {
	if cfg.Interval <= 0 {
		return nil, errors.New("natping: interval must be positive")
	}
	if cfg.Store == nil || cfg.Sockets == nil {
		return nil, errors.New("natping: a store and sockets are needed")
	}
	if cfg.Slots <= 0 {
		cfg.Slots = max(1, int(cfg.Interval/(10*time.Millisecond)))
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	p := &Pinger{cfg: cfg, log: cfg.Log, states: map[flowKey]*state{}}
	p.gauge = metrics.GetOrCreateGauge("pinhole_natping_targets", nil)
	return p, nil
}

// Run pings until ctx ends.
func (p *Pinger) Run(ctx context.Context) {
	for {
		start := time.Now()
		p.cycle(ctx, start)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(p.cfg.Interval))):
		}
	}
}

// cycle pings every target once, spread over one interval.
func (p *Pinger) cycle(ctx context.Context, start time.Time) {
	targets := p.snapshot()
	p.gauge.Set(float64(len(targets)))
	slots := min(p.cfg.Slots, max(1, len(targets)))
	s := sender{p: p}
	for i := range slots {
		at := start.Add(p.cfg.Interval * time.Duration(i) / time.Duration(slots))
		if d := time.Until(at); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return
		}
		lo, hi := len(targets)*i/slots, len(targets)*(i+1)/slots
		s.slot(targets[lo:hi])
	}
	p.sweep()
}

// snapshot lists the NAT'd UDP bindings, one target per flow.
func (p *Pinger) snapshot() []*target {
	byKey := map[flowKey]*target{}
	var out []*target
	p.cfg.Store.Range(func(b location.Binding) bool {
		if !b.NAT || b.Flow.Transport != location.TransportUDP || !b.Flow.Local.IsValid() || !b.Flow.Remote.IsValid() {
			return true
		}
		if !safeURI(b.Contact) || !safeURI(b.AOR) {
			return true
		}
		if p.cfg.ActsFor != nil && !p.cfg.ActsFor(b) {
			return true
		}
		k := flowKey{remote: b.Flow.Remote, local: b.Flow.Local}
		t := byKey[k]
		if t == nil {
			t = &target{key: k, uri: b.Contact, aor: b.AOR}
			byKey[k] = t
			out = append(out, t)
		}
		t.bindings = append(t.bindings, binding{aor: b.AOR, contact: b.Contact, instance: b.Instance, regID: b.RegID})
		if b.Updated.After(t.updated) {
			t.updated = b.Updated
		}
		return true
	})
	p.mu.Lock()
	for _, t := range out {
		if st := p.states[t.key]; st != nil {
			st.seen = true
		}
	}
	p.mu.Unlock()
	return out
}

// sweep forgets flows that were not in the last snapshot.
func (p *Pinger) sweep() {
	var gone []flowKey
	p.mu.Lock()
	for k, st := range p.states {
		if !st.seen {
			gone = append(gone, k)
			delete(p.states, k)
		}
		st.seen = false
	}
	p.mu.Unlock()
	if p.cfg.Kernel != nil {
		for _, k := range gone {
			_ = p.cfg.Kernel.Forget(k.remote)
		}
	}
}

// alive reports whether t's device showed life since its last ping.
func (p *Pinger) alive(t *target, st *state) bool {
	if st.answered || t.updated.After(st.sentAt) {
		return true
	}
	if k := p.cfg.Kernel; k != nil {
		if k.AnsweredToken(t.key.remote, st.token) {
			return true
		}
		if seen, ok := k.LastSeen(t.key.remote); ok && seen.After(st.sentAt) {
			return true
		}
	}
	return false
}

// Reply takes a datagram that reached userspace on local from remote
// (without XDP every one does) and reports whether it was a device's answer
// to our ping; the caller then drops it, since no transaction waits for it.
func (p *Pinger) Reply(local, remote netip.AddrPort, msg []byte) bool {
	tok, ok := Token(msg)
	if !ok {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.states[flowKey{remote: remote, local: local}]
	if st == nil || st.token != tok {
		return false
	}
	st.answered = true
	return true
}

// expire removes t's bindings through the store. Each is given an expiry
// of now, so it lapses in the store's next expiry pass (within a second)
// and the store's OnExpire runs for it exactly as for a registration that
// ran out: that is how the mid-registrar learns to de-register it upstream.
// A binding re-registered since the first unanswered ping is kept.
func (p *Pinger) expire(t *target, since time.Time) int {
	n := 0
	for _, b := range t.bindings {
		_, err := p.cfg.Store.Update(b.aor, func(cur []location.Binding) ([]location.Binding, error) {
			out := make([]location.Binding, 0, len(cur))
			for _, c := range cur {
				if c.Contact == b.contact && c.Instance == b.instance && c.RegID == b.regID &&
					c.Flow.Remote == t.key.remote && c.Flow.Local == t.key.local && !c.Updated.After(since) {
					// Second precision: it lapses at the next second.
					c.Expires = time.Now().Add(time.Second)
					n++
				}
				out = append(out, c)
			}
			return out, nil
		})
		if err != nil {
			p.log.Warn("natping: remove unreachable binding", "aor", b.aor, "contact", b.contact, "error", err)
		}
	}
	return n
}
