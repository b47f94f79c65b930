package proxy

import (
	"net/netip"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"
)

// Stray CANCELs (and ACKs, strayAck): CANCELs that match no INVITE
// server transaction of this process (sipgo's transaction layer answers
// those that do, and fork.go cancels the branches). RFC 3261 §16.10 has a proxy without the response
// context forward such a CANCEL statelessly, since it may have forwarded
// the INVITE statelessly. On an active/standby pair that is the caller
// hanging up a call that was ringing when the active box died: its INVITE
// went to the callee under a branch the standby never saw.
//
// A CANCEL is matched by the callee with the branch of the INVITE it
// cancels (§9.1, §17.2.3). pinhole's signed branches are a keyed hash of
// the INVITE and the target (branchToken), so any pinhole holding the
// route key recomputes them from the CANCEL, which repeats the INVITE's
// top Via, Call-ID, From, CSeq number, Request-URI and Route set: routed
// as its INVITE would be, the CANCEL reaches each target under the
// branch the INVITE had there. The callee's 487 then comes back as a
// stray response (stray.go).
//
// pinhole answers the CANCEL 200 itself, as the stateful proxy whose
// place it takes would have (§16.10): a stateless forward would return
// whichever target's answer came first, and a target the INVITE never
// reached answers 481. The 200 says only that the CANCEL was received
// (§9.2); the INVITE's final response still comes from the callee.
//
// What a sender without the key can make pinhole send this way: CANCELs
// to the devices an INVITE from it would reach, under a branch it cannot
// predict, which match nothing unless it repeats the identifiers of an
// INVITE that is ringing. A CANCEL whose INVITE would have had to
// authenticate is not forwarded (a CANCEL cannot be challenged, §22.1),
// so an outsider never receives a signed branch it could not have had by
// sending the INVITE; neither is one that no signed branch could have
// been made for (another route than the location store, no address to
// return to, topology hiding).

// strayCounts are the results of a stray CANCEL or ACK, the result
// label of pinhole_proxy_stray_cancels_total and
// pinhole_proxy_stray_acks_total (docs/metrics.md).
type strayCounts struct {
	// forwarded: sent to at least one target (a CANCEL is answered 200).
	forwarded *metrics.Counter
	// not_located: its INVITE would not go to the location store's
	// bindings (farm, outbound, in-dialog, refused, unknown user).
	notLocated *metrics.Counter
	// unauthenticated: its INVITE would have been challenged.
	unauth *metrics.Counter
	// unsigned: no target's branch would have been signed.
	unsigned *metrics.Counter
	// unsent: no target could be written to without a DNS look-up or a
	// new connection, or every write failed.
	unsent *metrics.Counter
}

func newStrayCounts(name string) strayCounts {
	c := func(result string) *metrics.Counter {
		return metrics.NewCounter(name + `{result="` + result + `"}`)
	}
	return strayCounts{
		forwarded: c("forwarded"), notLocated: c("not_located"), unauth: c("unauthenticated"),
		unsigned: c("unsigned"), unsent: c("unsent"),
	}
}

var (
	mStrayCancels = newStrayCounts("pinhole_proxy_stray_cancels_total")
	mStrayAcks    = newStrayCounts("pinhole_proxy_stray_acks_total")
)

// strayCancel handles a CANCEL no server transaction took: forwarded to
// the targets of its INVITE and answered 200, or answered as before
// (481, or 483/482 from §16.3) and counted.
func (p *Proxy) strayCancel(req *sip.Request, tx sip.ServerTransaction) {
	inv := asInvite(req)
	d := p.decide(inv)
	if d.act == actReply && (d.status == sip.StatusTooManyHops || d.status == sip.StatusLoopDetected) {
		p.reply(req, tx, d.status, d.reason)
		return
	}
	if !p.forwardStray(req, inv, &d, &mStrayCancels) {
		p.reply(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	p.reply(req, tx, sip.StatusOK, "OK")
}

// strayAck handles an ACK no transaction took and no dialog of ours
// claims: the caller's ACK for a non-2xx final response, which is hop by
// hop (RFC 3261 §17.1.1.3) and which the stateful proxy that sent the
// INVITE would have absorbed, having sent its own ACK downstream. On the
// standby that proxy's transaction is gone, and so is its ACK: the
// callee would retransmit its final response until its timer H (32 s).
// The caller's ACK repeats the INVITE's Request-URI, top Via, Call-ID,
// From and CSeq number, so it goes on, statelessly like a stray CANCEL,
// under each target's INVITE branch, which the callee's INVITE server
// transaction matches (§17.2.3). It reports whether it went anywhere.
func (p *Proxy) strayAck(req *sip.Request) bool {
	inv := asInvite(req)
	// The INVITE had no To tag; the ACK has the callee's.
	if to := inv.To(); to != nil {
		to = sip.HeaderClone(to).(*sip.ToHeader)
		to.Params.Remove("tag")
		inv.ReplaceHeader(to)
	}
	d := p.decide(inv)
	return p.forwardStray(req, inv, &d, &mStrayAcks)
}

// asInvite is the INVITE that req, its CANCEL or ACK, repeats (§9.1,
// §17.1.1.3): routed as that INVITE was, and its signed branches
// recomputed from it.
func asInvite(req *sip.Request) *sip.Request {
	inv := req.Clone()
	inv.Method = sip.INVITE
	return inv
}

// forwardStray sends req to every target inv, its INVITE, would reach
// under a signed branch, with that branch, and counts the result in n.
// It reports whether req went to at least one target.
func (p *Proxy) forwardStray(req, inv *sip.Request, d *decision, n *strayCounts) bool {
	if d.act != actLocate {
		n.notLocated.Inc()
		return false
	}
	if d.auth {
		n.unauth.Inc()
		return false
	}
	groups, _, _ := p.locate(inv, d)
	if groups == nil {
		n.notLocated.Inc()
		return false
	}
	base := p.prepare(req, d)
	c := &call{p: p, req: inv, fromFarm: d.fromFarm} // for statelessSafe
	signed, sent := 0, 0
	for _, g := range groups {
		for i := range g {
			t := &g[i]
			if !c.statelessSafe(t) {
				continue
			}
			out := p.branchRequest(base, t, nil, "")
			var flow string
			if t.viaFlow {
				flow = FlowParam(t.flow) // as start gives a record-routed INVITE
			}
			if !p.signBranch(out, inv, t, flow) {
				continue
			}
			signed++
			if p.sendStateless(out) {
				sent++
			}
		}
	}
	switch {
	case signed == 0:
		n.unsigned.Inc()
	case sent == 0:
		n.unsent.Inc()
	default:
		n.forwarded.Inc()
	}
	return sent > 0
}

// sendStateless writes a request without a client transaction (RFC 3261
// §16.11), as relayAck does: over UDP from the listener branchRequest
// chose, over TCP or TLS only on a connection already open. The
// destination must be an address: pinhole looks nothing up in DNS and
// dials nobody for a request it has no transaction for.
func (p *Proxy) sendStateless(r *sip.Request) bool {
	dest := r.Destination()
	if _, err := netip.ParseAddrPort(dest); err != nil {
		return false
	}
	if r.Transport() != "UDP" {
		conn, err := p.cli.TransportLayer().GetConnection(r.Transport(), dest)
		if err != nil || conn == nil {
			return false
		}
		conn.TryClose() // only asked whether it is open
	}
	if err := p.cli.WriteRequest(r, asIs); err != nil {
		p.log.Debug("stray request not sent", "dest", dest, "error", err)
		return false
	}
	return true
}
