package config

import "time"

// Memory sets how far the heap may outgrow its live data before a garbage
// collection (internal/gcpace, docs/operations.md "Memory").
type Memory struct {
	// GCHeadroom is that growth as a percent of the live heap; 0 leaves
	// Go's own pacing (GOGC, 100 by default). GOGC in the environment wins.
	GCHeadroom int `yaml:"gc_headroom"`
	// GCHeadroomMinMB is the growth allowed at the least, in MiB, so that
	// a small heap is not collected every few megabytes.
	GCHeadroomMinMB int `yaml:"gc_headroom_min_mb"`
	// ReleaseAfter returns free heap to the system once the allocations
	// of this long would not have used it (after an avalanche, or when
	// the load is light); 0 leaves it to the runtime's scavenger, which
	// keeps everything below the next heap goal.
	ReleaseAfter time.Duration `yaml:"release_after"`
}

func (m Memory) validate() error {
	// Below 10 % the collector runs nearly back to back; above 100 % the
	// setting would only raise Go's default.
	if m.GCHeadroom != 0 && (m.GCHeadroom < 10 || m.GCHeadroom > 100) {
		return bad("memory.gc_headroom", "%d: must be 0 (Go's own pacing) or between 10 and 100", m.GCHeadroom)
	}
	if m.GCHeadroomMinMB < 0 || m.GCHeadroomMinMB > 65536 {
		return bad("memory.gc_headroom_min_mb", "%d: must be between 0 and 65536", m.GCHeadroomMinMB)
	}
	// Under 5 s a burst's pause would return pages the next burst needs;
	// past an hour the release would come too late to matter.
	if m.ReleaseAfter != 0 && (m.ReleaseAfter < 5*time.Second || m.ReleaseAfter > time.Hour) {
		return bad("memory.release_after", "%s: must be 0 (the runtime decides) or between 5s and 1h", m.ReleaseAfter)
	}
	return nil
}
