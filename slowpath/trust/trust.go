// Package trust decides which sources pinhole believes.
//
// An edge on a public interface meets three kinds of sender: outsiders,
// subscribers who prove themselves with digest credentials, and peers —
// the main registrar, the farm, other edges — that are known only by where
// their packets come from. What a message says about its own origin (From
// domain, Via host, Path, P-Asserted-Identity) is written by the sender, so
// no decision may rest on it. A List is the one place that says whether a
// source address is a peer; everything else in pinhole asks it.
package trust

import (
	"fmt"
	"net/netip"
	"slices"
)

// List is a set of source prefixes. The zero List trusts nobody. It is
// immutable once built and safe for concurrent use.
type List struct {
	// v4 and v6 are the prefixes of each family, masked, sorted and with
	// every prefix covered by a shorter one removed, so that Contains can
	// stop at the first prefix that starts after the address.
	v4, v6 []netip.Prefix
}

// Parse builds a List from prefixes ("10.0.0.0/24") and single addresses
// ("192.0.2.7", "[2001:db8::1]" without brackets), as the configuration
// writes them.
func Parse(entries []string) (*List, error) {
	ps := make([]netip.Prefix, 0, len(entries))
	for i, e := range entries {
		p, err := parseEntry(e)
		if err != nil {
			return nil, fmt.Errorf("trust entry %d %q: %w", i, e, err)
		}
		ps = append(ps, p)
	}
	return New(ps...), nil
}

func parseEntry(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not an address or prefix")
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("a zone names no source on the wire")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// New builds a List from prefixes; invalid ones are skipped.
func New(prefixes ...netip.Prefix) *List {
	l := &List{}
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		// An IPv4-mapped IPv6 prefix is an IPv4 one: sockets report
		// IPv4 peers both ways.
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		if p.Addr().Is4() {
			l.v4 = append(l.v4, p)
		} else {
			l.v6 = append(l.v6, p)
		}
	}
	l.v4, l.v6 = normalise(l.v4), normalise(l.v6)
	return l
}

// With returns a List holding l's prefixes and more: the configured peers
// plus those pinhole knows from elsewhere (farm nodes, main registrars).
func (l *List) With(more ...netip.Prefix) *List {
	if l == nil {
		return New(more...)
	}
	return New(append(append(slices.Clone(l.v4), l.v6...), more...)...)
}

// normalise sorts ps by first address and drops prefixes inside another.
func normalise(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits() // the wider first
	})
	out := ps[:0]
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Overlaps(p) {
			// Sorted by start with the wider first: an overlap here
			// means out[n-1] contains p.
			continue
		}
		out = append(out, p)
	}
	return slices.Clip(out)
}

// Contains reports whether a source address is a trusted peer.
func (l *List) Contains(a netip.Addr) bool {
	if l == nil || !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	ps := l.v6
	if a.Is4() {
		ps = l.v4
	}
	// The last prefix that starts at or before a is the only candidate:
	// the prefixes are disjoint and sorted.
	i, found := slices.BinarySearchFunc(ps, a, func(p netip.Prefix, a netip.Addr) int {
		return p.Addr().Compare(a)
	})
	if found {
		return true
	}
	return i > 0 && ps[i-1].Contains(a)
}

// Len reports how many disjoint prefixes the List holds.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.v4) + len(l.v6)
}

// String lists the prefixes, for logs.
func (l *List) String() string {
	if l == nil {
		return "[]"
	}
	return fmt.Sprint(append(slices.Clone(l.v4), l.v6...))
}
