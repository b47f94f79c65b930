package config

import (
	"time"
)

// Location configures the binding store.
type Location struct {
	FlushInterval time.Duration `yaml:"flush_interval"`
}

func (l Location) validate() error {
	if l.FlushInterval < 10*time.Millisecond || l.FlushInterval > time.Minute {
		return bad("location.flush_interval", "%s: must be between 10ms and 1m", l.FlushInterval)
	}
	return nil
}
