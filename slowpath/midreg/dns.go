package midreg

import (
	"hash/fnv"
	"math/rand/v2"
	"net/netip"

	"github.com/pinhole-sip/pinhole/internal/resolve"
)

// Resolver is what the mid-registrar needs of DNS (internal/resolve): the
// answer kept for a name, without waiting; Peek reads it without counting
// a use (for IsUpstream, asked of every request the proxy sees).
type Resolver interface {
	Cached(d resolve.Dest) *resolve.Answer
	Peek(d resolve.Dest) *resolve.Answer
}

// targets returns the addresses to try for upstream i, in order. An
// upstream given by address has one. An upstream given by name has the
// targets of its cached answer for its transport, in RFC 2782 order
// (priority, then weight), drawn with a generator seeded by key: the
// REGISTERs of one Call-ID reach the same registrar node while the answer
// stands (a challenge's retry must meet the node that issued the nonce),
// and Call-IDs spread over the nodes by SRV weight. None while the name
// has no answer.
func (m *MidRegistrar) targets(i int, key string) []netip.AddrPort {
	u := m.cfg.Upstreams[i]
	if u.Addr.IsValid() {
		return []netip.AddrPort{u.Addr}
	}
	a := m.cfg.DNS.Cached(u.Name)
	if a == nil {
		return nil
	}
	var ts []resolve.Target
	for _, t := range a.Targets {
		if t.Transport == u.Transport {
			ts = append(ts, t)
		}
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	rnd := rand.New(rand.NewPCG(h.Sum64(), uint64(i)))
	out := make([]netip.AddrPort, 0, len(ts))
	for _, t := range resolve.Order(ts, rnd.IntN) {
		out = append(out, t.Addr)
	}
	return out
}

// IsUpstream reports whether a is an address of an upstream now: given by
// address, or in the cached answer of an upstream's name. The proxy
// believes requests from it like those of a configured peer.
func (m *MidRegistrar) IsUpstream(a netip.Addr) bool {
	a = a.Unmap()
	for _, u := range m.cfg.Upstreams {
		if u.Addr.IsValid() {
			if u.Addr.Addr().Unmap() == a {
				return true
			}
			continue
		}
		if ans := m.cfg.DNS.Peek(u.Name); ans != nil {
			for _, t := range ans.Targets {
				if t.Addr.Addr() == a {
					return true
				}
			}
		}
	}
	return false
}
