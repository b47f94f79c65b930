package midreg

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

// Sender sends one request to an upstream and returns its final response.
type Sender interface {
	Send(ctx context.Context, req *sip.Request) (*sip.Response, error)
}

// ClientSender sends through a sipgo client, leaving the request exactly
// as the mid-registrar built it (sipgo would otherwise fill in headers and
// may bump CSeq, which a relay must not change, RFC 3261 §16.6).
type ClientSender struct{ Client *sipgo.Client }

// Send runs one client transaction to its final response or ctx's end.
func (s ClientSender) Send(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	res, err := s.Client.Do(ctx, req, func(*sipgo.Client, *sip.Request) error { return nil })
	if err != nil {
		return nil, fmt.Errorf("send %s to %s: %w", req.Method, req.Destination(), err)
	}
	return res, nil
}

// MidRegistrar relays REGISTER to the main registrar and absorbs refreshes.
type MidRegistrar struct {
	cfg   Config
	reg   *registrar.Registrar // rules only: it never touches a store
	store location.Store
	send  Sender
	now   func() time.Time
	m     counters

	challenged *challenges // Call-ID → upstream whose challenge is pending

	lapses lapseQueue
	stop   chan struct{}
	wg     sync.WaitGroup

	committed atomic.Pointer[registrar.Committed] // see OnCommit
}

// New checks cfg and returns a mid-registrar. OnExpire may be used at
// once (the location store hands over lapses while it loads); Start must
// be called before Handle.
func New(cfg Config) (*MidRegistrar, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rules, err := registrar.New(cfg.Registrar, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("midregistrar: %w", err)
	}
	now := cfg.Registrar.Now
	if now == nil {
		now = time.Now
	}
	c := newCounters(cfg.Mode)
	return &MidRegistrar{
		cfg: cfg, reg: rules, now: now, m: c,
		challenged: newChallenges(cfg.MaxChallenges, c.challengesEvicted.Inc),
		lapses:     newLapseQueue(),
		stop:       make(chan struct{}),
	}, nil
}

// Start gives the mid-registrar its store and sender and starts the
// upstream de-registration workers.
func (m *MidRegistrar) Start(store location.Store, send Sender) {
	m.store, m.send = store, send
	for range m.cfg.Lapsers {
		m.wg.Add(1)
		go m.lapseWorker()
	}
}

// Close stops the de-registration workers; lapses still queued are not
// sent (the upstream registrations end by themselves at their expiry).
func (m *MidRegistrar) Close() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	m.wg.Wait()
}

// Mode reports the configured mode.
func (m *MidRegistrar) Mode() Mode { return m.cfg.Mode }

// Resolve returns the bindings that aor names when its user part is a
// token pinhole inserted upstream (a call from the main side to an
// inserted Contact, or through an inserted Path); ok is false when the
// user part is no token, and the caller should look aor up as usual.
func (m *MidRegistrar) Resolve(aor string) (bs []location.Binding, ok bool) {
	user, _ := splitAOR(aor)
	t, ok := parseToken(user)
	if !ok {
		return nil, false
	}
	for _, d := range m.cfg.Registrar.Domains {
		a := t.user + "@" + d
		if bs := t.match(a, m.store.Lookup(a)); len(bs) > 0 {
			return bs, true
		}
	}
	return nil, true
}

// rememberChallenge records that upstream i challenged callID.
func (m *MidRegistrar) rememberChallenge(callID string, i int, now time.Time) {
	m.challenged.remember(callID, i, now)
}

// challenger returns the upstream that challenged callID recently, or -1.
func (m *MidRegistrar) challenger(callID string, now time.Time) int {
	return m.challenged.upstream(callID, now)
}

func (m *MidRegistrar) forget(callID string) { m.challenged.forget(callID) }
