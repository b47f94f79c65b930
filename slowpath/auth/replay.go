package auth

import (
	"sync"
	"time"
)

// replayCache remembers (nonce, nc) pairs already accepted, so a captured
// request cannot be replayed while its nonce is still fresh (RFC 7616 §3.4:
// the server checks that nc has not been seen for the nonce).
//
// Why not rely on the short NonceTTL alone: 30 s is long enough to replay a
// captured INVITE and place a call on someone's account. Why not a true LRU:
// an entry only matters until its nonce expires, so two generations rotated
// every TTL give the same protection with O(1) work and no list. Memory is
// bounded by max entries per generation; when the current one fills before
// its time, it rotates early and the oldest generation is forgotten — a
// bounded weakening under load that never blocks a legitimate client.
//
// The cache is per process: workers sharing a secret do not share it, so a
// replay sent to another worker within the TTL is not caught. That is the
// price of stateless nonces and is documented in docs/auth.md.
type replayCache struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	rotated time.Time
	cur     map[replayKey]struct{}
	prev    map[replayKey]struct{}
}

type replayKey struct {
	nonce nonceKey
	nc    uint32
}

func newReplayCache(ttl time.Duration, max int) *replayCache {
	return &replayCache{
		ttl:  ttl,
		max:  max,
		cur:  make(map[replayKey]struct{}),
		prev: make(map[replayKey]struct{}),
	}
}

// seen records k and reports whether it was already there.
func (r *replayCache) seen(k replayKey, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rotated.IsZero() {
		r.rotated = now
	}
	// An entry must outlive its nonce: it stays between one and two TTLs.
	if now.Sub(r.rotated) >= r.ttl || len(r.cur) >= r.max {
		r.prev, r.cur = r.cur, r.prev
		clear(r.cur)
		r.rotated = now
	}
	if _, ok := r.cur[k]; ok {
		return true
	}
	if _, ok := r.prev[k]; ok {
		return true
	}
	r.cur[k] = struct{}{}
	return false
}
