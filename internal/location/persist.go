package location

import (
	"errors"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucket holds one key per AOR; the value is the format version byte and
// the AOR's records (record.go).
var bucket = []byte("bindings")

func (m *Memory) openDB(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		// Fail instead of hanging when another pinhole holds the file.
		Timeout: time.Second,
		// The freelist is rebuilt at open instead of written at every
		// commit: cheaper commits, same durability (etcd does the same).
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return fmt.Errorf("open location store %s: %w", path, err)
	}
	m.db = db
	if err := m.load(); err != nil {
		return errors.Join(err, db.Close())
	}
	return nil
}

// load reads every record, keeps the live bindings and marks for rewrite
// the AORs that lost some, so expired bindings leave the disk at the first
// flush. Records that do not decode are counted and left on disk untouched:
// they may come from a newer version of pinhole.
func (m *Memory) load() error {
	now := m.now().Unix()
	err := m.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			m.loadOne(string(k), v, now)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load bindings: %w", err)
	}
	return nil
}

func (m *Memory) loadOne(aor string, v []byte, now int64) {
	if len(v) == 0 || (v[0] != formatV1 && v[0] != formatV2) {
		m.skipped.Add(1)
		return
	}
	// Copy out of bbolt's mmap: the set outlives the transaction.
	if len(v)-1 > maxSetRecords {
		m.skipped.Add(1)
		return
	}
	blob := sealSet(append(newSet(0, len(v)-1), v[1:]...))
	live, gone := 0, 0
	due := uint32(math.MaxUint32)
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
		} else {
			gone++
		}
	}
	s := m.shard(aor)
	if gone > 0 {
		m.loadLapsed = appendLapsed(m.loadLapsed, aor, blob, now)
		m.markDirty(s, aor)
		blob = keepLive(blob, now, 0)
	}
	if live == 0 {
		if gone == 0 {
			m.skipped.Add(1) // a version byte and no records
		}
		return
	}
	putSetDue(blob, due)
	s.put(aor, blob)
	s.bindings += live
	s.heap.push(newExpiryEntry(due, aor))
}

func (m *Memory) flushLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.flushDur)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			// A failure is counted in Stats and retried at the next tick.
			_ = m.flush()
		}
	}
}

// flush writes the current state of every dirty AOR, or deletes it, in one
// transaction. The state is read inside the transaction, so a flush can
// never overwrite a newer write-through with an older copy. If the
// transaction fails the AORs stay dirty.
func (m *Memory) flush() error {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	if !m.anyDirty() {
		return nil
	}
	taken := make([]map[string]struct{}, len(m.shards))
	err := m.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		var arena []byte
		for i := range m.shards {
			s := &m.shards[i]
			s.mu.Lock()
			if len(s.dirty) == 0 {
				s.mu.Unlock()
				continue
			}
			taken[i] = s.dirty
			s.dirty = make(map[string]struct{}, len(taken[i]))
			type kv struct {
				aor        string
				start, end int
			}
			var puts []kv
			for aor := range taken[i] {
				blob, ok := s.get(aor)
				if !ok {
					puts = append(puts, kv{aor: aor, start: -1})
					continue
				}
				start := len(arena)
				arena = append(arena, formatV2)
				arena = append(arena, blob[setHeader:]...)
				puts = append(puts, kv{aor, start, len(arena)})
			}
			s.mu.Unlock()
			// bbolt keeps value slices until commit; arena may grow into a
			// new array but the old one stays valid and unchanged.
			for _, p := range puts {
				var err error
				if p.start < 0 {
					err = b.Delete([]byte(p.aor))
				} else {
					err = b.Put([]byte(p.aor), arena[p.start:p.end:p.end])
				}
				if err != nil {
					return fmt.Errorf("write %q: %w", p.aor, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		m.flushErrors.Add(1)
		for i, d := range taken {
			if d == nil {
				continue
			}
			s := &m.shards[i]
			s.mu.Lock()
			for aor := range d {
				s.dirty[aor] = struct{}{}
			}
			s.mu.Unlock()
		}
		return fmt.Errorf("flush bindings: %w", err)
	}
	m.flushes.Add(1)
	return nil
}

func (m *Memory) anyDirty() bool {
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		n := len(s.dirty)
		s.mu.RUnlock()
		if n > 0 {
			return true
		}
	}
	return false
}
