package location

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is the Store: sharded maps in memory, the view every lookup reads,
// persisted to a backing (a bbolt file, or a Redis Cluster shared with
// other edges).
type Memory struct {
	shards   []shard
	mask     uint64
	seed     maphash.Seed
	now      func() time.Time
	onExpire func(Binding)
	actsFor  func(Binding) bool // nil: every binding
	holds    func(Binding) bool // nil: nothing held (Options.Holds)
	onChange func(aor string)
	flushDur time.Duration
	back     backing    // nil: memory only
	writeMu  sync.Mutex // held from reading sets for a batch until the backing has it
	// flushBatch and flushArena are the write-behind's buffers, reused
	// from chunk to chunk under writeMu: a chunk's copies of its sets
	// were a fifth of what pinhole allocated while absorbing refreshes,
	// and the collections they caused stalled the loops.
	flushBatch []setWrite
	flushArena []byte
	commit     committer // group commit of write-throughs (commit.go)
	// commitGap: write-through transactions start at least this far
	// apart (commit.go, committer); 0 for Redis, whose WAIT round trip is
	// cheap in CPU.
	commitGap time.Duration

	expired, writes, flushes, flushErrors, skipped atomic.Uint64
	writeErrors, followed, followErrors            atomic.Uint64
	swept, sweepErrors                             atomic.Uint64

	redis  *redisBacking // when the backing is a Redis Cluster: followed (follow.go)
	follow follower

	// loadLapsed are the bindings found expired at Open; the expiry
	// goroutine hands them to OnExpire so upstream de-registration is not
	// skipped because pinhole was down when they lapsed.
	loadLapsed []Binding

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Memory)(nil)

// shard holds the AORs whose hash selects it.
//
// sets maps an AOR to its bindings packed in one []byte: a u32le due word
// then the length-prefixed records (record.go). One allocation per AOR and
// no pointers inside it is what keeps a binding under 300 bytes of heap and
// the GC's work small at a million bindings.
//
// The map key is always a string this package allocated: Go replaces a
// string key on assignment, so every assignment passes a clone, never the
// caller's string (which may alias a packet buffer).
type shard struct {
	mu       sync.RWMutex
	sets     map[string]*byte // see set.go
	heap     expiryHeap
	dirty    map[string]struct{} // AORs changed since the last flush; nil when memory only
	bindings int
	// With a shared backing (follow.go): the AORs of the batch being
	// written, and a count of batches whose writes of this shard's AORs
	// ended. A change notice for an AOR in flight, or read while the
	// count moved, may be older than the local view and is read again.
	inflight map[string]struct{}
	settled  uint64
	_        [64]byte // keep neighbouring shards' locks off one cache line
}

// Open loads the persisted bindings (dropping expired ones) and starts
// expiry and flushing.
func Open(opts Options) (*Memory, error) {
	if opts.Shards == 0 {
		opts.Shards = DefaultShards
	}
	if opts.Shards < 0 || opts.Shards&(opts.Shards-1) != 0 {
		return nil, fmt.Errorf("open location store: shards %d is not a power of two", opts.Shards)
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.FlushInterval < 0 {
		return nil, fmt.Errorf("open location store: negative flush interval %v", opts.FlushInterval)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Memory{
		shards:   make([]shard, opts.Shards),
		mask:     uint64(opts.Shards - 1),
		seed:     maphash.MakeSeed(),
		now:      opts.Now,
		onExpire: opts.OnExpire,
		actsFor:  opts.ActsFor,
		holds:    opts.Holds,
		onChange: opts.OnChange,
		flushDur: opts.FlushInterval,
		stop:     make(chan struct{}),
	}
	if opts.Path != "" && opts.Redis != nil {
		return nil, fmt.Errorf("open location store: both a file and Redis")
	}
	var back backing
	switch {
	case opts.Redis != nil:
		m.follow.ctx, m.follow.cancel = context.WithCancel(context.Background())
		m.follow.keys = make(map[string]struct{})
		m.follow.wake = make(chan struct{}, 1)
		r, err := openRedis(*opts.Redis, m.noticed)
		if err != nil {
			return nil, err
		}
		m.redis, back = r, r
	case opts.Path != "":
		b, err := openBolt(opts.Path)
		if err != nil {
			return nil, err
		}
		back = b
		m.commitGap = boltCommitGap
	}
	m.back = back
	for i := range m.shards {
		m.shards[i].sets = make(map[string]*byte)
		if back != nil {
			m.shards[i].dirty = make(map[string]struct{})
		}
		if m.redis != nil {
			m.shards[i].inflight = make(map[string]struct{})
		}
	}
	if back != nil {
		if err := m.load(); err != nil {
			return nil, errors.Join(err, back.close())
		}
		m.commit.wake = make(chan struct{}, 1)
		m.wg.Add(2)
		go m.flushLoop()
		go m.commitLoop()
		if m.redis != nil {
			m.wg.Add(2)
			go m.followLoop()
			go m.sweepLoop()
		}
	}
	m.wg.Add(1)
	go m.expireLoop()
	return m, nil
}

func (m *Memory) shard(aor string) *shard {
	return &m.shards[maphash.String(m.seed, aor)&m.mask]
}

// Lookup returns copies of the live bindings of aor, highest q first, then
// most recently updated first.
func (m *Memory) Lookup(aor string) []Binding {
	s := m.shard(aor)
	now := m.now().Unix()
	s.mu.RLock()
	blob, _ := s.get(aor)
	out := appendLive(nil, aor, blob, now)
	s.mu.RUnlock()
	sortBindings(out)
	return out
}

// Update runs fn under the AOR's lock with its live bindings and stores
// what fn returns; see Store.
//
// Bindings fn returns that have already expired are dropped (that is how a
// registrar removes one), a zero Updated is set to now, and times are
// truncated to seconds. Contacts must be unique within the AOR.
//
// When the set changes other than by a refresh (a binding added, removed or
// altered beyond its expiry, CSeq and Updated) Update writes it to disk
// before returning, in one transaction with concurrent changes (commit.go),
// so an acknowledged registration survives a crash. If that write fails
// the new set is held in memory, retried by the flusher, and returned
// together with the error. Refreshes are written behind, within
// FlushInterval.
func (m *Memory) Update(aor string, fn func(cur []Binding) ([]Binding, error)) ([]Binding, error) {
	stored, c, err := m.Apply(aor, fn)
	if err != nil {
		return nil, err
	}
	if err := c.Wait(); err != nil {
		return stored, fmt.Errorf("update bindings of %q: %w", aor, err)
	}
	return stored, nil
}

// Apply is Update without the wait: the change is made in memory (Lookup
// sees it at once) and Apply returns the stored set with the Commit that
// completes when the change is on disk, or nil when it needs no
// write-through (a refresh, a memory-only store). An error from fn or an
// unstorable result changes nothing and returns no Commit.
//
// A caller that answers a device must not do so before the Commit
// completes without error (docs/location.md, "Persistence guarantee").
func (m *Memory) Apply(aor string, fn func(cur []Binding) ([]Binding, error)) ([]Binding, *Commit, error) {
	s := m.shard(aor)
	now := m.now()
	nowSec := now.Unix()

	s.mu.Lock()
	old, exists := s.get(aor)
	next, err := fn(appendLive(nil, aor, old, nowSec))
	if err != nil {
		s.mu.Unlock()
		return nil, nil, err
	}
	stored, blob, err := buildSet(aor, next, now)
	if err != nil {
		s.mu.Unlock()
		return nil, nil, fmt.Errorf("update bindings of %q: %w", aor, err)
	}
	// Lapsed bindings the expiry goroutine has not reached yet are not in
	// cur, so they leave now; they still owe their OnExpire.
	lapsed := appendLapsed(nil, aor, old, nowSec)
	changed := !sameExceptRefresh(old, blob)
	// Every change is marked dirty, a write-through too: the committer
	// takes it out of the dirty set when it reads the state to write (so
	// the flusher does not write a second copy of every registration),
	// and until then a change notice from another edge sharing the
	// backing must not overwrite it (follow.go).
	s.bindings -= countEntries(old)
	key := ""
	if blob == nil {
		if exists {
			delete(s.sets, aor)
			m.markDirty(s, aor)
		}
	} else {
		key = strings.Clone(aor)
		if exists && setDue(old) <= setDue(blob) {
			// The pending heap entry fires first and reschedules.
			putSetDue(blob, setDue(old))
		} else {
			s.heap.push(newExpiryEntry(setDue(blob), key))
		}
		s.put(key, blob)
		s.bindings += len(stored)
		if s.dirty != nil {
			s.dirty[key] = struct{}{} // key is this package's own clone
		}
	}
	s.mu.Unlock()

	m.lapse(lapsed)
	if m.onChange != nil {
		m.onChange(aor)
	}
	if !changed || m.back == nil {
		return stored, nil, nil
	}
	if key == "" {
		key = strings.Clone(aor)
	}
	c := &Commit{}
	m.enqueue(key, c)
	return stored, c, nil
}

// Touch moves the expiry of the live binding with r's Contact, Call-ID and
// flow if its CSeq is lower than r.CSeq, and sets its Updated to now; see
// Store. An expiry in the past makes the binding lapse at the next expiry
// pass, with OnExpire.
func (m *Memory) Touch(ref Refresh) bool {
	aor, cseq := ref.AOR, ref.CSeq
	s := m.shard(aor)
	now := m.now()
	nowSec := now.Unix()
	exp := unixSeconds(ref.Expires)

	s.mu.Lock()
	defer s.mu.Unlock()
	blob, ok := s.get(aor)
	if !ok {
		return false
	}
	for rest := blob[setHeader:]; len(rest) > 0; {
		rec, r, err := nextEntry(rest)
		if err != nil {
			return false
		}
		rest = r
		if int64(recExpires(rec)) <= nowSec || !recRefreshes(rec, &ref) {
			continue
		}
		if binary.LittleEndian.Uint32(rec[offCSeq:]) >= cseq {
			return false
		}
		// Only the fixed words change: readers' aliased strings stay valid.
		binary.LittleEndian.PutUint32(rec[offExpires:], exp)
		binary.LittleEndian.PutUint32(rec[offUpdated:], unixSeconds(now))
		binary.LittleEndian.PutUint32(rec[offCSeq:], cseq)
		if exp < setDue(blob) {
			putSetDue(blob, exp)
			s.heap.push(newExpiryEntry(exp, strings.Clone(aor)))
		}
		m.markDirty(s, aor)
		return true
	}
	return false
}

// Len reports how many AORs and bindings are held, including bindings that
// lapsed less than an expiry pass ago.
func (m *Memory) Len() (aors, bindings int) {
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		aors += len(s.sets)
		bindings += s.bindings
		s.mu.RUnlock()
	}
	return aors, bindings
}

// Range calls fn for each live binding until fn returns false. Each shard
// is copied under its read lock and fn runs with no lock held.
func (m *Memory) Range(fn func(Binding) bool) {
	now := m.now().Unix()
	var buf []Binding
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		buf = buf[:0]
		for aor, p := range s.sets {
			buf = appendLive(buf, aor, setBytes(p), now)
		}
		s.mu.RUnlock()
		for _, b := range buf {
			if !fn(b) {
				return
			}
		}
	}
}

// Stats returns counts for metrics.
func (m *Memory) Stats() Stats {
	aors, bindings := m.Len()
	return Stats{
		AORs:          aors,
		Bindings:      bindings,
		Expired:       m.expired.Load(),
		Writes:        m.writes.Load(),
		Commits:       m.commit.commits.Load(),
		Flushes:       m.flushes.Load(),
		FlushErrors:   m.flushErrors.Load(),
		SkippedAtLoad: m.skipped.Load(),
		WriteErrors:   m.writeErrors.Load(),
		Followed:      m.followed.Load(),
		FollowErrors:  m.followErrors.Load(),
		Swept:         m.swept.Load(),
		SweepErrors:   m.sweepErrors.Load(),
	}
}

// Close stops expiry and flushing, writes what is pending and closes the
// file. Later calls return the first result.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		close(m.stop)
		if m.follow.cancel != nil {
			m.follow.cancel()
		}
		m.wg.Wait()
		if m.back == nil {
			return
		}
		if err := m.flush(false); err != nil {
			m.closeErr = fmt.Errorf("close location store: %w", err)
		}
		if err := m.back.close(); err != nil && m.closeErr == nil {
			m.closeErr = fmt.Errorf("close location store: %w", err)
		}
	})
	return m.closeErr
}

// markDirty records that aor's set must be written at the next flush. key
// is cloned only the first time per flush interval, so a Touch allocates at
// most once per AOR per interval.
func (m *Memory) markDirty(s *shard, aor string) {
	if s.dirty == nil {
		return
	}
	if _, ok := s.dirty[aor]; !ok {
		s.dirty[strings.Clone(aor)] = struct{}{}
	}
}

// lapse delivers lapsed bindings to OnExpire; call it without locks.
func (m *Memory) lapse(bs []Binding) {
	if len(bs) == 0 {
		return
	}
	m.expired.Add(uint64(len(bs)))
	for _, b := range bs {
		if m.onChange != nil {
			m.onChange(b.AOR)
		}
		if m.onExpire != nil && m.acts(b) {
			m.onExpire(b)
		}
	}
}

// acts reports whether this box lapses b (Options.ActsFor).
func (m *Memory) acts(b Binding) bool { return m.actsFor == nil || m.actsFor(b) }

// actsForAny reports whether this box lapses any of bs: only then is the
// AOR's new set written to the backing. Another edge's lapsed bindings
// leave this view alone; their owner writes the removal, and this view
// follows it.
func (m *Memory) actsForAny(bs []Binding) bool {
	for _, b := range bs {
		if m.acts(b) {
			return true
		}
	}
	return false
}

// buildSet validates and normalises what an Update fn returned and packs it.
// blob is nil when no live binding remains.
func buildSet(aor string, next []Binding, now time.Time) (stored []Binding, blob []byte, err error) {
	nowSec := now.Unix()
	stored = make([]Binding, 0, len(next))
	for _, b := range next {
		exp := unixSeconds(b.Expires)
		if int64(exp) <= nowSec {
			continue
		}
		if b.Contact == "" {
			return nil, nil, fmt.Errorf("empty contact: %w", ErrInvalidBinding)
		}
		if b.Flow.Transport > TransportWSS {
			return nil, nil, fmt.Errorf("contact %q: transport %d: %w", b.Contact, b.Flow.Transport, ErrInvalidBinding)
		}
		if b.Updated.IsZero() {
			b.Updated = now
		}
		b.AOR = aor
		b.Expires = fromUnixSeconds(exp)
		b.Updated = fromUnixSeconds(unixSeconds(b.Updated))
		stored = append(stored, b)
	}
	for i := range stored {
		for j := i + 1; j < len(stored); j++ {
			// RFC 5626 §6: one device may hold several flows (reg-id) with
			// one Contact URI; a binding is its Contact, instance and reg-id.
			if stored[i].Contact == stored[j].Contact && stored[i].Instance == stored[j].Instance && stored[i].RegID == stored[j].RegID {
				return nil, nil, fmt.Errorf("contact %q twice: %w", stored[i].Contact, ErrInvalidBinding)
			}
		}
	}
	if len(stored) == 0 {
		return stored, nil, nil
	}
	sortBindings(stored)
	size := setHeader
	due := uint32(math.MaxUint32)
	for i := range stored {
		n := recordSize(&stored[i])
		size += uvarintLen(uint64(n)) + n
		due = min(due, unixSeconds(stored[i].Expires))
	}
	if size-setHeader > maxSetRecords {
		return nil, nil, fmt.Errorf("%d bytes of bindings: %w", size-setHeader, ErrInvalidBinding)
	}
	blob = newSet(due, size-setHeader)
	for i := range stored {
		blob = appendEntry(blob, &stored[i])
	}
	return stored, sealSet(blob), nil
}

// sortBindings orders like Lookup: q descending, then Updated descending,
// then Contact so the order is stable across calls.
func sortBindings(bs []Binding) {
	slices.SortFunc(bs, func(a, b Binding) int {
		if c := cmp.Compare(b.Q, a.Q); c != 0 {
			return c
		}
		if c := b.Updated.Compare(a.Updated); c != 0 {
			return c
		}
		return strings.Compare(a.Contact, b.Contact)
	})
}

// appendLive appends the bindings of blob that are live at now.
func appendLive(dst []Binding, aor string, blob []byte, now int64) []Binding {
	return appendWhere(dst, aor, blob, func(exp uint32) bool { return int64(exp) > now })
}

// appendLapsed appends the bindings of blob that have expired at now.
func appendLapsed(dst []Binding, aor string, blob []byte, now int64) []Binding {
	return appendWhere(dst, aor, blob, func(exp uint32) bool { return int64(exp) <= now })
}

func appendWhere(dst []Binding, aor string, blob []byte, keep func(exp uint32) bool) []Binding {
	if len(blob) < setHeader {
		return dst
	}
	if dst == nil {
		dst = make([]Binding, 0, countEntries(blob))
	}
	for rest := blob[setHeader:]; len(rest) > 0; {
		rec, r, err := nextEntry(rest)
		if err != nil {
			return dst // cannot happen: blobs are built by this package
		}
		rest = r
		if !keep(recExpires(rec)) {
			continue
		}
		if b, err := decodeRecord(aor, rec); err == nil {
			dst = append(dst, b)
		}
	}
	return dst
}

func countEntries(blob []byte) int {
	if len(blob) < setHeader {
		return 0
	}
	n := 0
	for rest := blob[setHeader:]; len(rest) > 0; n++ {
		_, r, err := nextEntry(rest)
		if err != nil {
			break
		}
		rest = r
	}
	return n
}

// sameExceptRefresh reports whether two packed sets hold the same bindings
// apart from the fields a refresh changes (expiry, Updated, CSeq): such a
// change may wait for the flusher.
func sameExceptRefresh(old, next []byte) bool {
	if len(old) < setHeader || len(next) < setHeader {
		return len(old) < setHeader && len(next) < setHeader
	}
	if countEntries(old) != countEntries(next) {
		return false
	}
	for rest := next[setHeader:]; len(rest) > 0; {
		rec, r, err := nextEntry(rest)
		if err != nil {
			return false
		}
		rest = r
		if !containsRecord(old, rec[offFlags:]) {
			return false
		}
	}
	return true
}

func containsRecord(blob, tail []byte) bool {
	for rest := blob[setHeader:]; len(rest) > 0; {
		rec, r, err := nextEntry(rest)
		if err != nil {
			return false
		}
		rest = r
		if bytes.Equal(rec[offFlags:], tail) {
			return true
		}
	}
	return false
}
