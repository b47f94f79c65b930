package dispatch

import (
	"hash/fnv"
	"strings"
)

// appendGroup appends the usable nodes of one priority group to out, the
// algorithm's choice first, then the others in the group's order starting
// after it (so the failover of a hashed key is as stable as its choice).
func (s *Set) appendGroup(out []*Node, g []*Node, req *Request) []*Node {
	up := 0
	for _, n := range g {
		if n.Usable() {
			up++
		}
	}
	if up == 0 {
		return out
	}
	first := s.pick(g, req)
	for i := range g {
		if n := g[(first+i)%len(g)]; n.Usable() {
			out = append(out, n)
		}
	}
	return out
}

// pick returns the index in g of the node the algorithm chooses; the
// caller skips forward from it to the next usable node.
func (s *Set) pick(g []*Node, req *Request) int {
	switch s.Algorithm {
	case HashUser:
		return hashIndex(req.User, len(g))
	case HashDomain:
		h := req.ToHost
		if h == "" {
			h = req.Host
		}
		return hashIndex(strings.ToLower(h), len(g))
	case HashCallID:
		return hashIndex(req.CallID, len(g))
	case Weighted:
		return s.weighted(g)
	case LeastCalls:
		return s.leastCalls(g)
	}
	return s.roundRobin(g)
}

// hashIndex maps a key onto n slots. The slot is taken over the whole
// configured group, not over the nodes that are up: a key keeps its node
// while others fail, and moves only while its own node is out: a
// conference must not be split over two nodes (docs/architecture.md,
// "Scaling a farm and keeping calls together").
func hashIndex(key string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// roundRobin takes the next usable node in turn.
func (s *Set) roundRobin(g []*Node) int {
	for range g {
		i := int(s.rr.Add(1)-1) % len(g)
		if g[i].Usable() {
			return i
		}
	}
	return 0
}

// weighted is smooth weighted round robin over the usable nodes of g:
// each node's current value grows by its weight, the largest wins and
// loses the total. Over sum(weights) picks each node gets exactly its
// weight, interleaved.
func (s *Set) weighted(g []*Node) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	total, best := 0, -1
	for i, n := range g {
		if !n.Usable() {
			continue
		}
		w := int(n.weight.Load())
		s.current[n.index] += w
		total += w
		if best < 0 || s.current[n.index] > s.current[g[best].index] {
			best = i
		}
	}
	if best < 0 {
		return 0
	}
	s.current[g[best].index] -= total
	return best
}

// leastCalls takes the usable node with the fewest calls; ties go round
// robin so that an idle farm still spreads.
func (s *Set) leastCalls(g []*Node) int {
	start := int(s.rr.Add(1)-1) % len(g)
	best := -1
	var min int64
	for k := range g {
		i := (start + k) % len(g)
		if !g[i].Usable() {
			continue
		}
		if c := g[i].calls.Load(); best < 0 || c < min {
			best, min = i, c
		}
	}
	if best < 0 {
		return 0
	}
	return best
}
