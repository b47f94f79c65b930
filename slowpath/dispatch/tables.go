package dispatch

import (
	"sync"
	"time"
)

// callTable maps the Call-ID of each answered call to the node that
// carries it. It is the only per-call state pinhole keeps, and only for
// counting: routing never reads it, so losing it (a restart) skews
// least_calls for a while and breaks no dialog. About 100 bytes a call.
type callTable struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]callEntry
}

type callEntry struct {
	n     *Node
	start time.Time
}

func newCallTable(ttl time.Duration) *callTable {
	return &callTable{ttl: ttl, m: map[string]callEntry{}}
}

// add reports whether the call is new (a 2xx retransmission is not).
func (t *callTable) add(id string, n *Node, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[id]; ok {
		return false
	}
	t.m[id] = callEntry{n: n, start: now}
	return true
}

func (t *callTable) remove(id string) *Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[id]
	if !ok {
		return nil
	}
	delete(t.m, id)
	return e.n
}

// expire removes calls older than the TTL and returns their nodes. It
// walks the whole table: once per probe interval, cheap next to the calls.
func (t *callTable) expire(now time.Time) []*Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*Node
	for id, e := range t.m {
		if now.Sub(e.start) > t.ttl {
			delete(t.m, id)
			out = append(out, e.n)
		}
	}
	return out
}

func (t *callTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// maxSticky bounds the challenge table so that a flood of unanswered
// challenges cannot grow it without limit; past it new entries are not
// kept and the retry is dispatched afresh (it may then be challenged again).
const maxSticky = 1 << 20

// stickyTable remembers which node challenged a request (the
// authenticated retry must reach the node that holds the nonce).
type stickyTable struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]stickyEntry
}

type stickyEntry struct {
	n   *Node
	exp time.Time
}

func newStickyTable(ttl time.Duration) *stickyTable {
	return &stickyTable{ttl: ttl, m: map[string]stickyEntry{}}
}

func (t *stickyTable) put(key string, n *Node, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[key]; !ok && len(t.m) >= maxSticky {
		mStickyFull.Inc()
		return
	}
	t.m[key] = stickyEntry{n: n, exp: now.Add(t.ttl)}
}

func (t *stickyTable) get(key string, now time.Time) *Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[key]
	if !ok || now.After(e.exp) {
		return nil
	}
	return e.n
}

func (t *stickyTable) expire(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range t.m {
		if now.After(e.exp) {
			delete(t.m, k)
		}
	}
}
