package slowpath

import (
	"net/netip"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/location"
)

// Edges sharing one location store (docs/cluster.md) each hold every
// binding, but a binding's NAT pinhole or connection ends at one of them:
// its owner, the edge it registered through (Binding.Edge). What touches
// the device or writes the binding's end runs once per binding, on the
// box that acts for it: the NAT pinger, the removal of a lapsed binding
// and the mid-registrar's upstream de-registration all ask ActsFor.

// ActsFor reports whether this box pings b, lapses it and de-registers it
// upstream: b is this edge's (cluster.edge_id), or records no owner (a
// box alone, or a binding written before owners were recorded). It is
// the one place that decides; an active/standby pair adds "and this box
// holds the virtual address" here.
//
// A binding whose owner is gone for good is acted for by nobody: no edge
// pings it, and it lapses from every view at its expiry without an
// upstream de-registration, Redis removing its key an hour later (PXAT).
// The device re-registers through a live edge (its registration fails or
// its NAT binding closes), which makes that edge the owner.
func (s *Server) ActsFor(b location.Binding) bool {
	return b.Edge == "" || b.Edge == s.cfg.Cluster.EdgeID
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
