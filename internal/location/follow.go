package location

import (
	"bytes"
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
// An AOR with a local change not yet read for writing (dirty) is left
// alone: the local change is newer than anything this edge can read, and
// once written it is what the other edges will read. The follower reads
// under writeMu, so every local change already read for writing is in
// Redis before the read: what it reads is never older than the local view.
type follower struct {
	mu   sync.Mutex
	keys map[string]struct{}
	all  bool          // notices may have been lost: re-read everything
	wake chan struct{} // capacity 1
}

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
		if err := m.followOnce(); err != nil {
			// A master is down or moving: try again when the cluster
			// has had time to fail over, even if no other notice comes.
			m.followErrors.Add(1)
			retry.Reset(followRetry)
		}
	}
}

// followRetry is the wait before a failed re-read is tried again: about
// a failover's time with a cluster-node-timeout of a second.
const followRetry = time.Second

// followOnce re-reads what was noticed since the last call. On failure
// the notices are queued again for the next try.
func (m *Memory) followOnce() error {
	f := &m.follow
	f.mu.Lock()
	keys, all := f.keys, f.all
	f.keys, f.all = make(map[string]struct{}), false
	f.mu.Unlock()
	if len(keys) == 0 && !all {
		return nil
	}
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	var err error
	if all {
		err = m.followAll()
	} else {
		list := make([]string, 0, len(keys))
		for k := range keys {
			list = append(list, k)
		}
		ctx, cancel := m.redis.ctx()
		err = m.redis.get(ctx, list, func(key string, v []byte) {
			if aor, ok := m.redis.aorOf(key); ok {
				m.adopt(aor, v)
			}
		})
		cancel()
	}
	if err != nil {
		f.mu.Lock()
		f.all = f.all || all
		for k := range keys {
			f.keys[k] = struct{}{}
		}
		f.mu.Unlock()
	}
	return err
}

// followAll re-reads every AOR and forgets local ones Redis no longer has.
func (m *Memory) followAll() error {
	// A failover is the usual reason notices were lost: read from the
	// masters serving now.
	if err := m.redis.refreshSlots(); err != nil {
		return err
	}
	seen := make(map[string]struct{})
	err := m.redis.load(func(aor string, v []byte) {
		aor = strings.Clone(aor)
		seen[aor] = struct{}{}
		m.adopt(aor, v)
	})
	if err != nil {
		return err
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
			m.adopt(aor, nil)
		}
	}
	return nil
}

// adopt makes v (a stored value; nil: the AOR has no bindings) the local
// set of aor unless the AOR has an unwritten local change or v holds what
// the view holds already. Bindings another edge removed leave without
// OnExpire: they did not lapse, and that edge did what their removal
// needed. Call it with writeMu held.
func (m *Memory) adopt(aor string, v []byte) {
	now := m.now().Unix()
	var blob []byte
	live := 0
	due := uint32(math.MaxUint32)
	if v != nil {
		if len(v) == 0 || (v[0] != formatV1 && v[0] != formatV2) || len(v)-1 > maxSetRecords {
			m.skipped.Add(1)
			return
		}
		blob = sealSet(append(newSet(0, len(v)-1), v[1:]...))
		for rest := blob[setHeader:]; len(rest) > 0; {
			rec, r, err := nextEntry(rest)
			if err != nil {
				m.skipped.Add(1)
				return
			}
			rest = r
			if _, err := decodeRecord(aor, rec); err != nil {
				m.skipped.Add(1)
				return
			}
			if exp := recExpires(rec); int64(exp) > now {
				live++
				due = min(due, exp)
			}
		}
		blob = keepLive(blob, now, due)
		if live == 0 {
			blob = nil
		}
	}

	s := m.shard(aor)
	s.mu.Lock()
	if _, ok := s.dirty[aor]; ok {
		s.mu.Unlock()
		return
	}
	old, exists := s.get(aor)
	if !exists && blob == nil || exists && blob != nil && bytes.Equal(old[setHeader:], blob[setHeader:]) {
		s.mu.Unlock()
		return
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
}
