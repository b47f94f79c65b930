package digest

import (
	"sync"
	"time"
)

// Replay remembers, per nonce, which nonce-counts were already
// accepted, so a captured request cannot be replayed while its nonce is
// fresh (RFC 7616 §3.4: the server checks that nc has not been seen for the
// nonce). 30 s is long enough to replay a captured INVITE and place a call
// on someone's account.
//
// Its bound must not become a way to forget: a cache that drops old entries
// when it fills lets whoever fills it replay what it dropped. So an entry
// leaves only when its nonce has expired (Check refuses the nonce by then)
// or, when the cache is full, the entry of the oldest nonce goes and every
// nonce issued at or before it is refused from then on (floor): a request
// with such a nonce gets stale=true and the device retries with a fresh one.
// Filling the cache thus costs honest devices a round trip, never a replay.
//
// Per nonce it keeps the highest nc seen and a window of the 64 below it,
// as IPsec does against replays (RFC 4303 §3.4.3): requests a device sends
// in parallel with one nonce may arrive out of order, and an nc more than
// 64 below the highest is refused as stale.
//
// The cache is per process: workers sharing a secret do not share it, so a
// replay sent to another worker within the TTL is not caught. That is the
// price of stateless nonces and is documented in docs/auth.md. A reload
// keeps it (Authenticator.WithCredentials).
type Replay struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	byNonce map[NonceKey]*replayEntry
	free    []*replayEntry
	oldest  []*replayEntry // min-heap on issued
	floor   time.Time      // nonces issued at or before it are refused
	evicted uint64         // entries dropped before their nonce expired
}

type replayEntry struct {
	key    NonceKey
	issued time.Time
	top    uint32 // highest nc accepted
	window uint64 // bit i: top-i was accepted
}

// ReplayWindow is how far below the highest nc a late nc is still checked.
const ReplayWindow = 64

// NewReplay returns a memory for nonces that live ttl, holding max of them.
func NewReplay(ttl time.Duration, max int) *Replay {
	return &Replay{ttl: ttl, max: max, byNonce: make(map[NonceKey]*replayEntry)}
}

// Seen records that (nonce, nc) is being accepted and reports whether it
// must be refused instead: used before, too far below the nonce's highest
// nc, or issued no later than a nonce whose entry was evicted.
func (r *Replay) Seen(nonce NonceKey, nc uint32, issued, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Expired nonces are refused by Check before they get here.
	for len(r.oldest) > 0 && now.Sub(r.oldest[0].issued) > r.ttl {
		delete(r.byNonce, r.oldest[0].key)
		r.release(r.popOldest())
	}
	if !r.floor.IsZero() && !issued.After(r.floor) {
		return true
	}
	e := r.byNonce[nonce]
	if e == nil {
		if len(r.byNonce) >= r.max {
			old := r.popOldest()
			delete(r.byNonce, old.key)
			r.evicted++
			if old.issued.After(r.floor) {
				r.floor = old.issued
			}
			r.release(old)
			if !issued.After(r.floor) {
				return true // older than what was just forgotten
			}
		}
		e = r.entry()
		*e = replayEntry{key: nonce, issued: issued, top: nc, window: 1}
		r.byNonce[nonce] = e
		r.push(e)
		return false
	}
	if nc > e.top {
		if shift := nc - e.top; shift >= ReplayWindow {
			e.window = 1
		} else {
			e.window = e.window<<shift | 1
		}
		e.top = nc
		return false
	}
	d := e.top - nc
	if d >= ReplayWindow || e.window&(1<<d) != 0 {
		return true
	}
	e.window |= 1 << d
	return false
}

// push and popOldest keep oldest a binary min-heap on issued.
func (r *Replay) push(e *replayEntry) {
	r.oldest = append(r.oldest, e)
	r.up(len(r.oldest) - 1)
}

// popOldest removes and returns the entry of the oldest nonce.
func (r *Replay) popOldest() *replayEntry {
	n := len(r.oldest) - 1
	e := r.oldest[0]
	r.swap(0, n)
	r.oldest[n] = nil
	r.oldest = r.oldest[:n]
	if n > 0 {
		r.down(0)
	}
	return e
}

// entry takes an entry from the free list, or a new one.
func (r *Replay) entry() *replayEntry {
	if n := len(r.free); n > 0 {
		e := r.free[n-1]
		r.free = r.free[:n-1]
		return e
	}
	return new(replayEntry)
}

// release puts an entry that left the memory on the free list.
func (r *Replay) release(e *replayEntry) {
	if len(r.free) < r.max {
		r.free = append(r.free, e)
	}
}

func (r *Replay) less(i, j int) bool { return r.oldest[i].issued.Before(r.oldest[j].issued) }

func (r *Replay) swap(i, j int) {
	r.oldest[i], r.oldest[j] = r.oldest[j], r.oldest[i]
}

func (r *Replay) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !r.less(i, p) {
			return
		}
		r.swap(i, p)
		i = p
	}
}

func (r *Replay) down(i int) {
	n := len(r.oldest)
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if c+1 < n && r.less(c+1, c) {
			c++
		}
		if !r.less(c, i) {
			return
		}
		r.swap(i, c)
		i = c
	}
}

// Stats reports the entries held and those evicted so far.
func (r *Replay) Stats() (held int, evicted uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byNonce), r.evicted
}
