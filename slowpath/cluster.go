package slowpath

import (
	"fmt"
	"net/netip"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/vip"
)

// Edges sharing one location store (docs/cluster.md) each hold every
// binding, but a binding's NAT pinhole or connection ends at one of them:
// its owner, the edge it registered through (Binding.Edge). What touches
// the device or writes the binding's end runs once per binding, on the
// box that acts for it: the NAT pinger, the removal of a lapsed binding
// and the mid-registrar's upstream de-registration all ask ActsFor. The
// two boxes of an active/standby pair are one edge; of them, the box
// holding the virtual address acts.

// ActsFor reports whether this box pings b, lapses it and de-registers it
// upstream: b is this edge's (cluster.edge_id), or records no owner (a
// box alone, or a binding written before owners were recorded), and, of
// an active/standby pair (cluster.vip), this box holds the virtual
// address. It is the one place that decides, so that each binding has
// these done once: never by two boxes, and never by none across a
// failover (the standby holds its edge's lapsed bindings meanwhile,
// holds).
//
// A binding whose owner is gone for good is acted for by nobody: no edge
// pings it, and it lapses from every view at its expiry without an
// upstream de-registration, Redis removing its key an hour later (PXAT).
// The device re-registers through a live edge (its registration fails or
// its NAT binding closes), which makes that edge the owner.
//
// Of a pair, only the box holding the address acts: the other receives
// none of the devices' traffic, and could not send from the address
// their NAT pinholes were opened toward.
//
// It is called under a location shard's lock and per binding by the
// pinger: it must stay a few loads, and never call the store.
func (s *Server) ActsFor(b location.Binding) bool {
	return s.owns(b) && s.active()
}

// owns reports whether b is this edge's: its owner, or no owner recorded.
func (s *Server) owns(b location.Binding) bool {
	return b.Edge == "" || b.Edge == s.cfg.Cluster.EdgeID
}

// active reports whether this box acts for its edge: always, outside an
// active/standby pair; while it holds the virtual address, in one.
func (s *Server) active() bool { return s.vip == nil || s.vip.Active() }

// holds reports whether the location store keeps b in its view past its
// expiry (location.Options.Holds): b is this edge's and this box is the
// standby of its pair, so the active box lapses it, or this box will
// after a failover. Another edge's lapsed bindings leave quietly instead
// (ActsFor): their owner writes the removal.
func (s *Server) holds(b location.Binding) bool {
	return s.owns(b) && !s.active()
}

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

func (s *Server) stopVIP() {
	if s.vip != nil {
		s.vip.Close()
	}
}

// otherEdges are the internal addresses of the other edges by id, where
// requests for the devices they own are handed (slowpath/proxy/edges.go).
func otherEdges(c config.Cluster) map[string]netip.AddrPort {
	out := make(map[string]netip.AddrPort, len(c.Edges))
	for _, e := range c.Edges {
		if e.ID == c.EdgeID {
			continue
		}
		if ap, err := netip.ParseAddrPort(e.Address); err == nil { // validated by config
			out[e.ID] = ap
		}
	}
	return out
}

// edgePeers are the prefixes of every edge's internal address: edges are
// trusted peers of one another (their hops are not challenged and keep
// identity headers; the caller was authorised where it entered).
func edgePeers(c config.Cluster) []netip.Prefix {
	var out []netip.Prefix
	for _, e := range c.Edges {
		if ap, err := netip.ParseAddrPort(e.Address); err == nil {
			out = append(out, netip.PrefixFrom(ap.Addr(), ap.Addr().BitLen()))
		}
	}
	return out
}

// edgeAddr is this edge's own address in cluster.edges (invalid when it
// is not listed): hops to the other edges leave from it.
func edgeAddr(c config.Cluster) netip.AddrPort {
	for _, e := range c.Edges {
		if e.ID == c.EdgeID {
			ap, _ := netip.ParseAddrPort(e.Address)
			return ap
		}
	}
	return netip.AddrPort{}
}
