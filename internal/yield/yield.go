// Package yield paces pinhole's batch work on a core it shares with the
// fast path's event loops.
//
// Why: the flush of absorbed refreshes to the store (every 100 ms) and the
// store's write-behind to disk (every second) each ran for several
// milliseconds at a time on the core of an event loop, on another OS
// thread. A loop woken by a datagram meanwhile waited for the kernel to
// end that thread's slice: 3-9 ms, ten times a second, which was the p99
// of absorbed refreshes at half load (execution trace, veth, 32 000
// refreshes/s, 2026-12-07). runtime.Gosched cannot help (it gives up the
// P, and the thread keeps the core), nor could a shorter kernel slice
// for the loop's thread alone: a loop that has been busy is behind in the
// kernel's fair accounting, so a batch thread that slept runs first
// however short the loop's slice (tried: no better). What helps is the
// batch thread leaving the run queue: Core sleeps.
package yield

import "time"

// maxPause bounds one pause: a piece that ran long (a slow disk's sync
// counted in it) still comes back soon.
const maxPause = time.Millisecond

// Core is called by a batch worker between two pieces of its work, with
// how long the last piece took: it sleeps as long (at most maxPause), so
// that a loop woken meanwhile gets the core. While pieces last, they take
// at most about half of a core; the batch takes up to twice as long, and
// no loop waits for more than one piece.
func Core(worked time.Duration) {
	time.Sleep(min(worked, maxPause))
}
