package config

import (
	"time"
)

// NATPing configures the keepalives pinhole sends to NAT'd UDP bindings
// (docs/natping.md).
type NATPing struct {
	// Interval between two pings to one binding; 0 turns pinging off.
	Interval time.Duration `yaml:"interval"`
	// Method: options (a SIP OPTIONS the device answers) or crlf (a bare
	// CRLF that only keeps the NAT open; no liveness from it).
	Method string `yaml:"method"`
	// MaxMissed is how many OPTIONS pings in a row may go unanswered
	// before the binding is removed; 0 = never remove.
	MaxMissed int `yaml:"max_missed"`
}

func (n *NATPing) validate() error {
	// Below a second the pinger would be a flood; above 10 minutes most
	// NATs have closed the binding (UDP timeouts of 30 s to 5 min are common).
	if n.Interval != 0 && (n.Interval < time.Second || n.Interval > 10*time.Minute) {
		return bad("natping.interval", "%s: must be 0 (off) or between 1s and 10m", n.Interval)
	}
	switch n.Method {
	case "options", "crlf":
	default:
		return bad("natping.method", "%q: must be options or crlf", n.Method)
	}
	if n.MaxMissed < 0 || n.MaxMissed > 100 {
		return bad("natping.max_missed", "%d: must be between 0 (never remove) and 100", n.MaxMissed)
	}
	return nil
}
