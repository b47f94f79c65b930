package resolve

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Config configures a Resolver.
type Config struct {
	// Servers are the name servers, IP:port, asked in order; empty: the
	// nameserver lines of ResolvConf.
	Servers []string
	// ResolvConf is read when Servers is empty; "" means /etc/resolv.conf.
	ResolvConf string
	// Timeout bounds one query to one server.
	Timeout time.Duration
	// MinTTL and MaxTTL clamp the TTL of an answer: a TTL of 0 would make
	// every request wait for a refresh, a TTL of a day would keep a moved
	// node unreachable for a day.
	MinTTL, MaxTTL time.Duration
	// NegativeTTL is how long "no such name" or "no records" is kept.
	NegativeTTL time.Duration
	// Transports are those pinhole can send on, in order of preference: a
	// NAPTR or SRV record for another transport is not used.
	Transports []string
	// IPv6 asks AAAA besides A.
	IPv6 bool
	// MaxEntries bounds the cache. Only configured names are looked up, so
	// it is reached only by a configuration mistake; past it a new name is
	// resolved for a Lookup but not kept, and Cached has nothing for it.
	MaxEntries int
}

// Defaults of the configuration section dns (docs/dns.md).
const (
	DefaultTimeout     = 2 * time.Second
	DefaultMinTTL      = 5 * time.Second
	DefaultMaxTTL      = time.Hour
	DefaultNegativeTTL = 30 * time.Second
	DefaultMaxEntries  = 1024
)

// refreshAt is the share of a TTL after which an answer is refreshed: early
// enough that a refresh which times out once is retried before expiry.
const refreshAt = 0.8

// Back-off of a failing refresh: first retry after minBackoff, doubling up
// to maxBackoff.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// ErrNoTargets means DNS answered, and the answer holds no address.
var ErrNoTargets = errors.New("no addresses")

// Resolver resolves destinations and keeps their answers fresh. It is safe
// for concurrent use.
type Resolver struct {
	cfg     Config
	servers []string
	ask     exchanger // tests replace it

	// entries is read without a lock on the request path; a new name
	// copies it under mu (names are added at load time, rarely).
	entries atomic.Pointer[map[Dest]*entry]
	mu      sync.Mutex

	wake    chan struct{} // a new entry may be due before the refresher's sleep ends
	stop    chan struct{}
	done    chan struct{}
	metrics *metrics.Set
	now     func() time.Time
}

// entry is one cached destination. ans is read by the request path; the
// other fields belong to whoever holds Resolver.mu.
type entry struct {
	dest Dest
	ans  atomic.Pointer[Answer]
	// failing is set while refreshes fail; expires is when ans's TTL ends
	// (unix nanoseconds). Past it, a failing entry's answer is stale.
	failing atomic.Bool
	expires atomic.Int64
	ready   chan struct{} // closed once the first resolution ended

	due      time.Time // next refresh
	fails    int       // failed refreshes in a row
	resolved bool      // ready is closed: the first resolution ended
}

// isStale reports whether the answer in use outlived its TTL because
// refreshes fail (stale-while-error).
func (e *entry) isStale(now time.Time) bool {
	return e.failing.Load() && e.ans.Load() != nil && now.UnixNano() > e.expires.Load()
}

// New checks cfg, reads the name servers and starts the refresher. Close
// stops it.
func New(cfg Config) (*Resolver, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MinTTL <= 0 {
		cfg.MinTTL = DefaultMinTTL
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MinTTL > cfg.MaxTTL {
		return nil, fmt.Errorf("dns: min_ttl %s above max_ttl %s", cfg.MinTTL, cfg.MaxTTL)
	}
	if len(cfg.Transports) == 0 {
		cfg.Transports = []string{UDP, TCP}
	}
	servers, err := nameServers(cfg)
	if err != nil {
		return nil, err
	}
	r := &Resolver{
		cfg: cfg, servers: servers,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		now: time.Now,
	}
	r.entries.Store(&map[Dest]*entry{})
	r.ask = &dnsClient{servers: servers, timeout: cfg.Timeout}
	r.metrics = r.newMetrics()
	go r.refresher()
	return r, nil
}

// Close stops the refresher and unregisters the cache's gauges.
func (r *Resolver) Close() {
	select {
	case <-r.stop:
		return
	default:
	}
	close(r.stop)
	<-r.done
	metrics.UnregisterSet(r.metrics, true)
}

// Servers returns the name servers asked.
func (r *Resolver) Servers() []string { return slices.Clone(r.servers) }

// Cached returns the answer kept for d without waiting, nil when there is
// none yet (then the refresher is asked to resolve it). An IP address is
// answered at once. It is what the request path calls.
func (r *Resolver) Cached(d Dest) *Answer {
	if a, ok := literal(d); ok {
		return a
	}
	e, created := r.entry(d)
	if e == nil || created {
		mMisses.Inc()
		return nil
	}
	ans := e.ans.Load()
	if ans == nil {
		mMisses.Inc()
		return nil
	}
	mHits.Inc()
	if e.isStale(r.now()) {
		mStale.Inc()
	}
	return ans
}

// Peek returns the answer kept for d, or nil, without counting a cache
// read and without asking for d to be resolved: for checks that use no
// destination (is this source one of the name's addresses?).
func (r *Resolver) Peek(d Dest) *Answer {
	if a, ok := literal(d); ok {
		return a
	}
	if e := (*r.entries.Load())[d]; e != nil {
		return e.ans.Load()
	}
	return nil
}

// Lookup returns the answer for d, resolving it first when it is not
// cached, waiting at most until ctx ends. From then on the refresher keeps
// it fresh. An empty answer (the name or its records do not exist) is
// returned with ErrNoTargets.
func (r *Resolver) Lookup(ctx context.Context, d Dest) (*Answer, error) {
	if a, ok := literal(d); ok {
		return a, nil
	}
	e, _ := r.entry(d)
	if e == nil {
		// The cache is full: resolve for this caller alone.
		ts, _, err := r.resolve(ctx, d)
		if err != nil {
			return nil, err
		}
		return checkEmpty(d, &Answer{Targets: ts, Gen: 1})
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("resolve %s: %w", d, ctx.Err())
	}
	ans := e.ans.Load()
	if ans == nil {
		return nil, fmt.Errorf("resolve %s: name servers did not answer", d)
	}
	return checkEmpty(d, ans)
}

func checkEmpty(d Dest, a *Answer) (*Answer, error) {
	if len(a.Targets) == 0 {
		return a, fmt.Errorf("resolve %s: %w", d, ErrNoTargets)
	}
	return a, nil
}

// literal answers a destination whose host is an IP address.
func literal(d Dest) (*Answer, bool) {
	a, ok := d.Addr()
	if !ok {
		return nil, false
	}
	tr := d.defaultTransport()
	port := d.Port
	if port == 0 {
		port = defaultPort(tr)
	}
	return &Answer{Targets: []Target{{Addr: netip.AddrPortFrom(a.Unmap(), port), Transport: tr, Weight: 1}}, Gen: 1}, true
}

// entry returns d's entry, creating it (due at once) when there is none.
// It returns nil when the cache is full. Dest is its own key: parsing made
// it canonical, and a struct key costs no allocation.
func (r *Resolver) entry(d Dest) (e *entry, created bool) {
	if e = (*r.entries.Load())[d]; e != nil {
		return e, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.entries.Load()
	if e = old[d]; e != nil {
		return e, false
	}
	if len(old) >= r.cfg.MaxEntries {
		mFull.Inc()
		return nil, false
	}
	e = &entry{dest: d, ready: make(chan struct{}), due: r.now()}
	next := make(map[Dest]*entry, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[d] = e
	r.entries.Store(&next)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return e, true
}

// refresher is the one goroutine that resolves: it sleeps until the
// earliest entry is due, refreshes every due entry, and sleeps again. One
// goroutine is enough: only configured names are cached, a few dozen at
// most, and a slow server delays the others by one timeout at worst.
func (r *Resolver) refresher() {
	defer close(r.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-timer.C:
		case <-r.wake:
		}
		next := r.refreshDue()
		timer.Reset(max(next.Sub(r.now()), 10*time.Millisecond))
	}
}

// refreshDue refreshes every entry that is due and returns when the next
// one will be.
func (r *Resolver) refreshDue() time.Time {
	now := r.now()
	r.mu.Lock()
	var due []*entry
	next := now.Add(maxBackoff)
	for _, e := range *r.entries.Load() {
		if !e.due.After(now) {
			due = append(due, e)
		} else if e.due.Before(next) {
			next = e.due
		}
	}
	r.mu.Unlock()
	for _, e := range due {
		select {
		case <-r.stop:
			return next
		default:
		}
		r.refresh(e)
		r.mu.Lock()
		if e.due.Before(next) {
			next = e.due
		}
		r.mu.Unlock()
	}
	return next
}

// refresh resolves e once and publishes the answer, or keeps the old one
// when the name servers failed.
func (r *Resolver) refresh(e *entry) {
	ctx, cancel := context.WithTimeout(context.Background(), r.budget())
	defer cancel()
	ts, ttl, err := r.resolve(ctx, e.dest)
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		mRefreshFailed.Inc()
		e.fails++
		backoff := min(minBackoff<<min(e.fails-1, 10), maxBackoff)
		e.due = now.Add(backoff)
		e.failing.Store(true)
	} else {
		mRefreshOK.Inc()
		e.fails = 0
		e.failing.Store(false)
		e.expires.Store(now.Add(ttl).UnixNano())
		e.due = now.Add(time.Duration(float64(ttl) * refreshAt))
		old := e.ans.Load()
		if old == nil || !slices.Equal(old.Targets, ts) {
			gen := uint64(1)
			if old != nil {
				gen = old.Gen + 1
			}
			e.ans.Store(&Answer{Targets: ts, Gen: gen})
		}
	}
	if !e.resolved {
		// The first resolution ended, answered or not: Lookup's waiters
		// return (with the answer, or an error), later ones do not wait.
		e.resolved = true
		close(e.ready)
	}
}

// budget bounds one whole resolution: NAPTR, SRV for up to three
// transports, and A/AAAA of their targets, each from up to every server.
func (r *Resolver) budget() time.Duration {
	return 4 * r.cfg.Timeout * time.Duration(len(r.servers))
}

// ttl clamps a TTL in seconds; an empty answer gets the negative TTL.
func (r *Resolver) ttl(seconds uint32, empty bool) time.Duration {
	if empty {
		return r.cfg.NegativeTTL
	}
	return min(max(time.Duration(seconds)*time.Second, r.cfg.MinTTL), r.cfg.MaxTTL)
}

// Entries is the number of cached destinations.
func (r *Resolver) Entries() int {
	return len(*r.entries.Load())
}
