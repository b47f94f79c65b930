package location

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// Stale keys in a shared Redis Cluster (docs/cluster.md, "Layout in
// Redis").
//
// Keys carry no TTL: on Redis 7.0 a TTL costs each key an entry in its
// master's expires dictionary, 45 bytes of used_memory a key measured, a
// sixth of the 300 bytes a binding may take. What removes a key instead:
//   - the lapse path: when an AOR's bindings lapse, the edge that acts for
//     them writes the AOR's new set, which deletes the key when nothing is
//     left (expiry.go);
//   - this sweep, for what nobody removed that way: bindings of an edge
//     gone for good, or that lapsed while every edge was down. Every edge
//     scans the masters every sweepInterval and deletes the keys whose
//     every binding expired more than redisKeyGrace ago, the rule the TTL
//     (PXAT, latest expiry plus the grace) applied before.
//
// A key is deleted only if it still holds the value the sweep judged
// (sweepScript): a registration written between the read and the delete
// keeps its key. Keys of AORs the local view holds are not read at all:
// their bindings are live (or held, Options.Holds), so the key is
// needed; were the view wrong, the next pass after it is corrected (a
// lost connection re-reads everything, follow.go) catches the key.

// Sweep pacing.
const (
	// sweepInterval is the time between passes: a forgotten key leaves at
	// most this long after its grace ends (plus the pass itself).
	sweepInterval = 10 * time.Minute
	// sweepPage is the keys asked of SCAN per round trip, and sweepPause
	// the wait between pages: a million keys take some 10 s of a quiet
	// pass instead of a burst on every master.
	sweepPage  = 1000
	sweepPause = 10 * time.Millisecond
	// sweepTimeout bounds one master's pass.
	sweepTimeout = 5 * time.Minute
)

// sweepScript deletes KEYS[1] if its value is still ARGV[1]: one atomic
// step on the key's master, where a GET then a DEL from the client could
// delete a registration written in between.
var sweepScript = rueidis.NewLuaScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// staleValue reports whether a stored value holds only bindings that
// expired more than redisKeyGrace before now. A value that does not
// decode is never stale: it may come from a newer pinhole, whose own
// sweep knows what it means.
func staleValue(v []byte, now time.Time) bool {
	bs, err := decodeValue("", v)
	if err != nil {
		return false
	}
	for _, b := range bs {
		if !b.Expires.Add(redisKeyGrace).Before(now) {
			return false
		}
	}
	return true
}

func (m *Memory) sweepLoop() {
	defer m.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			n, err := m.sweep()
			m.swept.Add(uint64(n))
			if err != nil {
				m.sweepErrors.Add(1) // the next pass tries again
			}
		}
	}
}

// sweep runs one pass over every master and returns the keys it deleted.
func (m *Memory) sweep() (int, error) {
	if err := m.redis.refreshSlots(); err != nil {
		return 0, fmt.Errorf("sweep redis: %w", err)
	}
	nodes := m.redis.client.Nodes()
	deleted := 0
	for _, addr := range m.redis.masters() {
		node, ok := nodes[addr]
		if !ok {
			return deleted, fmt.Errorf("sweep redis: master %s unknown to the client", addr)
		}
		n, err := m.sweepNode(node)
		deleted += n
		if err != nil {
			return deleted, fmt.Errorf("sweep redis master %s: %w", addr, err)
		}
	}
	return deleted, nil
}

func (m *Memory) sweepNode(node rueidis.Client) (int, error) {
	ctx, cancel := context.WithTimeout(m.follow.ctx, sweepTimeout)
	defer cancel()
	deleted := 0
	var cursor uint64
	for {
		e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(m.redis.opts.KeyPrefix+"*").Count(sweepPage).Build()).AsScanEntry()
		if err != nil {
			return deleted, fmt.Errorf("scan: %w", err)
		}
		var unknown []string
		for _, k := range e.Elements {
			if aor, ok := m.redis.aorOf(k); ok && !m.holdsAOR(aor) {
				unknown = append(unknown, k)
			}
		}
		n, err := m.sweepKeys(ctx, unknown)
		deleted += n
		if err != nil {
			return deleted, err
		}
		if e.Cursor == 0 {
			return deleted, nil
		}
		cursor = e.Cursor
		select {
		case <-ctx.Done():
			return deleted, ctx.Err()
		case <-time.After(sweepPause):
		}
	}
}

// sweepKeys reads keys and deletes those whose value is stale and
// unchanged since the read.
func (m *Memory) sweepKeys(ctx context.Context, keys []string) (int, error) {
	now := m.now()
	var execs []rueidis.LuaExec
	err := m.redis.get(ctx, keys, func(key string, v []byte) {
		if v != nil && staleValue(v, now) {
			execs = append(execs, rueidis.LuaExec{Keys: []string{key}, Args: []string{string(v)}})
		}
	})
	if err != nil || len(execs) == 0 {
		return 0, err
	}
	deleted := 0
	for _, res := range sweepScript.ExecMulti(ctx, m.redis.client, execs...) {
		n, err := res.AsInt64()
		if err != nil {
			return deleted, fmt.Errorf("delete stale key: %w", err)
		}
		deleted += int(n)
	}
	return deleted, nil
}

// holdsAOR reports whether the local view has a set for aor.
func (m *Memory) holdsAOR(aor string) bool {
	s := m.shard(aor)
	s.mu.RLock()
	_, ok := s.get(aor)
	s.mu.RUnlock()
	return ok
}
