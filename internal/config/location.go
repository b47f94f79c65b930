package config

import (
	"net"
	"strconv"
	"time"
)

// Location configures the binding store (docs/location.md,
// docs/cluster.md).
type Location struct {
	// Backend is where bindings are kept durable: bbolt (a file in
	// data_dir, one box) or redis (a Redis Cluster shared by edges).
	Backend string `yaml:"backend"`
	// FlushInterval bounds how long a refresh absorbed by the fast path
	// waits before it is written behind.
	FlushInterval time.Duration `yaml:"flush_interval"`
	Redis         Redis         `yaml:"redis"`
}

// Redis is the Redis Cluster of location.backend redis.
type Redis struct {
	// Addresses are seed nodes (host:port); the client learns the rest of
	// the cluster from them.
	Addresses []string `yaml:"addresses"`
	Username  string   `yaml:"username"`
	Password  string   `yaml:"password"`
	// WaitReplicas: a new or changed binding is answered only once this
	// many replicas of its master have it (WAIT); 0 answers once the
	// master has it.
	WaitReplicas int           `yaml:"wait_replicas"`
	WaitTimeout  time.Duration `yaml:"wait_timeout"`
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	// KeyPrefix starts every key pinhole writes; edges sharing bindings
	// must share it, separate deployments on one cluster must not.
	KeyPrefix string `yaml:"key_prefix"`
}

func (l Location) validate() error {
	if l.FlushInterval < 10*time.Millisecond || l.FlushInterval > time.Minute {
		return bad("location.flush_interval", "%s: must be between 10ms and 1m", l.FlushInterval)
	}
	switch l.Backend {
	case "bbolt":
		return nil
	case "redis":
		return l.Redis.validate()
	default:
		return bad("location.backend", "%q: must be bbolt or redis", l.Backend)
	}
}

func (r Redis) validate() error {
	if len(r.Addresses) == 0 {
		return bad("location.redis.addresses", "backend redis needs at least one cluster node (host:port)")
	}
	for _, a := range r.Addresses {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			return bad("location.redis.addresses", "%q: must be host:port", a)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return bad("location.redis.addresses", "%q: port must be 1 to 65535", a)
		}
	}
	if r.WaitReplicas < 0 || r.WaitReplicas > 16 {
		return bad("location.redis.wait_replicas", "%d: must be between 0 and 16", r.WaitReplicas)
	}
	// A REGISTER's UDP transaction gives up after 32 s (RFC 3261 Timer
	// F); the 200 or the error must reach the device well before.
	if r.WaitTimeout < time.Millisecond || r.WaitTimeout > 10*time.Second {
		return bad("location.redis.wait_timeout", "%s: must be between 1ms and 10s", r.WaitTimeout)
	}
	if r.DialTimeout < 10*time.Millisecond || r.DialTimeout > 30*time.Second {
		return bad("location.redis.dial_timeout", "%s: must be between 10ms and 30s", r.DialTimeout)
	}
	if r.KeyPrefix == "" {
		return bad("location.redis.key_prefix", "must not be empty: it is how pinhole finds its keys")
	}
	for _, c := range r.KeyPrefix {
		if c == '{' || c == '}' || c <= ' ' || c == 0x7f {
			return bad("location.redis.key_prefix", "%q: no braces (the AOR is the hash tag), spaces or control characters", r.KeyPrefix)
		}
	}
	return nil
}
