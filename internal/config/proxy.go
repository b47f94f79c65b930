package config

import (
	"strings"
)

// Proxy configures request routing between devices.
type Proxy struct {
	Forking  string `yaml:"forking"`  // "parallel" or "serial"
	Outbound string `yaml:"outbound"` // SIP URI for foreign domains; empty refuses them
	// MaxBreadth bounds the parallel branches one request may cause,
	// counting the copies that come back through pinhole (RFC 5393): the
	// Max-Breadth given to a request that arrives without one.
	MaxBreadth int `yaml:"max_breadth"`
}

func (p Proxy) validate() error {
	switch p.Forking {
	case "parallel", "serial":
	default:
		return bad("proxy.forking", "%q: must be parallel or serial", p.Forking)
	}
	if p.MaxBreadth < 1 || p.MaxBreadth > 1000 {
		return bad("proxy.max_breadth", "%d: must be between 1 and 1000", p.MaxBreadth)
	}
	if o := p.Outbound; o != "" && !strings.HasPrefix(o, "sip:") && !strings.HasPrefix(o, "sips:") {
		return bad("proxy.outbound", "%q: must be a sip: or sips: URI", o)
	}
	return nil
}
