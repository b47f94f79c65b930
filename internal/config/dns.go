package config

import (
	"net/netip"
	"time"
)

// DNS configures how destinations given by name are resolved: farm
// destinations (dispatch.sets), main registrars (midregistrar.upstreams)
// and the outbound proxy (proxy.outbound), by RFC 3263 with NAPTR, SRV
// and A (docs/dns.md). Answers are cached and refreshed in the background.
type DNS struct {
	// Servers are name servers, IP or IP:port, asked in order; empty: the
	// nameserver lines of /etc/resolv.conf.
	Servers []string `yaml:"servers"`
	// Timeout bounds one query to one server.
	Timeout time.Duration `yaml:"timeout"`
	// MinTTL and MaxTTL clamp the TTL an answer is kept for.
	MinTTL time.Duration `yaml:"min_ttl"`
	MaxTTL time.Duration `yaml:"max_ttl"`
	// NegativeTTL is how long "no such name" or "no records" is kept.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// IPv6 asks AAAA besides A.
	IPv6 bool `yaml:"ipv6"`
}

func (d DNS) validate() error {
	for i, s := range d.Servers {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			if ap.Port() == 0 || ap.Addr().IsUnspecified() {
				return bad("dns.servers", "entry %d: %q: want a concrete address and port", i, s)
			}
			continue
		}
		if a, err := netip.ParseAddr(s); err != nil || a.IsUnspecified() {
			return bad("dns.servers", "entry %d: %q: want IP or IP:port", i, s)
		}
	}
	if d.Timeout < 100*time.Millisecond || d.Timeout > 10*time.Second {
		return bad("dns.timeout", "%s: must be between 100ms and 10s", d.Timeout)
	}
	// DNS counts TTLs in seconds (RFC 1035 §3.2.1).
	if d.MinTTL < time.Second {
		return bad("dns.min_ttl", "%s: must be at least 1s", d.MinTTL)
	}
	if d.MaxTTL < d.MinTTL || d.MaxTTL > 24*time.Hour {
		return bad("dns.max_ttl", "%s: must be between min_ttl %s and 24h", d.MaxTTL, d.MinTTL)
	}
	if d.NegativeTTL < time.Second || d.NegativeTTL > time.Hour {
		return bad("dns.negative_ttl", "%s: must be between 1s and 1h", d.NegativeTTL)
	}
	return nil
}
