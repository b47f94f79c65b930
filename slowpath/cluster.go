package slowpath

import (
	"fmt"
	"net/netip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/vip"
)

// startVIP follows cluster.vip, when set: this box is one of an
// active/standby pair and acts only while it holds the address.
func (s *Server) startVIP() error {
	if s.cfg.Cluster.VIP == "" {
		return nil
	}
	addr, err := netip.ParseAddr(s.cfg.Cluster.VIP) // validated by config
	if err != nil {
		return fmt.Errorf("cluster.vip: %w", err)
	}
	s.vip, err = vip.Start(vip.Options{Addr: addr, Log: s.log})
	return err
}

// ActsFor reports whether this box acts for b: pings its device
// (natping), lapses it and de-registers it upstream (the location store's
// expiry, the mid-registrar). It is the one place that decides, so that
// across a failover each binding has these done once: never by both boxes
// of a pair, never by neither.
//
// Of an active/standby pair (cluster.vip) only the box holding the virtual
// address acts: the other receives none of the devices' traffic, and its
// requests could not leave from the address their NAT pinholes were opened
// toward. A box alone acts for every binding.
//
// It is called under a location shard's lock and per binding by the
// pinger: it must stay a few loads, and never call the store.
func (s *Server) ActsFor(b location.Binding) bool {
	if s.vip != nil && !s.vip.Active() {
		return false
	}
	return true
}

func (s *Server) stopVIP() {
	if s.vip != nil {
		s.vip.Close()
	}
}
