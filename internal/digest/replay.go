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
	mu  sync.Mutex
	ttl time.Duration
	max int
	// The entries live in one slice, found by index, with times as Unix
	// nanoseconds: nothing here holds a pointer, so the garbage collector
	// never walks the memory, which holds up to DefaultReplayEntries
	// nonces at the first-registration rate (an object each, marked at
	// every cycle, when it held pointers to entries).
	byNonce map[NonceKey]int32 // index into entries
	entries []replayEntry
	free    []int32 // indexes of unused entries
	oldest  []int32 // min-heap of entry indexes on issued
	floor   int64   // Unix ns; nonces issued at or before it are refused (0: none)
	evicted uint64  // entries dropped before their nonce expired
}

type replayEntry struct {
	key    NonceKey
	issued int64  // Unix ns
	top    uint32 // highest nc accepted
	window uint64 // bit i: top-i was accepted
}

// ReplayWindow is how far below the highest nc a late nc is still checked.
const ReplayWindow = 64

// NewReplay returns a memory for nonces that live ttl, holding max of them.
func NewReplay(ttl time.Duration, max int) *Replay {
	return &Replay{ttl: ttl, max: max, byNonce: make(map[NonceKey]int32)}
}

// Seen records that (nonce, nc) is being accepted and reports whether it
// must be refused instead: used before, too far below the nonce's highest
// nc, or issued no later than a nonce whose entry was evicted.
func (r *Replay) Seen(nonce NonceKey, nc uint32, issued, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, nowNs := issued.UnixNano(), now.UnixNano()
	// Expired nonces are refused by Check before they get here.
	for len(r.oldest) > 0 && nowNs-r.entries[r.oldest[0]].issued > int64(r.ttl) {
		old := r.popOldest()
		delete(r.byNonce, r.entries[old].key)
		r.free = append(r.free, old)
	}
	if r.floor != 0 && at <= r.floor {
		return true
	}
	i, ok := r.byNonce[nonce]
	if !ok {
		if len(r.byNonce) >= r.max {
			old := r.popOldest()
			delete(r.byNonce, r.entries[old].key)
			r.evicted++
			r.floor = max(r.floor, r.entries[old].issued)
			r.free = append(r.free, old)
			if at <= r.floor {
				return true // older than what was just forgotten
			}
		}
		i = r.entry()
		r.entries[i] = replayEntry{key: nonce, issued: at, top: nc, window: 1}
		r.byNonce[nonce] = i
		r.push(i)
		return false
	}
	e := &r.entries[i]
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
func (r *Replay) push(i int32) {
	r.oldest = append(r.oldest, i)
	r.up(len(r.oldest) - 1)
}

// popOldest removes and returns the index of the oldest nonce's entry.
func (r *Replay) popOldest() int32 {
	n := len(r.oldest) - 1
	i := r.oldest[0]
	r.swap(0, n)
	r.oldest = r.oldest[:n]
	if n > 0 {
		r.down(0)
	}
	return i
}

// entry returns the index of an unused entry: a freed one, or a new one.
func (r *Replay) entry() int32 {
	if n := len(r.free); n > 0 {
		i := r.free[n-1]
		r.free = r.free[:n-1]
		return i
	}
	r.entries = append(r.entries, replayEntry{})
	return int32(len(r.entries) - 1)
}

func (r *Replay) less(i, j int) bool {
	return r.entries[r.oldest[i]].issued < r.entries[r.oldest[j]].issued
}

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
