package proxy

import (
	"encoding/hex"
	"hash/fnv"
	"strconv"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"
)

// Loops and fan-out. pinhole forks to every contact of an AOR; a request
// that comes back to it (a Path or contact naming pinhole itself, two
// proxies pointing at each other) would fork again at every pass. Two
// limits stop that: loop detection (RFC 3261 §16.3 step 4) ends a request
// that returns unchanged, and Max-Breadth (RFC 5393) bounds the branches
// one request and all its forwarded copies may start, whatever route they
// take. Max-Forwards alone allows 70 passes of 3 branches each.

var (
	mLoops       = metrics.NewCounter(`pinhole_proxy_loops_detected_total`)
	mBreadthCut  = metrics.NewCounter(`pinhole_proxy_max_breadth_total{action="branches_cut"}`)
	mBreadthDeny = metrics.NewCounter(`pinhole_proxy_max_breadth_total{action="refused"}`)
)

// StatusMaxBreadthExceeded is RFC 5393 §5.1's 440.
const StatusMaxBreadthExceeded = 440

// loopSep separates the fields of pinhole's branch: the random part, the
// loop hash (RFC 3261 §16.6 step 8 lets the branch carry it) and, when
// signed, the flow and MAC (branch.go).
const loopSep = '.'

// loopHash sums what stays the same when a request passes pinhole again
// unchanged (RFC 3261 §16.6 step 8): the Request-URI and route set as
// received, the dialog identifiers, the CSeq number, Proxy-Require and
// Proxy-Authorization. The top Via is left out: on a loop it is the
// previous pass's own. A spiral — the same request sent back with a new
// Request-URI, as a registrar or farm in front of pinhole does — sums
// differently and is not a loop.
func loopHash(req *sip.Request) string {
	return loopSum(req, "Route", "Proxy-Require", "Proxy-Authorization")
}

// cancelLoopHash is the loop hash of a signed branch: loopHash without
// Proxy-Require and Proxy-Authorization, which the INVITE may carry and
// its CANCEL does not (RFC 3261 §9.1 copies the Route set only), so that
// a pinhole without the INVITE can recompute the branch from the CANCEL
// (cancel.go). A request that comes back with other credentials and
// nothing else changed is then taken for a loop: a proxy that adds
// credentials to a request and sends it back is not a peer pinhole has.
func cancelLoopHash(req *sip.Request) string {
	return loopSum(req, "Route")
}

func loopSum(req *sip.Request, headers ...string) string {
	h := fnv.New64a()
	w := func(s string) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	w(req.Recipient.String())
	if f := req.From(); f != nil {
		w(f.Params.GetOr("tag", ""))
	}
	if t := req.To(); t != nil {
		w(t.Params.GetOr("tag", ""))
	}
	if id := req.CallID(); id != nil {
		w(id.Value())
	}
	if cs := req.CSeq(); cs != nil {
		w(strconv.FormatUint(uint64(cs.SeqNo), 10))
	}
	for _, name := range headers {
		for _, hd := range req.GetHeaders(name) {
			w(hd.Value())
		}
	}
	var sum [8]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}

// looped reports whether req passed pinhole before unchanged: one of its
// Vias is pinhole's and carries the loop hash of req itself (RFC 3261
// §16.3 step 4).
func (p *Proxy) looped(req *sip.Request) bool {
	hash, signedHash := "", ""
	for _, h := range req.GetHeaders("Via") {
		v, ok := h.(*sip.ViaHeader)
		if !ok || !p.ourSentBy(v) {
			continue
		}
		b, ok := parseBranch(v.Params.GetOr("branch", ""))
		if !ok || b.loop == "" {
			continue
		}
		if b.mac != "" {
			if signedHash == "" {
				signedHash = cancelLoopHash(req)
			}
			if b.loop == signedHash {
				return true
			}
			continue
		}
		if hash == "" {
			hash = loopHash(req)
		}
		if b.loop == hash {
			return true
		}
	}
	return false
}

// ourSentBy reports whether a Via names one of pinhole's listeners as
// branchRequest writes them.
func (p *Proxy) ourSentBy(v *sip.ViaHeader) bool {
	for i := range p.listeners {
		l := &p.listeners[i]
		if v.Port == l.Port && v.Host == l.Host {
			return true
		}
	}
	return false
}

// branchID is the branch of one forwarded request: RFC 3261's magic
// cookie, randomness unique to the branch, and the loop hash when known.
func branchID(loop string) string {
	if loop == "" {
		return sip.GenerateBranchN(16)
	}
	return sip.GenerateBranchN(12) + string(loopSep) + loop
}

// breadth is the Max-Breadth a request arrived with, or the configured
// default when it has none (RFC 5393 §5.3.1). ok is false for a value
// that is not a number.
func (p *Proxy) breadth(req *sip.Request) (n int, ok bool) {
	h := req.GetHeader("Max-Breadth")
	if h == nil {
		return p.cfg.MaxBreadth, true
	}
	n, err := strconv.Atoi(h.Value())
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// shareBreadth fits groups into a Max-Breadth of mb and returns each
// branch's share (RFC 5393 §5.3.2): a parallel group gets mb split among
// its branches, cut to mb branches when it has more (the best first,
// targetGroups orders them); serial groups run one after another and each
// may use all of it.
func shareBreadth(groups [][]target, mb int) ([][]target, [][]int) {
	shares := make([][]int, len(groups))
	for gi, g := range groups {
		if len(g) > mb {
			mBreadthCut.Add(len(g) - mb)
			g = g[:mb]
			groups[gi] = g
		}
		s := make([]int, len(g))
		for i := range s {
			s[i] = mb / len(g)
			if i < mb%len(g) {
				s[i]++
			}
		}
		shares[gi] = s
	}
	return groups, shares
}
