package location

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// boltCommitGap is the shortest time between the starts of two
// write-through transactions to a bbolt file (see committer).
const boltCommitGap = 20 * time.Millisecond

// Commit is the durability of one change made by Apply: it completes once
// the change is on disk (or writing it failed). A nil *Commit is a change
// that needed no write-through and is complete already.
//
// It exists so that a caller which must not answer before the disk has
// the change (the registrar's 200, docs/location.md "Persistence
// guarantee") need not hold a goroutine while it waits: the stateless
// REGISTER path hands the answer to Then and goes on with the next
// request, and the committer sends it after the fsync.
type Commit struct {
	mu   sync.Mutex
	done bool
	err  error
	then func(error)
}

// Then calls fn with the outcome once the change is durable: at once, in
// the caller's goroutine, when it already is (or c is nil); otherwise from
// the store's committer goroutine, which fn must therefore not block. Call
// it at most once.
func (c *Commit) Then(fn func(error)) {
	if !c.Defer(fn) {
		_, err := c.Durable()
		fn(err)
	}
}

// Defer is Then for a caller with two ways to answer: when the change is
// durable already it calls nothing and reports false (the caller goes on
// in its own goroutine, knowing the outcome from Durable); otherwise fn
// runs later, from the store's committer goroutine, and it reports true.
// So fn always runs on the committer, where it may use what belongs to
// that goroutine alone (what it batches for AfterCommits). Call at most
// one of Then and Defer, once.
func (c *Commit) Defer(fn func(error)) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return false
	}
	c.then = fn
	return true
}

// Durable reports whether the change is durable already (always for a
// nil c, a change written behind), and then the write's error: a caller
// that answers at once in its own goroutine need not hand Then a closure.
func (c *Commit) Durable() (bool, error) {
	if c == nil {
		return true, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done, c.err
}

// Wait blocks until the change is durable and returns the write's error.
func (c *Commit) Wait() error {
	if c == nil {
		return nil
	}
	ch := make(chan error, 1)
	c.Then(func(err error) { ch <- err })
	return <-ch
}

func (c *Commit) finish(err error) {
	c.mu.Lock()
	c.done, c.err = true, err
	fn := c.then
	c.then = nil
	c.mu.Unlock()
	if fn != nil {
		fn(err)
	}
}

// pendingCommit is one AOR waiting for the committer.
type pendingCommit struct {
	aor string // allocated by this package: the caller's may alias a packet
	c   *Commit
}

// committer is the group commit of write-throughs: every change waiting
// when a transaction starts goes into it, so one fsync serves them all.
// While one transaction is being synced the next batch gathers, so the
// batch grows with the load and a lone registration waits for one fsync
// only. (bbolt's own db.Batch, used before, waits up to MaxBatchDelay,
// 10 ms, for company and runs each caller's function in a goroutine of its
// own; with a bounded worker pool instead of a goroutine per request that
// delay capped first registrations at workers ÷ 10 ms.)
//
// With a file (bbolt), transactions also start at most every commitGap
// (boltCommitGap): under a steady load the committer otherwise started
// the next one as soon as the previous fsync returned, about 150 a second
// on the test machine's virtio disk whatever the load, and at 3 000 first
// registrations/s those commits (two fdatasyncs and bbolt's copy-on-write
// pages each) were 40 % of pinhole's CPU (issue 13 profile, 2026-12-07).
// Nothing waits for the gap but the answers: workers hand their response
// to the Commit and go on (Registrar.Respond), so it costs latency, not
// throughput; a change after a quiet spell, or after a batch of one (a
// sequential client), is committed at once.
type committer struct {
	mu      sync.Mutex
	queue   []pendingCommit
	spare   []pendingCommit
	closed  bool
	wake    chan struct{} // capacity 1: a queue is waiting
	commits atomic.Uint64 // write-through transactions committed
	after   atomic.Pointer[func()]
}

// AfterCommits makes the committer call fn after the completions of each
// batch it committed (Then's and Defer's functions) have run, on the same
// goroutine, replacing any earlier fn. What those functions gather there
// (the registrar's answers, sent with one system call) is sent in one go:
// a group commit completes hundreds of registrations at once.
func (m *Memory) AfterCommits(fn func()) { m.commit.after.Store(&fn) }

// enqueue hands aor's current state to the committer; c completes when a
// transaction that read it (or a later state) has committed.
func (m *Memory) enqueue(aor string, c *Commit) {
	q := &m.commit
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		// Close is under way: write alone, as the store did before the
		// committer existed (the file may already be closed: an error).
		one := []pendingCommit{{aor, c}}
		err := m.commitBatch(one)
		if err != nil {
			m.redirty(one)
		}
		c.finish(err)
		return
	}
	q.queue = append(q.queue, pendingCommit{aor, c})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// commitLoop runs the group commit until the store stops, then commits
// what is still queued.
func (m *Memory) commitLoop() {
	defer m.wg.Done()
	q := &m.commit
	var started time.Time
	more, last := false, 0
	for {
		if !more {
			select {
			case <-q.wake:
			case <-m.stop:
				q.mu.Lock()
				q.closed = true
				q.mu.Unlock()
				m.commitQueued()
				return
			}
		}
		// The gap only once the last batch had company: one change at a
		// time (a lone device, a sequential client) is committed at once.
		if wait := m.commitGap - time.Since(started); last > 1 && wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-m.stop: // commit what gathered, then stop as above
				t.Stop()
			}
		}
		started = time.Now()
		more, last = m.commitNext()
	}
}

// commitQueued commits everything queued, batch after batch, until the
// queue stays empty.
func (m *Memory) commitQueued() {
	for more := true; more; {
		more, _ = m.commitNext()
	}
}

// commitNext commits the changes queued now in one transaction (none:
// nothing to do), and reports whether more were queued meanwhile and how
// many it committed.
func (m *Memory) commitNext() (more bool, n int) {
	q := &m.commit
	q.mu.Lock()
	if len(q.queue) == 0 {
		q.mu.Unlock()
		return false, 0
	}
	// Two arrays take turns: enqueue appends to one while the other
	// is committed, so neither is ever both.
	batch := q.queue
	q.queue, q.spare = q.spare[:0], nil
	q.mu.Unlock()
	err := m.commitBatch(batch)
	var part *partialError
	errors.As(err, &part)
	for i := range batch {
		e := err
		if part != nil && !part.failed(batch[i].aor) {
			e = nil
		}
		if e != nil {
			m.redirty(batch[i : i+1])
		}
		batch[i].c.finish(e)
		batch[i] = pendingCommit{}
	}
	if fn := q.after.Load(); fn != nil {
		(*fn)()
	}
	q.mu.Lock()
	q.spare = batch[:0]
	more = len(q.queue) > 0
	q.mu.Unlock()
	return more, len(batch)
}

// redirty hands the AORs of a failed batch to the flusher, which retries
// them (Apply leaves written-through changes out of the dirty sets).
func (m *Memory) redirty(batch []pendingCommit) {
	for _, p := range batch {
		s := m.shard(p.aor)
		s.mu.Lock()
		m.markDirty(s, p.aor)
		s.mu.Unlock()
	}
}

// commitBatch writes the current state of every AOR of batch in one
// backing batch (one fsync, or one pipelined round trip per Redis master).
// As in flush, the state is read under writeMu, so a batch never writes an
// older copy over a newer one: the last to write holds the newest state.
// Reading an AOR's state takes it out of the dirty set: the flusher need
// not write it again unless it changes again.
func (m *Memory) commitBatch(batch []pendingCommit) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	puts := make([]setWrite, 0, len(batch))
	var arena []byte
	for _, p := range batch {
		s := m.shard(p.aor)
		s.mu.Lock()
		delete(s.dirty, p.aor)
		puts, arena = appendPut(puts, arena, s, p.aor)
		s.mu.Unlock()
	}
	err := m.back.write(puts, true)
	m.settle(puts)
	if err != nil {
		m.writeErrors.Add(1)
		return fmt.Errorf("write through: %w", err)
	}
	m.writes.Add(uint64(len(batch)))
	m.commit.commits.Add(1)
	return nil
}
