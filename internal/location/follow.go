package location

import (
	"bytes"
	"context"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"time"
)

// Coherence between edges sharing a Redis Cluster (docs/cluster.md).
//
// Every master tells this client which keys under the prefix changed
// (client-side caching in broadcast mode, redis.go), whoever changed them
// and also when Redis expired one. The follower re-reads those AORs and
// puts what it reads into the local view; a lost connection may have lost
// notices, so it then re-reads everything.
//
// The follower never holds writeMu: a read may wait for a master that is
// failing over, and registrations on the other masters must not wait with
// it. Instead a value read is put in the view only if it cannot be older
// than the view:
//   - an AOR with a local change not yet read for writing (dirty) is left
//     alone: the local change is newer, and once written it is what the
//     other edges read (two edges changing one AOR within a flush interval:
//     the last writer wins, docs/cluster.md);
//   - an AOR in a batch being written, or whose shard saw a batch end
//     while the read was under way, is read again a moment later: the read
//     may have reached Redis before that write.
type follower struct {
	// ctx ends when the store closes: a read waiting for an unreachable
	// master must not hold Close.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	keys   map[string]struct{}
	all    bool          // notices may have been lost: re-read everything
	wake   chan struct{} // capacity 1
}

// Follower timings.
const (
	// followRetry is the wait before a failed re-read is tried again:
	// about a failover's time with a cluster-node-timeout of a second.
	followRetry = time.Second
	// followAgain is the wait before reading again an AOR whose read
	// crossed one of this edge's own writes.
	followAgain = 10 * time.Millisecond
	// followReadTimeout bounds one round of reads of noticed keys,
	// followAllTimeout a re-read of everything.
	followReadTimeout = time.Second
	followAllTimeout  = 30 * time.Second
)

// noticed queues the keys another client changed; nil: re-read all. It
// runs in the client's reader goroutine, so it only queues.
func (m *Memory) noticed(keys []string) {
	f := &m.follow
	f.mu.Lock()
	if keys == nil {
		f.all = true
	}
	for _, k := range keys {
		f.keys[k] = struct{}{}
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (m *Memory) followLoop() {
	defer m.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-m.stop:
			retry.Stop()
			return
		case <-m.follow.wake:
		case <-retry.C:
		}
		again, err := m.followOnce()
		switch {
		case err != nil:
			// A master is down or moving: try again when the cluster
			// has had time to fail over, even if no other notice comes.
			m.followErrors.Add(1)
			retry.Reset(followRetry)
		case again:
			retry.Reset(followAgain)
		}
	}
}

// followOnce re-reads what was noticed since the last call. It reports
// whether some AORs must be read again; on failure the notices are queued
// again for the next try.
func (m *Memory) followOnce() (again bool, err error) {
	f := &m.follow
	f.mu.Lock()
	keys, all := f.keys, f.all
	f.keys, f.all = make(map[string]struct{}), false
	f.mu.Unlock()
	if len(keys) == 0 && !all {
		return false, nil
	}
	var retry []string
	if all {
		retry, err = m.followAll()
	} else {
		list := make([]string, 0, len(keys))
		for k := range keys {
			list = append(list, k)
		}
		retry, err = m.followKeys(list)
	}
	f.mu.Lock()
	for _, k := range retry {
		f.keys[k] = struct{}{}
	}
	if err != nil {
		f.all = f.all || all
		for k := range keys {
			f.keys[k] = struct{}{}
		}
	}
	f.mu.Unlock()
	return len(retry) > 0, err
}

// settledNow returns every shard's count of ended batches.
func (m *Memory) settledNow() []uint64 {
	out := make([]uint64, len(m.shards))
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		out[i] = s.settled
		s.mu.RUnlock()
	}
	return out
}

// followKeys reads keys and adopts their values; it returns the keys to
// read again.
func (m *Memory) followKeys(keys []string) (retry []string, err error) {
	settled := m.settledNow()
	ctx, cancel := context.WithTimeout(m.follow.ctx, followReadTimeout)
	defer cancel()
	err = m.redis.get(ctx, keys, func(key string, v []byte) {
		if aor, ok := m.redis.aorOf(key); ok && !m.adopt(aor, v, settled) {
			retry = append(retry, key)
		}
	})
	return retry, err
}

// followAll re-reads every AOR and forgets local ones Redis no longer
// has; it returns the keys to read again.
func (m *Memory) followAll() (retry []string, err error) {
	// A failover is the usual reason notices were lost: read from the
	// masters serving now.
	if err := m.redis.refreshSlots(); err != nil {
		return nil, err
	}
	settled := m.settledNow()
	seen := make(map[string]struct{})
	ctx, cancel := context.WithTimeout(m.follow.ctx, followAllTimeout)
	defer cancel()
	err = m.redis.loadCtx(ctx, func(aor string, v []byte) {
		aor = strings.Clone(aor)
		seen[aor] = struct{}{}
		if !m.adopt(aor, v, settled) {
			retry = append(retry, m.redis.key(aor))
		}
	})
	if err != nil {
		return nil, err
	}
	for i := range m.shards {
		s := &m.shards[i]
		var gone []string
		s.mu.RLock()
		for aor := range s.sets {
			if _, ok := seen[aor]; !ok {
				gone = append(gone, aor)
			}
		}
		s.mu.RUnlock()
		for _, aor := range gone {
			if !m.adopt(aor, nil, settled) {
				retry = append(retry, m.redis.key(aor))
			}
		}
	}
	return retry, nil
}

// adopt makes v (a stored value; nil: the AOR has no bindings) the local
// set of aor, unless the AOR has an unwritten local change or v holds
// what the view holds already. It reports false when v may be older than
// the view (see follower) and must be read again; settled is the shards'
// counts from before the read (nil: no read crossed a write, tests).
// Bindings another edge removed leave without OnExpire: they did not
// lapse, and that edge did what their removal needed.
func (m *Memory) adopt(aor string, v []byte, settled []uint64) bool {
	now := m.now().Unix()
	var blob []byte
	live := 0
	due := uint32(math.MaxUint32)
	if v != nil {
		if len(v) == 0 || (v[0] != formatV1 && v[0] != formatV2) || len(v)-1 > maxSetRecords {
			m.skipped.Add(1)
			return true
		}
		blob = sealSet(append(newSet(0, len(v)-1), v[1:]...))
		for rest := blob[setHeader:]; len(rest) > 0; {
			rec, r, err := nextEntry(rest)
			if err != nil {
				m.skipped.Add(1)
				return true
			}
			rest = r
			if _, err := decodeRecord(aor, rec); err != nil {
				m.skipped.Add(1)
				return true
			}
			if exp := recExpires(rec); int64(exp) > now || m.holds != nil {
				// With Options.Holds a binding past its expiry stays for
				// the expiry pass to ask about: dropped here, it would
				// leave without OnExpire on the box that acts for it.
				live++
				due = min(due, exp)
			}
		}
		if m.holds == nil {
			blob = keepLive(blob, now, due)
		} else {
			putSetDue(blob, due)
		}
		if live == 0 {
			blob = nil
		}
	}

	i := maphash.String(m.seed, aor) & m.mask
	s := &m.shards[i]
	s.mu.Lock()
	if _, ok := s.dirty[aor]; ok {
		s.mu.Unlock()
		return true
	}
	if _, ok := s.inflight[aor]; ok || settled != nil && s.settled != settled[i] {
		s.mu.Unlock()
		return false
	}
	old, exists := s.get(aor)
	if !exists && blob == nil || exists && blob != nil && bytes.Equal(old[setHeader:], blob[setHeader:]) {
		s.mu.Unlock()
		return true
	}
	s.bindings -= countEntries(old)
	if blob == nil {
		delete(s.sets, aor)
	} else {
		key := strings.Clone(aor)
		if exists && setDue(old) <= due {
			putSetDue(blob, setDue(old)) // the pending heap entry reschedules
		} else {
			s.heap.push(newExpiryEntry(due, key))
		}
		s.put(key, blob)
		s.bindings += live
	}
	s.mu.Unlock()
	m.followed.Add(1)
	if m.onChange != nil {
		m.onChange(aor)
	}
	return true
}
