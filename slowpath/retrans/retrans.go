// Package retrans remembers the final responses of requests answered
// without a server transaction, so that a retransmission of one of them
// gets the same response again instead of being processed twice (RFC 3261
// §17.2.2: a non-INVITE server transaction answers retransmissions with
// its last response until Timer J, 64·T1 = 32 s, fires).
//
// Everything lives in two fixed allocations made once: a ring of response
// bytes (the arena) and an index of 16-byte slots. Neither holds a
// pointer, so the garbage collector never scans them, and there is no
// object per response: a sipgo server transaction kept about 5 KB of heap
// per REGISTER for 32 s (docs/benchmarks.md, "Memory per binding"), this
// keeps the response's bytes and 16 bytes of header in the arena plus two
// index slots.
//
// The arena is written in order and overwritten oldest first; an index
// slot whose record was overwritten is stale and free for reuse, so
// eviction costs nothing but a comparison. Each key is a 64-bit hash with
// a per-process seed of what identifies the transaction (see [Cache.Key]).
package retrans

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"sync"
	"time"
)

// TimerJ is how long a non-INVITE server transaction over UDP answers
// retransmissions (RFC 3261 §17.2.2, 64·T1 with T1 = 500 ms).
const TimerJ = 32 * time.Second

// AvgResponse is the response size the arena is sized for: a REGISTER 200
// with one Contact, Date and received/rport in Via is 400-550 bytes from
// the usual phones (measured on the fast path's corpus, fastpath/testdata).
const AvgResponse = 512

// recHeader: u64 key, u32 length, u32 unix seconds stored, then the
// response.
const recHeader = 16

// bucketSlots per index bucket: a look-up reads one 128-byte bucket.
const bucketSlots = 8

// pendingBit marks a slot whose request is being processed; the rest of
// pos is then the start time in milliseconds.
const pendingBit = 1 << 63

// slot is one index entry: key 0 is empty.
type slot struct {
	key uint64
	pos uint64 // absolute arena position of the record, or pendingBit|start ms
}

// State is what Begin found.
type State uint8

const (
	// Fresh: no memory of the request; the caller processes it and must
	// call Finish or Forget.
	Fresh State = iota
	// Answered: a retransmission; the response to send again is returned.
	Answered
	// Pending: a retransmission of a request still being processed; its
	// response will go out when ready, drop this copy (§17.2.2: Trying
	// state discards retransmissions).
	Pending
)

// Stats are counters since the cache was made, and its fill.
type Stats struct {
	Answered uint64 // retransmissions answered from memory
	Pending  uint64 // retransmissions dropped while their request was processed
	Stored   uint64 // responses remembered
	Evicted  uint64 // responses overwritten to make room (oldest first), or displaced from the index
	// EvictedEarly counts responses overwritten less than Timer J after
	// they were stored: the cache is smaller than the rate it serves, and
	// a late retransmission of one of them is processed again.
	EvictedEarly uint64
	TooBig       uint64 // responses not remembered: larger than a quarter of the arena
	Bytes        uint64 // arena bytes holding responses now
	Capacity     uint64 // arena size
}

// Cache is safe for concurrent use.
type Cache struct {
	seed maphash.Seed
	now  func() time.Time

	mu    sync.Mutex
	arena []byte
	head  uint64 // absolute position of the next record
	tail  uint64 // absolute position of the oldest record still whole
	index []slot
	mask  uint64 // buckets - 1
	st    Stats
}

// New makes a cache that keeps the responses to rate requests per second
// for Timer J: rate·32 s responses of AvgResponse bytes, with twice as
// many index slots. rate < 1 is 1.
func New(rate int) *Cache {
	entries := uint64(max(rate, 1)) * uint64(TimerJ/time.Second)
	return NewSized(entries*AvgResponse, entries)
}

// NewSized makes a cache with an arena of arenaBytes (at least 4 KiB) and
// room in the index for about entries responses.
func NewSized(arenaBytes, entries uint64) *Cache {
	arenaBytes = max(arenaBytes, 4096)
	buckets := uint64(1) << bits.Len64(max(entries*2/bucketSlots, 1)-1)
	c := &Cache{
		seed:  maphash.MakeSeed(),
		now:   time.Now,
		arena: make([]byte, arenaBytes),
		index: make([]slot, buckets*bucketSlots),
		mask:  buckets - 1,
	}
	c.st.Capacity = arenaBytes
	return c
}

// Key hashes what identifies a transaction; 0 is never returned.
func (c *Cache) Key(id []byte) uint64 {
	k := maphash.Bytes(c.seed, id)
	if k == 0 {
		k = 1
	}
	return k
}

func (c *Cache) bucket(key uint64) []slot {
	b := (key & c.mask) * bucketSlots
	return c.index[b : b+bucketSlots]
}

// live reports whether s holds key and is still meaningful at nowMs.
func (c *Cache) live(s *slot, nowMs int64) bool {
	if s.key == 0 {
		return false
	}
	if s.pos&pendingBit != 0 {
		return nowMs-int64(s.pos&^pendingBit) < TimerJ.Milliseconds()
	}
	return s.pos >= c.tail
}

// Begin looks key up. Answered appends the remembered response to dst and
// returns it; Fresh marks key as being processed.
func (c *Cache) Begin(key uint64, dst []byte) ([]byte, State) {
	nowMs := c.now().UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	dst, st := c.find(key, nowMs, dst)
	if st == Fresh {
		c.claim(c.bucket(key), key).pos = pendingBit | uint64(nowMs)
	}
	return dst, st
}

// Peek is Begin without its mark: Fresh leaves no trace. The read filter
// uses it to answer a retransmission before parsing it, with a key made
// from the raw bytes that must never mark what a parsed key would not.
func (c *Cache) Peek(key uint64, dst []byte) ([]byte, State) {
	nowMs := c.now().UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.find(key, nowMs, dst)
}

// find is the look-up of Begin and Peek; c.mu is held.
func (c *Cache) find(key uint64, nowMs int64, dst []byte) ([]byte, State) {
	b := c.bucket(key)
	for i := range b {
		s := &b[i]
		if s.key != key || !c.live(s, nowMs) {
			continue
		}
		if s.pos&pendingBit != 0 {
			c.st.Pending++
			return dst, Pending
		}
		p := s.pos % uint64(len(c.arena))
		n := uint64(binary.LittleEndian.Uint32(c.arena[p+8:]))
		c.st.Answered++
		return append(dst, c.arena[p+recHeader:p+recHeader+n]...), Answered
	}
	return dst, Fresh
}

// claim returns the slot of b to hold key: its own, a free or stale one,
// else the one holding the oldest response (counted as evicted).
func (c *Cache) claim(b []slot, key uint64) *slot {
	nowMs := c.now().UnixMilli()
	var victim *slot
	for i := range b {
		s := &b[i]
		if s.key == key || !c.live(s, nowMs) {
			s.key = key
			return s
		}
		if s.pos&pendingBit == 0 && (victim == nil || s.pos < victim.pos) {
			victim = s
		}
	}
	if victim == nil {
		victim = &b[0] // a bucket of eight requests in progress: the first gives way
	}
	c.st.Evicted++
	victim.key = key
	return victim
}

// Finish remembers res as the response to key. res is copied.
func (c *Cache) Finish(key uint64, res []byte) {
	size := uint64(recHeader + len(res))
	c.mu.Lock()
	defer c.mu.Unlock()
	if size > uint64(len(c.arena))/4 {
		c.st.TooBig++
		c.forget(key)
		return
	}
	a := uint64(len(c.arena))
	if room := a - c.head%a; room < size {
		// The record does not fit before the end: pad to the start.
		c.makeRoom(room)
		if room >= recHeader {
			p := c.head % a
			binary.LittleEndian.PutUint64(c.arena[p:], 0)
			binary.LittleEndian.PutUint32(c.arena[p+8:], uint32(room-recHeader))
			binary.LittleEndian.PutUint32(c.arena[p+12:], 0)
		}
		c.head += room
	}
	c.makeRoom(size)
	pos := c.head
	p := pos % a
	binary.LittleEndian.PutUint64(c.arena[p:], key)
	binary.LittleEndian.PutUint32(c.arena[p+8:], uint32(len(res)))
	binary.LittleEndian.PutUint32(c.arena[p+12:], uint32(c.now().Unix()))
	copy(c.arena[p+recHeader:], res)
	c.head += size
	c.st.Stored++

	b := c.bucket(key)
	for i := range b {
		if b[i].key == key {
			b[i].pos = pos
			return
		}
	}
	c.claim(b, key).pos = pos // the pending mark gave way meanwhile
}

// makeRoom moves the tail past every record the next size bytes overwrite.
func (c *Cache) makeRoom(size uint64) {
	a := uint64(len(c.arena))
	nowSec := uint32(c.now().Unix())
	for c.tail+a < c.head+size {
		p := c.tail % a
		if a-p < recHeader {
			c.tail += a - p // padding too short for a header
			continue
		}
		if binary.LittleEndian.Uint64(c.arena[p:]) != 0 {
			c.st.Evicted++
			if nowSec-binary.LittleEndian.Uint32(c.arena[p+12:]) < uint32(TimerJ/time.Second) {
				c.st.EvictedEarly++
			}
		}
		c.tail += recHeader + uint64(binary.LittleEndian.Uint32(c.arena[p+8:]))
	}
}

// Forget drops key: its request was answered with something a
// retransmission may as well get afresh (a digest challenge), or not at
// all.
func (c *Cache) Forget(key uint64) {
	c.mu.Lock()
	c.forget(key)
	c.mu.Unlock()
}

func (c *Cache) forget(key uint64) {
	b := c.bucket(key)
	for i := range b {
		if b[i].key == key {
			b[i] = slot{}
		}
	}
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	st.Bytes = c.head - c.tail
	return st
}
