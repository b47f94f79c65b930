package config

import (
	"net/netip"
)

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Listen string `yaml:"listen"` // empty: no endpoint
}

func (m Metrics) validate() error {
	if l := m.Listen; l != "" {
		if _, err := netip.ParseAddrPort(l); err != nil {
			return bad("metrics.listen", "%q is not an IP:port: %v", l, err)
		}
	}
	return nil
}
