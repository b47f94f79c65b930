package gcpace

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// Releasing heap to the system once it is no longer about to be used.
//
// After a collection the runtime keeps the pages the garbage occupied, to
// reuse them for the next allocations; its background scavenger returns
// only what lies above the next heap goal (plus a tenth), slowly. The
// goal is the live heap plus the Pacer's headroom, so a quiet pinhole
// keeps its headroom resident for good, and after an avalanche it keeps
// whatever the storm's collections left free until the next goal is
// reached. Measured on 200 000 bindings after an avalanche (Go 1.26):
// 108 MB of free heap resident next to 172 MB live, 540 bytes a binding
// that served no one.
//
// What a release would return is the free heap plus the garbage made
// since the last collection: a quiet pinhole may not collect for two
// minutes, and until then its garbage counts as heap in use.
//
// A Releaser returns that memory when the allocations of the last window
// would not have used it: the pages would stay idle for at least another
// window at the rate pinhole allocates. Under steady load the free pages
// are reused within the window and nothing is released; when the storm is
// over, or the load is light, they go back to the system within a window
// and at most once a window. debug.FreeOSMemory is the runtime's one way
// to do it; it runs a collection first. Under a light load that is the
// price: a collection about once a window (once 16 MiB of garbage is
// there) where the runtime would have waited for its two-minute one.

// releaseFloor is the least reclaimable heap worth a collection to return:
// an eighth of the Pacer's least headroom (128 MiB by default). Less is
// not worth a collection and a round of page faults to get back.
const releaseFloor = 16 << 20

const (
	allocsMetric   = "/gc/heap/allocs:bytes"
	freeMetric     = "/memory/classes/heap/free:bytes"
	objectsMetric  = "/memory/classes/heap/objects:bytes" // live and not yet collected
	releasedMetric = "/memory/classes/heap/released:bytes"
)

// Releaser returns free heap the recent allocation rate would leave idle.
type Releaser struct {
	window  time.Duration
	tick    time.Duration
	allocs  []uint64 // cumulative allocated bytes, one per tick, oldest first
	samples []metrics.Sample

	releases atomic.Uint64 // releases made (for the metric)
	released atomic.Uint64 // bytes returned by them
}

// NewReleaser returns a Releaser for window, or nil for a window of 0:
// the runtime's own scavenger alone then decides.
func NewReleaser(window time.Duration) *Releaser {
	if window <= 0 {
		return nil
	}
	tick := min(time.Second, window)
	return &Releaser{
		window:  window,
		tick:    tick,
		samples: []metrics.Sample{{Name: allocsMetric}, {Name: freeMetric}, {Name: objectsMetric}, {Name: liveMetric}, {Name: releasedMetric}},
	}
}

// observe records the cumulative allocated bytes and the reclaimable heap
// of one tick, and reports whether that heap should go back to the
// system: a full window has been seen, less was allocated in it than is
// reclaimable, and what is reclaimable is worth a collection.
func (r *Releaser) observe(allocs, reclaimable uint64) bool {
	n := int(r.window / r.tick)
	r.allocs = append(r.allocs, allocs)
	if len(r.allocs) > n+1 {
		r.allocs = r.allocs[1:]
	}
	if len(r.allocs) <= n {
		return false
	}
	recent := allocs - r.allocs[0]
	return reclaimable >= releaseFloor && recent < reclaimable
}

// reclaimable is the heap a collection and a scavenge would hand back:
// the free heap and the garbage since the last collection (the objects
// not yet collected beyond the live heap that collection found).
func reclaimable(free, objects, live uint64) uint64 {
	if objects < live { // sweeping already freed some of what was live
		return free
	}
	return free + objects - live
}

// forget starts a new window: after a release, the allocations of the
// window before it say nothing about the pages freed since.
func (r *Releaser) forget() { r.allocs = r.allocs[:0] }

// Step reads the runtime's counts for one tick and releases if observe
// says so.
func (r *Releaser) Step() {
	metrics.Read(r.samples)
	v := func(i int) uint64 { return r.samples[i].Value.Uint64() }
	if !r.observe(v(0), reclaimable(v(1), v(2), v(3))) {
		return
	}
	before := v(4)
	debug.FreeOSMemory()
	metrics.Read(r.samples)
	if after := v(4); after > before {
		r.released.Add(after - before)
	}
	r.releases.Add(1)
	r.forget()
}

// Run steps once a tick until ctx ends.
func (r *Releaser) Run(ctx context.Context) {
	if r == nil {
		return
	}
	every(ctx, r.tick, r.Step)
}

// Releases is how many times free heap was returned.
func (r *Releaser) Releases() uint64 {
	if r == nil {
		return 0
	}
	return r.releases.Load()
}

// ReleasedBytes is how much heap the releases returned to the system.
func (r *Releaser) ReleasedBytes() uint64 {
	if r == nil {
		return 0
	}
	return r.released.Load()
}
