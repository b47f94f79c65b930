package absorb

import (
	"sync/atomic"
	"time"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/yield"
)

// touchRingSize is each loop's backlog of refreshed bindings not yet told
// to the store: at 190 000 refreshes/s on one loop (the echo ceiling
// measured here) and a flush every 100 ms, 19 000 are pending; 65 536
// leaves room for a slow flush. A full ring declines refreshes (Backlog),
// which the slow path then applies itself.
const touchRingSize = 1 << 16

// FlushEvery is how often absorbed refreshes reach the location store.
const FlushEvery = 100 * time.Millisecond

// touch is one binding whose expiry an absorbed refresh moved.
type touch struct {
	g       *Reg     // its AOR, Call-ID and flow: the store applies the touch only to that registration
	b       *binding // its Contact (the Reg's string: nothing is copied)
	cseq    uint32
	expires int64 // unix seconds
}

// touchRing is a single-producer (the loop), single-consumer (the
// flusher) ring: one atomic store per absorbed refresh, on a word only
// that loop writes, and no lock.
type touchRing struct {
	slots   []touch
	mask    uint64
	head    atomic.Uint64 // next slot the loop writes; published
	pending uint64        // loop-private head before publish
	_       [56]byte
	tail    atomic.Uint64 // next slot the flusher reads
}

func newTouchRing(n int) *touchRing {
	return &touchRing{slots: make([]touch, n), mask: uint64(n - 1)}
}

// reserve reports whether n more touches fit.
func (r *touchRing) reserve(n int) bool {
	r.pending = r.head.Load()
	return r.pending+uint64(n)-r.tail.Load() <= uint64(len(r.slots))
}

func (r *touchRing) put(t touch) {
	r.slots[r.pending&r.mask] = t
	r.pending++
}

func (r *touchRing) publish() { r.head.Store(r.pending) }

// drain hands every published touch to fn and frees the slots.
func (r *touchRing) drain(fn func(*touch)) int {
	tail, head := r.tail.Load(), r.head.Load()
	for i := tail; i < head; i++ {
		t := &r.slots[i&r.mask]
		fn(t)
		*t = touch{} // drop the Reg: an evicted one may go
	}
	r.tail.Store(head)
	return int(head - tail)
}

// touchPiece is how many touches Flush applies before it leaves the core
// for as long (yield.Core): about a quarter of a millisecond.
const touchPiece = 256

// Flush tells the store of every absorbed refresh queued so far, at once
// (shutdown and tests call it). Run flushes every FlushEvery, paced.
func (c *Cache) Flush() { c.flush(false) }

// flush is Flush; paced, it leaves the core between pieces of touchPiece.
func (c *Cache) flush(paced bool) {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.loopsMu.Lock()
	loops := append(c.flushLoops[:0], c.loops...)
	c.loopsMu.Unlock()
	c.flushLoops = loops
	n, began := 0, time.Now()
	for _, l := range loops {
		l.ring.drain(func(t *touch) {
			if n++; paced && n%touchPiece == 0 {
				// A hundred milliseconds of refreshes at 32 000/s is
				// 3 200 touches, ~3 ms of work: done at once, it kept
				// a loop on the same core from its socket that long.
				yield.Core(time.Since(began))
				began = time.Now()
			}
			ok := c.opt.Store.Touch(location.Refresh{
				AOR: t.g.aor(), Contact: t.b.contact, CallID: t.g.callID(), Flow: t.g.flow,
				CSeq: t.cseq, Expires: time.Unix(t.expires, 0),
			})
			if ok {
				c.m.touched.Add(1)
			} else {
				// The binding changed or went meanwhile (another
				// Call-ID or flow now); the slow path invalidated the
				// entry and owns what happens next.
				c.m.touchRefused.Add(1)
			}
		})
	}
}

// Run flushes every FlushEvery until stop is closed, then once more.
func (c *Cache) Run(stop <-chan struct{}) {
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			c.Flush()
			return
		case <-t.C:
			c.flush(true)
		}
	}
}
