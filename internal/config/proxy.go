package config

import (
	"strings"
)

// Proxy configures request routing between devices.
type Proxy struct {
	Forking  string `yaml:"forking"`  // "parallel" or "serial"
	Outbound string `yaml:"outbound"` // SIP URI for foreign domains; empty refuses them
}

func (p Proxy) validate() error {
	switch p.Forking {
	case "parallel", "serial":
	default:
		return bad("proxy.forking", "%q: must be parallel or serial", p.Forking)
	}
	if o := p.Outbound; o != "" && !strings.HasPrefix(o, "sip:") && !strings.HasPrefix(o, "sips:") {
		return bad("proxy.outbound", "%q: must be a sip: or sips: URI", o)
	}
	return nil
}
