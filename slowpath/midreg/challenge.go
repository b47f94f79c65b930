package midreg

import (
	"sync"
	"time"
)

// challengeTTL is how long a challenge is remembered: a device answers at
// once, and an answer later than a transaction lifetime (Timer F, 32 s)
// is a new registration anyway.
const challengeTTL = 32 * time.Second

// DefaultMaxChallenges bounds the challenges remembered at once: 2 000 fresh
// challenges a second for challengeTTL, about 8 MB. A stranger can make the
// upstream challenge as many Call-IDs as it likes, so the bound is what
// keeps the memory of an edge on the public internet finite.
const DefaultMaxChallenges = 1 << 16

// challenge remembers which upstream challenged a REGISTER dialog, so the
// device's authenticated retry reaches the one that issued the nonce.
type challenge struct {
	upstream int
	at       time.Time
	seq      uint64 // which entry of the queue holds it
}

// queued is one remembered challenge in the order it was made.
type queued struct {
	callID string
	at     time.Time
	seq    uint64
}

// challenges maps Call-IDs to the upstream that challenged them. Entries
// are kept in a queue in the order they were made, which (with one clock)
// is also the order they expire in: remembering pops the expired ones from
// the front and, past max, the oldest live one. Each entry is pushed and
// popped once, so the cost per challenge is O(1) amortised however many
// fresh Call-IDs arrive within challengeTTL (a sweep of the whole map per
// challenge was quadratic under such a flood).
type challenges struct {
	mu    sync.Mutex
	byID  map[string]challenge
	queue []queued // queue[head:] is live; a Call-ID challenged again or forgotten leaves a stale slot
	head  int
	seq   uint64
	max   int

	evicted func() // counts a live challenge dropped for the bound
	popped  uint64 // queue entries popped, for the tests' work count
}

func newChallenges(max int, evicted func()) *challenges {
	if max <= 0 {
		max = DefaultMaxChallenges
	}
	return &challenges{byID: map[string]challenge{}, max: max, evicted: evicted}
}

// remember records that upstream i challenged callID at now.
func (c *challenges) remember(callID string, i int, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.head < len(c.queue) {
		q := c.queue[c.head]
		if now.Sub(q.at) <= challengeTTL && len(c.queue)-c.head < c.max {
			break
		}
		c.pop(now)
	}
	c.seq++
	c.byID[callID] = challenge{upstream: i, at: now, seq: c.seq}
	c.queue = append(c.queue, queued{callID: callID, at: now, seq: c.seq})
}

// pop drops the front of the queue and, when it is still the live entry
// of its Call-ID, the Call-ID; one not yet expired is counted as evicted.
func (c *challenges) pop(now time.Time) {
	q := c.queue[c.head]
	c.queue[c.head] = queued{} // let the Call-ID string go
	c.head++
	c.popped++
	if e, ok := c.byID[q.callID]; ok && e.seq == q.seq {
		delete(c.byID, q.callID)
		if now.Sub(q.at) <= challengeTTL && c.evicted != nil {
			c.evicted()
		}
	}
	// Move the live part to the front once the popped part is the larger:
	// the copy costs no more than the pops since the last one.
	if c.head > len(c.queue)/2 && c.head >= 64 {
		n := copy(c.queue, c.queue[c.head:])
		clear(c.queue[n:])
		c.queue = c.queue[:n]
		c.head = 0
	}
}

// upstream returns the upstream that challenged callID recently, or -1.
func (c *challenges) upstream(callID string, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[callID]
	if !ok || now.Sub(e.at) > challengeTTL {
		return -1
	}
	return e.upstream
}

// forget drops callID; its queue slot goes when it reaches the front.
func (c *challenges) forget(callID string) {
	c.mu.Lock()
	delete(c.byID, callID)
	c.mu.Unlock()
}

// len reports how many Call-IDs are remembered.
func (c *challenges) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byID)
}
