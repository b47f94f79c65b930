package config

// FastPath configures the userspace fast path (docs/fastpath.md).
type FastPath struct {
	// Enabled (the embedded default): gnet owns the UDP listeners and
	// absorbs refreshes; false is the slow path alone, exactly as before
	// the fast path existed.
	Enabled bool `yaml:"enabled"`
	// Loops is the number of event loops (one SO_REUSEPORT socket each)
	// per UDP listener; 0 = one per CPU.
	Loops int `yaml:"loops"`
	// CacheSize is how many AORs' prepared answers are held at most.
	CacheSize int `yaml:"cache_size"`
	// QueueSize bounds the hand-off to the slow path per listener
	// (in-dialog traffic; new requests get three quarters of it).
	QueueSize int `yaml:"queue_size"`
	// Batch is how many datagrams a loop reads per recvmmsg and sends per
	// sendmmsg after gnet wakes it; 1: one recvfrom and one sendto per
	// datagram, as gnet alone does.
	Batch int `yaml:"batch"`
}

func (c *Config) validateFastPath() error {
	f := &c.FastPath
	if f.Loops < 0 || f.Loops > 256 {
		return bad("fastpath.loops", "%d: must be between 0 (one per CPU) and 256", f.Loops)
	}
	if f.CacheSize < 1 || f.CacheSize > 100_000_000 {
		return bad("fastpath.cache_size", "%d: must be between 1 and 100000000", f.CacheSize)
	}
	if f.QueueSize < 16 || f.QueueSize > 1<<20 {
		return bad("fastpath.queue_size", "%d: must be between 16 and 1048576", f.QueueSize)
	}
	if f.Batch < 1 || f.Batch > 1024 {
		return bad("fastpath.batch", "%d: must be between 1 (no batching) and 1024", f.Batch)
	}
	// listen.udp already refuses port 0, which the fast path could not
	// serve (each loop binds its own SO_REUSEPORT socket to the address).
	return nil
}
