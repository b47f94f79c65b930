package config

// Memory sets how far the heap may outgrow its live data before a garbage
// collection (internal/gcpace, docs/operations.md "Memory").
type Memory struct {
	// GCHeadroom is that growth as a percent of the live heap; 0 leaves
	// Go's own pacing (GOGC, 100 by default). GOGC in the environment wins.
	GCHeadroom int `yaml:"gc_headroom"`
	// GCHeadroomMinMB is the growth allowed at the least, in MiB, so that
	// a small heap is not collected every few megabytes.
	GCHeadroomMinMB int `yaml:"gc_headroom_min_mb"`
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
	return nil
}
