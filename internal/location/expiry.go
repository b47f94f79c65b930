package location

import (
	"math"
	"time"
	"unsafe"
)

// Expiry: each shard keeps a min-heap with one entry per AOR, not per
// binding, due at or before the AOR's earliest expiry. The AOR's packed set
// starts with the due time of its authoritative entry; an entry whose time
// differs is stale and is dropped when popped. So a refresh that moves an
// expiry later costs nothing here (the entry fires early, finds nothing
// lapsed, and reschedules), and only a move earlier pushes a new entry.
// One goroutine per store pops due entries every second: no timer or
// goroutine per binding.

// expiryEntry names an AOR string this package allocated by its data
// pointer and length: 16 bytes where a string field would make it 24, some
// 10 bytes per binding at a million once the heap's spare capacity counts.
type expiryEntry struct {
	aor *byte
	n   uint32
	at  uint32
}

func newExpiryEntry(at uint32, aor string) expiryEntry {
	return expiryEntry{aor: unsafe.StringData(aor), n: uint32(len(aor)), at: at}
}

// AOR returns the string the entry was made from.
func (e expiryEntry) AOR() string { return unsafe.String(e.aor, int(e.n)) }

// expiryHeap is a binary min-heap by at; hand-written because
// container/heap boxes every pushed value.
type expiryHeap []expiryEntry

func (h *expiryHeap) push(e expiryEntry) {
	*h = append(*h, e)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p].at <= s[i].at {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *expiryHeap) pop() expiryEntry {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = expiryEntry{} // release the string
	s = s[:last]
	for i := 0; ; {
		l, r, min := 2*i+1, 2*i+2, i
		if l < len(s) && s[l].at < s[min].at {
			min = l
		}
		if r < len(s) && s[r].at < s[min].at {
			min = r
		}
		if min == i {
			break
		}
		s[i], s[min] = s[min], s[i]
		i = min
	}
	*h = s
	return top
}

// expireInterval is the expiry pass period: bindings go within about a
// second of their expiry, as the registrar promises.
const expireInterval = time.Second

func (m *Memory) expireLoop() {
	defer m.wg.Done()
	m.lapse(m.loadLapsed)
	m.loadLapsed = nil
	t := time.NewTicker(expireInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.expire(m.now())
		}
	}
}

// expire removes every binding lapsed at now and calls OnExpire for each,
// one shard at a time and outside the shard's lock.
func (m *Memory) expire(now time.Time) {
	nowSec := now.Unix()
	var lapsed []Binding
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		lapsed = m.expireShard(s, nowSec, lapsed[:0])
		s.mu.Unlock()
		m.lapse(lapsed)
		clear(lapsed) // drop references to old sets before the next shard
	}
}

func (m *Memory) expireShard(s *shard, now int64, lapsed []Binding) []Binding {
	for len(s.heap) > 0 && int64(s.heap[0].at) <= now {
		e := s.heap.pop()
		aor := e.AOR()
		blob, ok := s.get(aor)
		if !ok || setDue(blob) != e.at {
			continue // stale: the AOR left or was rescheduled earlier
		}
		live, gone := 0, 0
		next := uint32(math.MaxUint32)
		for rest := blob[setHeader:]; len(rest) > 0; {
			rec, r, err := nextEntry(rest)
			if err != nil {
				break
			}
			rest = r
			if exp := recExpires(rec); int64(exp) <= now {
				gone++
			} else {
				live++
				next = min(next, exp)
			}
		}
		if gone == 0 {
			// Refreshed since scheduled: only reschedule.
			putSetDue(blob, next)
			s.heap.push(newExpiryEntry(next, aor))
			continue
		}
		first := len(lapsed)
		lapsed = appendLapsed(lapsed, aor, blob, now)
		s.bindings -= gone
		if m.actsForAny(lapsed[first:]) {
			m.markDirty(s, aor)
		}
		if live == 0 {
			delete(s.sets, aor)
			continue
		}
		s.put(aor, keepLive(blob, now, next))
		s.heap.push(newExpiryEntry(next, aor))
	}
	return lapsed
}
