package config

// Registrar holds the expiry bounds granted to devices (RFC 3261 §10.3).
type Registrar struct {
	MinExpires     int `yaml:"min_expires"`
	MaxExpires     int `yaml:"max_expires"`
	DefaultExpires int `yaml:"default_expires"`
	MaxContacts    int `yaml:"max_contacts"`
	// Workers answer the REGISTERs that arrive over UDP for the standalone
	// registrar, without a server transaction (docs/registrar.md); 0: one
	// per CPU pinhole may use (GOMAXPROCS).
	Workers int `yaml:"workers"`
	// Queue is how many of those REGISTERs may wait for a worker; past it
	// new ones are shed and counted. 0: DefaultRegistrarQueue.
	Queue int `yaml:"queue"`
	// ResponseCacheRate is the REGISTER rate (per second) whose answers
	// are kept for Timer J (32 s) to answer retransmissions: the cache
	// takes rate × 32 × 512 bytes. 0: DefaultResponseCacheRate.
	ResponseCacheRate int `yaml:"response_cache_rate"`
}

// Defaults of the stateless REGISTER path, for a Registrar built in Go
// with those fields zero (default.yaml names the same values).
const (
	DefaultRegistrarQueue    = 4096
	DefaultResponseCacheRate = 4000
)

func (r Registrar) validate() error {
	switch {
	case r.MinExpires < 1:
		return bad("registrar.min_expires", "%d: must be at least 1 second", r.MinExpires)
	case r.MaxExpires < r.MinExpires:
		return bad("registrar.max_expires", "%d is below min_expires %d", r.MaxExpires, r.MinExpires)
	case r.DefaultExpires < r.MinExpires || r.DefaultExpires > r.MaxExpires:
		return bad("registrar.default_expires", "%d is outside [%d, %d]", r.DefaultExpires, r.MinExpires, r.MaxExpires)
	case r.MaxContacts < 1:
		return bad("registrar.max_contacts", "%d: must be at least 1", r.MaxContacts)
	case r.Workers < 0 || r.Workers > 1024:
		return bad("registrar.workers", "%d: must be between 0 (one per CPU) and 1024", r.Workers)
	case r.Queue != 0 && (r.Queue < 16 || r.Queue > 1<<20):
		return bad("registrar.queue", "%d: must be 0 (the default) or between 16 and 1048576", r.Queue)
	case r.ResponseCacheRate < 0 || r.ResponseCacheRate > 1<<20:
		return bad("registrar.response_cache_rate", "%d: must be 0 (the default) or between 1 and 1048576", r.ResponseCacheRate)
	}
	return nil
}
