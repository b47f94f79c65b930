package dispatch

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/pinhole-sip/pinhole/internal/resolve"
)

// Resolver is what the dispatcher needs of DNS (internal/resolve): the
// answer kept for a name, without waiting. nil when no name is configured.
type Resolver interface {
	Cached(d resolve.Dest) *resolve.Answer
}

// nameDest is a destination configured by name: its nodes are the
// targets its DNS answer holds at the time.
type nameDest struct {
	dest resolve.Dest
	cfg  DestinationConfig
}

// view is the nodes a set routes over at one time and the generations of
// the DNS answers they came from. A view never changes: a new answer
// makes a new view.
type view struct {
	nodes  []*Node   // in use: configured by address, then resolved
	groups [][]*Node // nodes by priority, lowest first
	gens   []uint64  // per name, the answer generation seen; 0 none
}

// index finds nodes by address and by ID. Copied on change.
type index struct {
	nodesBy map[netip.Addr][]*Node
	byID    map[string]*Node
}

// current returns s's view, rebuilding it first when the answer of one of
// its names changed. Reading the answers is a map read and an atomic load
// per name: the request path never waits for DNS (the resolver's
// refresher does).
func (d *Dispatcher) current(s *Set) *view {
	v := s.view.Load()
	if len(s.names) == 0 || !d.answersChanged(s, v) {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v = s.view.Load(); !d.answersChanged(s, v) {
		return v // another request rebuilt it
	}
	v = d.buildView(s)
	s.view.Store(v)
	mViewRebuilt.Inc()
	return v
}

func (d *Dispatcher) answersChanged(s *Set, v *view) bool {
	for i, nd := range s.names {
		if gen(d.dns.Cached(nd.dest)) != v.gens[i] {
			return true
		}
	}
	return false
}

func gen(a *resolve.Answer) uint64 {
	if a == nil {
		return 0
	}
	return a.Gen
}

// buildView makes s's view from its configured nodes and the current
// answers of its names. A resolved target keeps its node (and so its
// health and its call count) for as long as the dispatcher lives; a node
// whose target left the answer is drained. The caller holds s.mu, or s is
// not published yet.
func (d *Dispatcher) buildView(s *Set) *view {
	v := &view{nodes: slices.Clone(s.Nodes), gens: make([]uint64, len(s.names))}
	inUse := map[*Node]bool{}
	var added []*Node
	for i, nd := range s.names {
		a := d.dns.Cached(nd.dest)
		v.gens[i] = gen(a)
		if a == nil {
			continue
		}
		for _, t := range a.Targets {
			if t.Transport != "UDP" && t.Transport != "TCP" {
				continue // pinhole relays to a farm over UDP and TCP only
			}
			target := Target{Addr: t.Addr, Transport: t.Transport}
			key := nd.dest.String() + " " + target.String()
			n := s.resolved[key]
			if n == nil {
				n = d.newNode(s, target, nd.cfg, nd.dest.String())
				s.resolved[key] = n
				added = append(added, n)
			}
			// RFC 2782: the SRV weight shares traffic inside a priority,
			// the configured weight scales a whole name against others.
			n.Weight = int(t.Weight) * max(nd.cfg.Weight, 1)
			n.weight.Store(int64(n.Weight))
			n.srvPriority = int(t.Priority)
			if inUse[n] {
				continue
			}
			inUse[n] = true
			v.nodes = append(v.nodes, n)
		}
	}
	for _, n := range s.resolved {
		n.drained.Store(!inUse[n])
	}
	d.addToIndex(added)
	v.groups = groupByPriority(v.nodes)
	return v
}

// groupByPriority splits nodes by (configured priority, SRV priority),
// lowest first, each group in the order of nodes.
func groupByPriority(nodes []*Node) [][]*Node {
	sorted := slices.Clone(nodes)
	slices.SortStableFunc(sorted, func(a, b *Node) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.srvPriority, b.srvPriority))
	})
	var groups [][]*Node
	for i, n := range sorted {
		if i == 0 || n.Priority != sorted[i-1].Priority || n.srvPriority != sorted[i-1].srvPriority {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], n)
	}
	return groups
}

// addToIndex makes nodes findable by address and ID.
func (d *Dispatcher) addToIndex(nodes []*Node) {
	if len(nodes) == 0 {
		return
	}
	d.indexMu.Lock()
	defer d.indexMu.Unlock()
	old := d.index.Load()
	next := &index{nodesBy: make(map[netip.Addr][]*Node, len(old.nodesBy)), byID: make(map[string]*Node, len(old.byID))}
	for a, ns := range old.nodesBy {
		next.nodesBy[a] = slices.Clone(ns)
	}
	for id, n := range old.byID {
		next.byID[id] = n
	}
	for _, n := range nodes {
		a := n.Target.Addr.Addr()
		next.nodesBy[a] = append(next.nodesBy[a], n)
		next.byID[n.ID] = n
	}
	d.index.Store(next)
}

// Current returns the nodes of s in use now: those configured by address
// and those its names resolve to.
func (d *Dispatcher) Current(s *Set) []*Node { return slices.Clone(d.current(s).nodes) }

// Names returns every destination configured by name, once, so the
// caller can resolve them before the first request.
func (cfg Config) Names() []resolve.Dest {
	var out []resolve.Dest
	seen := map[string]bool{}
	for _, s := range cfg.Sets {
		for _, dc := range s.Destinations {
			if _, err := ParseURI(dc.URI); err == nil {
				continue
			}
			if d, err := resolve.ParseURI(dc.URI); err == nil && !seen[d.String()] {
				seen[d.String()] = true
				out = append(out, d)
			}
		}
	}
	return out
}
