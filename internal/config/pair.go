package config

import "net/netip"

// validatePair checks what an active/standby pair (cluster.vip) needs of
// other sections: a shared store, or the standby holds none of the active
// box's bindings; and a UDP listener on the address itself, since requests
// to devices leave from the listener their REGISTER reached, and one bound
// to a wildcard would send them from the box's own address, which the
// devices' NATs drop (docs/cluster.md).
func (c *Config) validatePair() error {
	if c.Cluster.VIP == "" {
		return nil
	}
	vip, err := netip.ParseAddr(c.Cluster.VIP)
	if err != nil {
		return nil // Cluster.validate says so
	}
	if c.Location.Backend != "redis" {
		return bad("cluster.vip", "needs location.backend redis: the standby must hold the active box's bindings")
	}
	for _, a := range c.Listen.UDP {
		if ap, err := netip.ParseAddrPort(a); err == nil && ap.Addr().Unmap() == vip.Unmap() {
			return nil
		}
	}
	return bad("cluster.vip", "%s is on no listen.udp address: devices must register to it, so that requests to them leave from it", vip)
}
