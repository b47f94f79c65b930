package proxy

import (
	"net/netip"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// Flow ownership between edges (docs/cluster.md, "Flow ownership").
//
// Edges that share one location store each see every binding, but a
// device's NAT pinhole or connection ends at the edge it registered
// through (the binding's Edge): only that edge's socket reaches it. So
// for a binding another edge owns this edge does not send to the device;
// it sends one branch per owning edge to that edge's internal address,
// with the Request-URI unchanged (the AOR) and a Route naming the owner
// that carries paramOwner and a MAC. The owner verifies the MAC, looks the
// AOR up itself and forks only to the bindings it owns, never to another
// edge: a hop is never handed on, so two edges whose views disagree
// cannot bounce a request between them. Both edges record-route, so the
// dialog's later requests pass through the owner, the only one that
// reaches the device.

// paramOwner marks pinhole's Route entry toward the owning edge; its
// value is the owner's edge id.
const paramOwner = "oe"

// sigOwner separates the owner hop's MAC from pinhole's other signed
// entries (sign.go).
const sigOwner = "oe"

var (
	mHopSent     = metrics.NewCounter(`pinhole_cluster_hops_total{way="sent"}`)
	mHopReceived = metrics.NewCounter(`pinhole_cluster_hops_total{way="received"}`)
	// mHopRefused: a Route entry asking for an owner's delivery whose MAC
	// does not verify, or that names another edge: answered 403.
	mHopRefused = metrics.NewCounter(`pinhole_cluster_hops_refused_total`)
	// mHopUnowned: a verified hop for an AOR of which this edge holds no
	// usable flow any more (the device moved, or lapsed): answered 480.
	mHopUnowned = metrics.NewCounter(`pinhole_cluster_hops_unowned_total`)
)

// ownerParts are what the owner hop's MAC covers: the request's Call-ID,
// the AOR it is for and the edge asked to deliver it. A captured entry
// therefore makes no edge deliver another call, to another AOR, or from
// another edge's sockets.
func ownerParts(callID, aor, edge string) []string {
	return []string{sigOwner, callID, aor, edge}
}

// ownerRoute is the Route entry that hands a request for aor to edge at
// addr.
func (p *Proxy) ownerRoute(callID, aor, edge string, addr netip.AddrPort) sip.Uri {
	return sip.Uri{
		Scheme: "sip",
		Host:   addr.Addr().String(),
		Port:   int(addr.Port()),
		UriParams: sip.HeaderParams{
			{K: "lr"},
			{K: paramOwner, V: edge},
			{K: paramSig, V: p.keys.Sign(ownerParts(callID, aor, edge)...)},
		},
	}
}

// verifyOwnerRoute reports whether mark, our own top Route entry, is an
// owner hop another edge wrote for req's AOR and this edge.
func (p *Proxy) verifyOwnerRoute(req *sip.Request, mark *sip.Uri, aor string) bool {
	edge, _ := mark.UriParams.Get(paramOwner)
	sig, _ := mark.UriParams.Get(paramSig)
	return edge != "" && edge == p.cfg.Edge && p.keys.Verify(sig, ownerParts(callID(req), aor, edge)...)
}

// ownedHere reports whether this edge delivers to b itself: it owns b, b
// records no owner (a box alone, or a binding from before owners), or b's
// owner is not among the edges this one knows, so no hop could reach it
// and the device is tried directly as before.
func (p *Proxy) ownedHere(b *location.Binding) bool {
	if b.Edge == "" || b.Edge == p.cfg.Edge {
		return true
	}
	_, known := p.cfg.Edges[b.Edge]
	return !known
}

// edgeTargets returns one target per other edge that owns some of
// bindings: the request goes to that edge's internal address over UDP,
// Request-URI unchanged, with a signed owner Route on top. Its q is the
// highest of the edge's bindings, so serial forking tries it with them.
func (p *Proxy) edgeTargets(req *sip.Request, aor string, bindings []location.Binding) []target {
	var ts []target
	seen := map[string]int{}
	for i := range bindings {
		b := &bindings[i]
		if p.ownedHere(b) {
			continue
		}
		if j, ok := seen[b.Edge]; ok {
			ts[j].q = max(ts[j].q, b.Q)
			continue
		}
		out := p.listenerFor(location.Flow{Transport: location.TransportUDP, Local: p.cfg.EdgeAddr})
		if out == nil {
			out = p.listenerOf("UDP")
		}
		if out == nil {
			mNoListener.Inc()
			continue
		}
		addr := p.cfg.Edges[b.Edge]
		seen[b.Edge] = len(ts)
		ts = append(ts, target{
			transport: "UDP",
			dest:      addr.String(),
			out:       out,
			q:         b.Q,
			path:      []sip.Uri{p.ownerRoute(callID(req), aor, b.Edge, addr)},
			edge:      b.Edge,
		})
	}
	return ts
}

// ownerAOR is the AOR an owner hop is for: the Request-URI's user in a
// served domain, as the sending edge looked it up.
func (p *Proxy) ownerAOR(req *sip.Request) (string, bool) {
	u := &req.Recipient
	if (u.Scheme != "sip" && u.Scheme != "sips") || u.User == "" || !p.served(u.Host) {
		return "", false
	}
	return AOR(u.User, u.Host), true
}

// ownedOnly keeps the bindings this edge delivers to itself.
func (p *Proxy) ownedOnly(bindings []location.Binding) []location.Binding {
	out := bindings[:0:0]
	for i := range bindings {
		if p.ownedHere(&bindings[i]) {
			out = append(out, bindings[i])
		}
	}
	return out
}

// withEdges adds the owner hops to the fork groups of this edge's own
// bindings, arranging them all again by q.
func (p *Proxy) withEdges(groups [][]target, edges []target) [][]target {
	if len(edges) == 0 {
		return groups
	}
	var ts []target
	for _, g := range groups {
		ts = append(ts, g...)
	}
	return p.forkGroups(append(ts, edges...))
}

// decideOwnerHop routes an initial request that arrived through an owner
// Route entry: it is delivered to this edge's own bindings of its AOR
// only if the entry's MAC verifies for this request, its AOR and this
// edge; otherwise whoever wrote it is refused, since following it would
// let an outsider make the edge call its devices.
func (p *Proxy) decideOwnerHop(req *sip.Request, d decision, mark *sip.Uri) decision {
	aor, ok := p.ownerAOR(req)
	if !ok || !p.verifyOwnerRoute(req, mark, aor) {
		mHopRefused.Inc()
		return decision{act: actReply, status: sip.StatusForbidden, reason: "Forbidden"}
	}
	d.act, d.aor, d.ownerHop = actLocate, aor, true
	// The sending edge authorised the caller; edges are trusted peers
	// (cluster.edges), so this challenges only a hop from elsewhere.
	d.auth = p.auth != nil && !d.trusted
	return d
}
