package config

import (
	"net/netip"
)

// Trust names the peers pinhole believes by their source address: the main
// registrar, farm nodes, other edges, carriers' SBCs (docs/security.md).
// Their requests are not challenged, and what they write about identity
// and routing (Path, P-Asserted-Identity) is kept; from anyone else it is
// not. Farm destinations and mid-registrar upstreams are trusted without
// being listed here.
type Trust struct {
	// Peers are prefixes ("10.0.0.0/24") or single addresses.
	Peers []string `yaml:"peers"`
}

func (t Trust) validate() error {
	for i, p := range t.Peers {
		if _, err := netip.ParsePrefix(p); err == nil {
			continue
		}
		a, err := netip.ParseAddr(p)
		if err != nil || a.Zone() != "" {
			return bad("trust.peers", "entry %d (%q) is not an address or a prefix such as 10.0.0.0/24", i, p)
		}
	}
	return nil
}
