package proxy

import (
	"errors"
	"strings"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"
)

// Stray responses: responses that match no client transaction of this
// process. RFC 3261 §16.7 step 1 has a proxy forward them as a stateless
// proxy would: take its Via off and send the response to the next Via.
// On one box they are late retransmissions (a 2xx after the INVITE client
// transaction ended); on an active/standby pair they are what the phones
// answer to requests the dead box sent: a call ringing when the active box
// died is answered to the standby, which never saw the INVITE.
//
// Forwarding whatever arrives would make pinhole a reflector: anyone
// could write a response with pinhole's Via on top and any address below
// and have pinhole send it there from its own socket (the stray-reply
// forwarding of other proxies does exactly that). pinhole forwards a stray
// response only when its top Via names one of pinhole's listeners and its
// branch carries a MAC (branch.go) that a pinhole of this deployment made
// for this Call-ID and this next hop; everything else is dropped and
// counted.

// Results of a stray response, the result label of
// pinhole_proxy_stray_responses_total (docs/metrics.md).
var (
	mStrayForwarded = metrics.NewCounter(`pinhole_proxy_stray_responses_total{result="forwarded"}`)
	// hop_by_hop: a 100 Trying or a response to a CANCEL, which belong
	// to the hop that sent the request and are never forwarded.
	mStrayHopByHop = metrics.NewCounter(`pinhole_proxy_stray_responses_total{result="hop_by_hop"}`)
	// not_ours: the top Via is not one of pinhole's listeners.
	mStrayNotOurs = metrics.NewCounter(`pinhole_proxy_stray_responses_total{result="not_ours"}`)
	// unsigned: pinhole's Via, but a branch without a MAC (pinhole's own
	// requests, topology-hidden or media-relayed calls, whose responses
	// need the transaction's state).
	mStrayUnsigned = metrics.NewCounter(`pinhole_proxy_stray_responses_total{result="unsigned"}`)
	// forged: the MAC does not verify for the response's Call-ID and
	// next hop.
	mStrayForged = metrics.NewCounter(`pinhole_proxy_stray_responses_total{result="forged"}`)
	// last_via: no Via below pinhole's; the response was meant for
	// pinhole itself.
	mStrayLastVia = metrics.NewCounter(`pinhole_proxy_stray_responses_total{result="last_via"}`)
	// unsent: no socket to send it from (no listener of the next Via's
	// transport, no connection to the next hop), or the write failed.
	mStrayUnsent = metrics.NewCounter(`pinhole_proxy_stray_responses_total{result="unsent"}`)
)

var errNoUDPListener = errors.New("no UDP listener")

// statelessSafe reports whether a branch's responses can be forwarded
// without its transaction, so that the branch is signed. Responses that
// need the call's state are not: a topology-hidden farm's (the hidden
// Vias and Contacts are in the call), and a media-relayed call's (the
// relay must see the answer).
func (c *call) statelessSafe(t *target) bool {
	if c.p.cfg.TopologyHiding && (c.fromFarm != nil || t.node != nil) {
		return false
	}
	return c.media == nil
}

// ForwardStray handles a response that matched no client transaction
// (RFC 3261 §16.7 step 1, §16.11): forwarded statelessly when pinhole's
// signed branch vouches for it, else dropped and counted. It never
// answers anything.
func (p *Proxy) ForwardStray(res *sip.Response) {
	vias := res.GetHeaders("Via")
	if len(vias) == 0 {
		mStrayNotOurs.Inc()
		return
	}
	top, ok := vias[0].(*sip.ViaHeader)
	if !ok || !p.ourSentBy(top) {
		mStrayNotOurs.Inc()
		return
	}
	if res.StatusCode == sip.StatusTrying || isCancel(res) {
		mStrayHopByHop.Inc()
		return
	}
	b, ok := parseBranch(top.Params.GetOr("branch", ""))
	if !ok || b.mac == "" {
		mStrayUnsigned.Inc()
		return
	}
	if len(vias) < 2 {
		mStrayLastVia.Inc()
		return
	}
	next, ok := vias[1].(*sip.ViaHeader)
	if !ok {
		mStrayForged.Inc()
		return
	}
	hop, ok := viaHop(next)
	if !ok || !p.verifyBranch(b, callID(res), hop) {
		mStrayForged.Inc()
		return
	}
	// From here on what the stateful path does to a relayed response
	// (fork.go, relay): our Via off (§16.7 step 3), the callee's flow
	// into our Record-Route (step 4), so the caller's ACK and BYE reach
	// the device over the flow its response came by.
	res.RemoveHeader("Via")
	if b.flow != "" && res.StatusCode > 100 && res.StatusCode < 300 {
		p.markStrayCallee(res, b.flow)
	}
	transport, dest, _ := strings.Cut(hop, " ")
	res.SetTransport(transport)
	res.SetDestination(dest)
	conn, err := p.strayConn(top, transport, dest)
	if err != nil {
		mStrayUnsent.Inc()
		p.log.Debug("stray response not sent", "dest", dest, "error", err)
		return
	}
	defer conn.TryClose()
	if err := conn.WriteMsg(res); err != nil {
		mStrayUnsent.Inc()
		p.log.Debug("stray response not sent", "dest", dest, "error", err)
		return
	}
	mStrayForwarded.Inc()
	countRelayed(res.StatusCode)
}

// isCancel reports whether res answers a CANCEL: pinhole answered the
// caller's CANCEL itself (§16.10), so its branch's 200 goes no further.
func isCancel(res *sip.Response) bool {
	cs := res.CSeq()
	return cs != nil && cs.MethodName == sip.CANCEL
}

// markStrayCallee is markCallee without the call: it adds the callee's
// flow to those of our Record-Route entries that verify for this
// response's dialog (Call-ID and From tag), and signs them again. An
// entry that does not verify is left alone: re-signing it would vouch
// for parameters somebody else wrote.
func (p *Proxy) markStrayCallee(res *sip.Response, nc string) {
	id := callID(res)
	var ftag string
	if f := res.From(); f != nil {
		ftag, _ = f.Params.Get("tag")
	}
	for _, h := range res.Headers() {
		rr, ok := h.(*sip.RecordRouteHeader)
		if !ok || !p.isOurs(&rr.Address) {
			continue
		}
		u := &rr.Address
		if tag, _ := u.UriParams.Get(paramFtag); tag != ftag || u.UriParams.Has(paramCallee) {
			continue
		}
		sig, _ := u.UriParams.Get(paramSig)
		if !p.keys.Verify(sig, rrParts(id, u)...) {
			mForgedDialog.Inc()
			continue
		}
		u.UriParams.Add(paramCallee, nc)
		p.signRecordRoute(id, u)
	}
}

// strayConn is the socket a stray response leaves by. Over UDP it is a
// listener of pinhole's, never a new socket: the one our Via names when
// its transport matches, else the first of that transport. Over a
// connection it is one already open to the next hop; pinhole opens none
// to answer (docs/security.md, "Responses never reflect").
func (p *Proxy) strayConn(top *sip.ViaHeader, transport, dest string) (sip.Connection, error) {
	tl := p.cli.TransportLayer()
	if transport != "UDP" {
		return tl.GetConnection(transport, dest)
	}
	var l *listener
	for i := range p.listeners {
		c := &p.listeners[i]
		if c.transport == "UDP" && c.Host == top.Host && c.Port == top.Port {
			l = c
			break
		}
	}
	if l == nil {
		l = p.listenerOf("UDP")
	}
	if l == nil {
		mNoListener.Inc()
		return nil, errNoUDPListener
	}
	return tl.GetConnection("udp", l.laddr.String())
}
