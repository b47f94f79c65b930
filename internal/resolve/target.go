package resolve

import (
	"cmp"
	"math/rand/v2"
	"net/netip"
	"slices"
)

// Target is one address a destination resolved to.
type Target struct {
	Addr      netip.AddrPort
	Transport string // UDP, TCP or TLS
	// Priority and Weight come from the SRV record (RFC 2782); a target
	// found without SRV has priority 0 and weight 1.
	Priority uint16
	Weight   uint16
}

// Answer is what a destination resolved to at one time. It is never
// changed once published: a refresh publishes a new one.
type Answer struct {
	Targets []Target
	// Gen changes whenever Targets do (not on a refresh that returned the
	// same targets), so a user of the answer rebuilds only on a change.
	Gen uint64
}

func compareTargets(a, b Target) int {
	return cmp.Or(
		cmp.Compare(a.Priority, b.Priority),
		a.Addr.Compare(b.Addr),
		cmp.Compare(a.Transport, b.Transport),
		cmp.Compare(a.Weight, b.Weight),
	)
}

// Order returns the targets in the order to try them (RFC 2782, "Usage
// rules"): priority groups lowest first; within a group a target is drawn
// at random with a chance proportional to its weight, then the next from
// those left, and so on. Weight 0 targets come after every weighted one
// of their group, in random order, so they get traffic only when the
// others fail. rnd is rand.IntN's shape, for tests; nil uses math/rand/v2.
func Order(ts []Target, rnd func(n int) int) []Target {
	if rnd == nil {
		rnd = rand.IntN
	}
	out := slices.Clone(ts)
	slices.SortStableFunc(out, func(a, b Target) int { return cmp.Compare(a.Priority, b.Priority) })
	for start := 0; start < len(out); {
		end := start
		for end < len(out) && out[end].Priority == out[start].Priority {
			end++
		}
		orderGroup(out[start:end], rnd)
		start = end
	}
	return out
}

// orderGroup draws the targets of one priority group in place.
func orderGroup(g []Target, rnd func(int) int) {
	for i := range g {
		total := 0
		for _, t := range g[i:] {
			total += int(t.Weight)
		}
		if total == 0 {
			// Only weight 0 left: any order (RFC 2782 lets them all be equal).
			j := i + rnd(len(g)-i)
			g[i], g[j] = g[j], g[i]
			continue
		}
		pick := rnd(total)
		for j := i; j < len(g); j++ {
			if pick < int(g[j].Weight) {
				g[i], g[j] = g[j], g[i]
				break
			}
			pick -= int(g[j].Weight)
		}
	}
}
