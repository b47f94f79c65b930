package dispatch

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/pinhole-sip/pinhole/internal/config"
)

// FromConfig turns the validated dispatch section of pinhole's
// configuration into a Config. internal/config has checked the form of
// every value and names the key and line of a mistake; New checks the
// meaning again.
func FromConfig(c config.Dispatch) (Config, error) {
	out := Config{
		Register: c.Register,
		Probe: ProbeConfig{
			Interval: c.Probe.Interval, Timeout: c.Probe.Timeout,
			DownAfter: c.Probe.DownAfter, UpAfter: c.Probe.UpAfter,
		},
		Failover: FailoverConfig{
			Codes: c.Failover.Codes, DownOn503: c.Failover.DownOn503,
			Timeout: c.Failover.Timeout, MaxTries: c.Failover.MaxTries,
		},
	}
	for _, s := range c.Sets {
		alg, err := ParseAlgorithm(s.Algorithm)
		if err != nil {
			return Config{}, fmt.Errorf("dispatch set %s: %w", s.Name, err)
		}
		sc := SetConfig{Name: s.Name, Algorithm: alg}
		for _, d := range s.Destinations {
			sc.Destinations = append(sc.Destinations, DestinationConfig{URI: d.URI, Weight: d.Weight, Priority: d.Priority, Attrs: d.Attrs})
		}
		out.Sets = append(out.Sets, sc)
	}
	for i, r := range c.Rules {
		rule := Rule{Set: r.Set, Methods: r.Methods, Domains: r.Domains, Prefix: r.Prefix}
		for _, p := range r.Sources {
			pfx, err := netip.ParsePrefix(strings.TrimSpace(p))
			if err != nil {
				return Config{}, fmt.Errorf("dispatch rule %d: source %q: %w", i, p, err)
			}
			rule.Sources = append(rule.Sources, pfx.Masked())
		}
		out.Rules = append(out.Rules, rule)
	}
	return out, nil
}

// Limit is the largest device-bound UDP request sent as it is: the
// configured MTU minus its headroom (RFC 3261 §18.1.1 uses 200 bytes of
// headroom below the path MTU); zero when there is no limit.
func Limit(o config.DispatchOversize) int {
	if o.MTU == 0 {
		return 0
	}
	return o.MTU - o.Headroom
}
