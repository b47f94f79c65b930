package location

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"

	"github.com/pinhole-sip/pinhole/internal/yield"
)

// load reads every stored set, keeps the live bindings and marks for
// rewrite the AORs that lost some, so expired bindings leave the backing
// at the first flush. Records that do not decode are counted and left
// untouched: they may come from a newer version of pinhole.
func (m *Memory) load() error {
	now := m.now().Unix()
	if err := m.back.load(func(aor string, v []byte) { m.loadOne(aor, v, now) }); err != nil {
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
	if gone > 0 && m.holds != nil {
		// Whether this box lapses them is the expiry pass's question
		// (Options.Holds): keep them, due at once.
		live += gone
		due = min(due, uint32(now))
		gone = 0
	}
	if gone > 0 {
		first := len(m.loadLapsed)
		m.loadLapsed = appendLapsed(m.loadLapsed, aor, blob, now)
		if m.actsForAny(m.loadLapsed[first:]) {
			m.markDirty(s, aor)
		}
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
			_ = m.flush(true)
		}
	}
}

// flush writes the current state of every dirty AOR, or deletes it, in one
// batch. The state is read under writeMu, which every write holds until
// the backing has the batch, so a flush can never overwrite a newer
// write-through with an older copy. If the batch fails the AORs stay
// dirty. Paced (the ticker's flushes), it leaves the core between chunks;
// the last flush, at Close, does not wait.
func (m *Memory) flush(paced bool) error {
	// The dirty AORs are taken at once; their values are read and written
	// a chunk at a time, each chunk under writeMu (so no chunk writes an
	// older copy over a write-through that came between), with the
	// scheduler given a turn between chunks.
	var names []string
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for aor := range s.dirty {
			names = append(names, aor)
			// In flight from now, not only from its chunk on: an AOR
			// neither dirty nor in flight would take a change notice's
			// older value from a shared backing (follow.go) before its
			// chunk writes it.
			if s.inflight != nil {
				s.inflight[aor] = struct{}{}
			}
		}
		if len(s.dirty) > 0 {
			s.dirty = make(map[string]struct{}, len(s.dirty))
		}
		s.mu.Unlock()
	}
	if len(names) == 0 {
		return nil
	}
	// In key order: bbolt rewrites every page a transaction touches, and
	// a chunk of AORs taken in the dirty maps' random order touched most
	// of the B+tree's leaves, each chunk again; sorted, a chunk is one
	// run of neighbouring leaves.
	slices.Sort(names)
	var errs []error
	for start := 0; start < len(names); start += flushChunkAORs {
		began := time.Now()
		if err := m.flushChunk(names[start:min(start+flushChunkAORs, len(names))]); err != nil {
			errs = append(errs, err)
		}
		// Why: on a core shared with the fast path's event loops, a
		// flush of tens of thousands of refreshed AORs held the core for
		// several milliseconds at a time, and every refresh waiting in a
		// loop's socket waited as long (the p99 of absorbed refreshes).
		// Between chunks the thread leaves the core (yield.Core).
		if paced {
			yield.Core(time.Since(began))
		}
	}
	if len(errs) > 0 {
		m.flushErrors.Add(1)
		return fmt.Errorf("flush bindings: %w", errors.Join(errs...))
	}
	m.flushes.Add(1)
	return nil
}

// flushChunkAORs bounds the AORs one write-behind transaction carries:
// about 0.7 ms of CPU here (encode, B+tree insert, commit), the longest a
// loop on the same core waits for the write-behind. Keys are sorted, so a
// smaller chunk rewrites few more leaves; it costs one more commit each.
const flushChunkAORs = 256

// maxFlushArena bounds the write-behind's kept buffer (a chunk of typical
// AORs needs some 50 KB).
const maxFlushArena = 1 << 20

// flushChunk writes the current values of names (taken out of the dirty
// sets by flush) and marks them dirty again if the write fails.
func (m *Memory) flushChunk(names []string) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	batch, arena := m.flushBatch[:0], m.flushArena[:0]
	defer func() {
		// bbolt is done with the batch once write returned (committed):
		// its buffers serve the next chunk, unless an AOR's sets made
		// them outsized. Not with Redis: its commands carry the arena
		// without a copy, and a command whose wait timed out could still
		// leave later, with the next chunk's bytes in it.
		clear(batch)
		if m.redis == nil && cap(arena) <= maxFlushArena {
			m.flushBatch, m.flushArena = batch[:0], arena[:0]
		} else {
			m.flushBatch, m.flushArena = nil, nil
		}
	}()
	for i, aor := range names {
		if i%yieldEvery == yieldEvery-1 {
			runtime.Gosched() // see yieldEvery
		}
		s := m.shard(aor)
		s.mu.Lock()
		batch, arena = appendPut(batch, arena, s, aor)
		s.mu.Unlock()
	}
	err := m.back.write(batch, false)
	m.settle(batch)
	if err == nil {
		return nil
	}
	var part *partialError
	errors.As(err, &part)
	for _, p := range batch {
		if part != nil && !part.failed(p.aor) {
			continue
		}
		s := m.shard(p.aor)
		s.mu.Lock()
		m.markDirty(s, p.aor)
		s.mu.Unlock()
	}
	return err
}

// settle ends the in-flight marks of a written batch (follow.go).
func (m *Memory) settle(batch []setWrite) {
	if m.redis == nil {
		return
	}
	for _, p := range batch {
		s := m.shard(p.aor)
		s.mu.Lock()
		delete(s.inflight, p.aor)
		s.settled++
		s.mu.Unlock()
	}
}

// appendPut appends aor's current value (or its deletion) to batch, its
// bytes to arena, and marks it in flight; call it with s locked. A put's
// value stays valid when arena later moves to a larger array: the old
// array is not reused.
func appendPut(batch []setWrite, arena []byte, s *shard, aor string) ([]setWrite, []byte) {
	if s.inflight != nil {
		s.inflight[aor] = struct{}{}
	}
	blob, ok := s.get(aor)
	if !ok {
		return append(batch, setWrite{aor: aor}), arena
	}
	start := len(arena)
	arena, until := appendValue(arena, blob)
	return append(batch, setWrite{aor: aor, value: arena[start:len(arena):len(arena)], until: until}), arena
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
