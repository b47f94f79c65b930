package config

import (
	"net/netip"
)

// Cluster places this box among the other edges of one deployment
// (docs/cluster.md): which edge it is, where every edge takes the
// requests the others hand it, and the virtual address an active/standby
// pair shares. Left empty, pinhole is one box alone and owns every binding.
type Cluster struct {
	// EdgeID names this edge; every binding registered through it records
	// the id as its owner. The two boxes of an active/standby pair share
	// one id: they are one edge to the devices and to the other edges.
	EdgeID string `yaml:"edge_id"`
	// Edges lists every edge of the deployment, this one included, with
	// the internal address (IP:port, UDP) where it takes requests that
	// other edges hand it for the devices it holds.
	Edges []Edge `yaml:"edges"`
	// VIP is the virtual address an active/standby pair shares (moved by
	// keepalived); when set, this box pings devices, lapses bindings and
	// de-registers them upstream only while the address is on one of its
	// interfaces.
	VIP string `yaml:"vip"`
}

// Edge is one edge of the deployment.
type Edge struct {
	ID      string `yaml:"id"`
	Address string `yaml:"address"`
}

func (c *Cluster) validate() error {
	if c.VIP != "" {
		if _, err := netip.ParseAddr(c.VIP); err != nil {
			return bad("cluster.vip", "%q: must be an IP address", c.VIP)
		}
		if c.EdgeID == "" {
			return bad("cluster.vip", "needs cluster.edge_id (both boxes of the pair share it)")
		}
	}
	if len(c.Edges) == 0 {
		return nil
	}
	if c.EdgeID == "" {
		return bad("cluster.edge_id", "must be set when cluster.edges lists edges")
	}
	seen := make(map[string]bool, len(c.Edges))
	for _, e := range c.Edges {
		if e.ID == "" {
			return bad("cluster.edges", "an edge has no id")
		}
		if seen[e.ID] {
			return bad("cluster.edges", "%q listed twice", e.ID)
		}
		seen[e.ID] = true
		ap, err := netip.ParseAddrPort(e.Address)
		if err != nil || ap.Port() == 0 {
			return bad("cluster.edges", "%s: address %q must be IP:port", e.ID, e.Address)
		}
	}
	if !seen[c.EdgeID] {
		return bad("cluster.edge_id", "%q is not among cluster.edges", c.EdgeID)
	}
	return nil
}
