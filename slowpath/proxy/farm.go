package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
	"github.com/pinhole-sip/pinhole/slowpath/nat"
)

// URI parameters pinhole writes toward a farm (docs/dispatch.md).
const (
	// paramPathFlow is the device's flow in pinhole's Path entry: with it a
	// request from the farm reaches the device's NAT binding, from the very
	// socket the device registered to, without a location look-up.
	paramPathFlow = "pf"
	// paramReceived is the device's source address in pinhole's Path entry
	// (as edges in front of a farm record it), for people and tools reading
	// the farm's location table.
	paramReceived = "received"
	// paramHidden names the farm node behind a Contact that topology
	// hiding rewrote to pinhole's address.
	paramHidden = "th"
)

// decideFarm routes a request that is not in a dialog pinhole
// record-routed when a farm is configured. It reports whether it decided.
func (p *Proxy) decideFarm(req *sip.Request, d *decision, mark *sip.Uri) bool {
	farm := p.cfg.Farm
	src, _ := nat.ParseAddrPort(req.Source())
	if node := farm.NodeAt(src, sip.IsReliable(req.Transport())); node != nil {
		d.fromFarm = node
		if d.ours > 0 {
			// A request from the farm that follows pinhole's Path (RFC 3327
			// §5): to the device's flow, or loose-routed onwards.
			d.act = actPath
			if mark != nil {
				if v, ok := mark.UriParams.Get(paramPathFlow); ok {
					if !p.verifyPath(mark) {
						mForgedPath.Inc()
					} else if f, err := ParseFlowParam(v); err == nil && p.listenerFor(f) != nil {
						d.flow, d.viaFlw = f, true
					} else {
						mFlowBad.Inc()
					}
				}
			}
			return true
		}
		return false // the usual policy: location, outbound
	}
	if req.Method == sip.REGISTER {
		if d.set = farm.RegisterSet(); d.set == nil {
			return false
		}
		d.act = actFarm
		return true
	}
	d.dreq = dispatchRequest(req, src)
	if d.set = farm.Match(&d.dreq); d.set == nil {
		return false
	}
	d.act = actFarm
	return true
}

func dispatchRequest(req *sip.Request, src netip.AddrPort) dispatch.Request {
	r := dispatch.Request{
		Method: req.Method.String(),
		User:   req.Recipient.User,
		Host:   req.Recipient.Host,
		Source: src.Addr(),
	}
	if to := req.To(); to != nil {
		r.ToHost = to.Address.Host
	}
	if id := req.CallID(); id != nil {
		r.CallID = id.Value()
	}
	return r
}

// routeFarm sends a request to a set: serially, one destination per
// group, in the order the set's algorithm gives; the next is tried when
// one is silent, unreachable or answers a failover code.
func (p *Proxy) routeFarm(req *sip.Request, tx sip.ServerTransaction, d *decision) {
	farm := p.cfg.Farm
	if d.dreq.Method == "" {
		src, _ := nat.ParseAddrPort(req.Source())
		d.dreq = dispatchRequest(req, src)
	}
	key := challengeKey(req)
	var nodes []*dispatch.Node
	if n := farm.Challenger(key); n != nil && hasCredentials(req) && n.Set == d.set.Name {
		// The nonce lives on the node that challenged. The
		// retry takes no turn of the algorithm: with round robin it would
		// push every next REGISTER onto the same node.
		mSticky.Inc()
		nodes = farm.Starting(d.set, n)
	} else {
		nodes = farm.Select(d.set, &d.dreq)
	}
	if len(nodes) == 0 {
		// Every destination is out: pinhole itself cannot serve now.
		p.reply(req, tx, sip.StatusServiceUnavailable, "Service Unavailable",
			sip.NewHeader("Retry-After", strconv.Itoa(retryAfter(farm))))
		return
	}
	in := p.inbound(req, tx)
	groups := make([][]target, 0, len(nodes))
	for _, n := range nodes {
		out := p.listenerOf(n.Target.Transport)
		if out == nil {
			mNoListener.Inc()
			continue
		}
		t := target{transport: out.transport, dest: n.Target.Addr.String(), out: out, node: n}
		if req.Method == sip.REGISTER {
			t.pathHdr = p.pathHeader(req, in, out)
		}
		groups = append(groups, []target{t})
	}
	if len(groups) == 0 {
		p.reply(req, tx, sip.StatusInternalServerError, "Server Internal Error")
		return
	}
	rr := req.Method == sip.INVITE || req.Method == sip.SUBSCRIBE ||
		req.Method == sip.REFER || req.Method == sip.NOTIFY
	p.forkWith(req, p.prepare(req, d), tx, rr, groups, func(c *call) {
		c.farm, c.key = true, key
	})
}

// retryAfter suggests when a farm with every node out may be back: the
// probes need up_after intervals to put one back.
func retryAfter(f *dispatch.Dispatcher) int {
	cfg := f.Config()
	s := int((cfg.Probe.Interval * time.Duration(cfg.Probe.UpAfter)).Seconds())
	if s < 1 {
		return 5
	}
	return s
}

// routePath forwards a request from the farm that carries pinhole's Path
// as its Route: to the device's flow when the Path named one, else to the
// next Route or the Request-URI. Dialog-creating requests are
// record-routed, so the device's flow is marked (nc) in the responses.
func (p *Proxy) routePath(req *sip.Request, tx sip.ServerTransaction, d *decision) {
	base := p.prepare(req, d)
	t, err := p.dialogTarget(base, d)
	if errors.Is(err, errFlowFailed) {
		p.reply(req, tx, StatusFlowFailed, "Flow Failed")
		return
	}
	if err != nil {
		p.log.Debug("request from the farm has no way out", "error", err, "req", req.StartLine())
		p.reply(req, tx, sip.StatusInternalServerError, "Server Internal Error")
		return
	}
	t.viaFlow = d.viaFlw
	rr := req.Method == sip.INVITE || req.Method == sip.SUBSCRIBE ||
		req.Method == sip.REFER || req.Method == sip.NOTIFY
	p.forkWith(req, base, tx, rr, [][]target{{t}}, func(c *call) { c.fromFarm = d.fromFarm })
}

// pathHeader is pinhole's Path entry for a REGISTER relayed to the farm
// (RFC 3327 §4): the address of the socket the farm reaches pinhole on,
// and, for a device behind NAT or on a connection, its real address
// (received) and its flow (pf).
func (p *Proxy) pathHeader(req *sip.Request, in, out *listener) sip.Header {
	params := sip.HeaderParams{{K: "transport", V: strings.ToLower(out.transport)}, {K: "lr"}}
	if src, ok := nat.ParseAddrPort(req.Source()); ok && in != nil {
		var contact *sip.Uri
		if h := req.Contact(); h != nil {
			contact = &h.Address
		}
		if nat.Detect(req, src, contact) != nat.NotNATed {
			params = append(params,
				sip.HeaderKV{K: paramReceived, V: "sip:" + src.String()},
				sip.HeaderKV{K: paramPathFlow, V: FlowParam(location.Flow{Transport: in.Transport, Remote: src, Local: in.Local})})
		}
	}
	u := sip.Uri{Scheme: "sip", Host: out.Host, Port: out.Port, UriParams: params}
	p.signPath(&u)
	return sip.NewHeader("Path", "<"+u.String()+">")
}

// challengeKey identifies a request and its authenticated retry: the
// retry keeps the Call-ID (RFC 3261 §22.2) and comes from the same
// device; the source port is left out, a TCP device may reconnect.
func challengeKey(req *sip.Request) string {
	var id string
	if h := req.CallID(); h != nil {
		id = h.Value()
	}
	src, _ := nat.ParseAddrPort(req.Source())
	return id + "|" + src.Addr().String()
}

func hasCredentials(req *sip.Request) bool {
	return req.GetHeader("Authorization") != nil || req.GetHeader("Proxy-Authorization") != nil
}

// farmBranch applies what the farm changes about one branch request:
// topology hiding toward devices and the size limit of UDP. It returns the
// request to send, which may be rebuilt for another transport.
func (p *Proxy) farmBranch(c *call, base *sip.Request, t *target, rr []sip.Header, r *sip.Request) *sip.Request {
	if p.cfg.TopologyHiding && c.fromFarm != nil {
		p.hideRequest(r, c.fromFarm, t.out)
	}
	if t.node == nil && c.fromFarm == nil && !t.viaFlow {
		// An in-dialog request from a device to a node (BYE, re-INVITE):
		// its answers are hidden like the dialog's first ones, and a node
		// that does not answer counts against it.
		t.node = p.nextHopNode(r)
	}
	if t.node == nil && t.transport == "UDP" && p.cfg.Oversize.Limit > 0 {
		r = p.shrink(c, base, t, rr, r)
	}
	return r
}

// shrink makes a device-bound UDP request fit Oversize.Limit (devices
// drop INVITEs past their MTU): configured headers stripped
// first, then compact header names (RFC 3261 §7.3.3), then TCP when the
// device can take a connection (§18.1.1). What is still too large is sent
// anyway and counted: refusing the call helps nobody.
func (p *Proxy) shrink(c *call, base *sip.Request, t *target, rr []sip.Header, r *sip.Request) *sip.Request {
	limit := p.cfg.Oversize.Limit
	if len(r.String()) <= limit {
		return r
	}
	for _, h := range p.cfg.Oversize.Strip {
		for r.RemoveHeader(h) {
		}
	}
	if len(r.String()) <= limit {
		mOversize[oversizeStripped].Inc()
		return r
	}
	r.CompactHeaders = true
	if len(r.String()) <= limit {
		mOversize[oversizeCompact].Inc()
		return r
	}
	if p.cfg.Oversize.TCP && !t.viaFlow {
		if l := p.listenerOf("TCP"); l != nil {
			t.transport, t.out = "TCP", l
			mOversize[oversizeTCP].Inc()
			tr := p.branchRequest(base, t, rr, c.loop)
			if p.cfg.TopologyHiding && c.fromFarm != nil {
				p.hideRequest(tr, c.fromFarm, t.out)
			}
			return tr
		}
	}
	mOversize[oversizeSent].Inc()
	return r
}

// hideRequest removes the farm from a request going to a device: every
// Via but pinhole's (the responses get them back from the transaction,
// see restoreUp), every Record-Route entry but pinhole's, and the Contact
// becomes pinhole's address naming the node (paramHidden).
func (p *Proxy) hideRequest(r *sip.Request, node *dispatch.Node, out *listener) {
	ours := r.Via().Clone()
	for r.RemoveHeader("Via") {
	}
	r.PrependHeader(ours)
	var keep []sip.Header
	for _, h := range r.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok && p.isOurs(&rr.Address) {
			keep = append(keep, h)
		}
	}
	if len(keep) != len(r.GetHeaders("Record-Route")) {
		for r.RemoveHeader("Record-Route") {
		}
		for _, h := range keep {
			r.AppendHeader(h)
		}
	}
	p.hideContact(r.Contact(), node, out)
	mHidden.Inc()
}

// hideContact rewrites a farm node's Contact to pinhole's advertised
// address; the user part stays (the node may dispatch on it) and the node
// is named by its ID, which prepare turns back into the node's address.
func (p *Proxy) hideContact(h *sip.ContactHeader, node *dispatch.Node, out *listener) {
	if h == nil || node == nil || out == nil || h.Address.Wildcard {
		return
	}
	params := sip.HeaderParams{{K: "transport", V: strings.ToLower(out.transport)}, {K: paramHidden, V: node.ID},
		{K: paramSig, V: p.hiddenSig(node.ID, h.Address.User)}}
	h.Address = sip.Uri{Scheme: "sip", User: h.Address.User, Host: out.Host, Port: out.Port, UriParams: params}
}

// unhide turns a Request-URI that topology hiding wrote (pinhole's
// address with paramHidden) back into the farm node it stands for.
func (p *Proxy) unhide(r *sip.Request) {
	u := &r.Recipient
	id, ok := u.UriParams.Get(paramHidden)
	if !ok || !p.isOurHost(u) {
		return
	}
	if !p.verifyHidden(u, id) {
		mForgedHidden.Inc()
		return
	}
	n := p.cfg.Farm.NodeByID(id)
	if n == nil {
		mFlowBad.Inc()
		return
	}
	params := sip.HeaderParams{}
	if n.Target.Transport == "TCP" {
		params = append(params, sip.HeaderKV{K: "transport", V: "tcp"})
	}
	r.Recipient = sip.Uri{Scheme: "sip", User: u.User, Host: n.Target.Addr.Addr().String(), Port: int(n.Target.Addr.Port()), UriParams: params}
}

// hideUp keeps the farm out of a response relayed to a device: only
// pinhole's Record-Route entries stay, and every Contact a node wrote (one
// in a 2xx, several in a 3xx) becomes pinhole's address. The Contacts of
// a REGISTER's 200 are the device's own bindings, not the node's: they
// stay as the device sent them.
func (c *call) hideUp(b *branch, res *sip.Response) {
	if b == nil || b.t.node == nil {
		return
	}
	p := c.p
	var keep []sip.Header
	all := res.GetHeaders("Record-Route")
	for _, h := range all {
		if rr, ok := h.(*sip.RecordRouteHeader); ok && p.isOurs(&rr.Address) {
			keep = append(keep, h)
		}
	}
	if len(keep) != len(all) {
		for res.RemoveHeader("Record-Route") {
		}
		for _, h := range keep {
			res.AppendHeader(h)
		}
	}
	in := c.in // set for record-routed requests only
	if in == nil {
		in = p.inbound(c.req, c.stx)
	}
	if c.req.Method != sip.REGISTER {
		for _, h := range res.GetHeaders("Contact") {
			if ch, ok := h.(*sip.ContactHeader); ok {
				p.hideContact(ch, b.t.node, in)
			}
		}
	}
	mHidden.Inc()
}

// restoreUp gives a response going back to the farm the Via headers (and
// the farm's Record-Route entries) that hideRequest took off its request:
// they are the original request's, kept by the transaction.
func (c *call) restoreUp(res *sip.Response) {
	for res.RemoveHeader("Via") {
	}
	for _, h := range c.req.GetHeaders("Via") {
		res.AppendHeader(sip.HeaderClone(h))
	}
	if res.RecordRoute() == nil {
		return
	}
	for _, h := range c.req.GetHeaders("Record-Route") {
		res.AppendHeader(sip.HeaderClone(h))
	}
}

// farmFinal tells the dispatcher how a farm branch ended.
func (b *branch) farmFinal(code int) {
	c, n := b.c, b.t.node
	farm := c.p.cfg.Farm
	if farm == nil {
		return
	}
	if n == nil {
		if c.fromFarm != nil && c.invite && code >= 200 && code < 300 {
			farm.CallStarted(c.fromFarm, callID(c.req))
		}
		return
	}
	switch {
	case code == 0 || farm.IsFailover(code):
		farm.Failed(n, code)
		return
	case code == sip.StatusUnauthorized || code == sip.StatusProxyAuthRequired:
		farm.Challenged(c.key, n)
	case code >= 200 && code < 300 && c.invite:
		farm.CallStarted(n, callID(c.req))
	}
	farm.Answered(n)
}

func callID(r interface{ CallID() *sip.CallIDHeader }) string {
	if h := r.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

// moveOn reports whether a farm request goes on to its next destination:
// only when every branch of the group ended in a failover condition.
func (c *call) moveOn(bs []*branch) bool {
	if c.outbound {
		return c.outboundMoveOn(bs)
	}
	if !c.farm {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range bs {
		if b.code != 0 && !c.p.cfg.Farm.IsFailover(b.code) {
			return false
		}
	}
	return true
}

// Ping sends one OPTIONS to a farm destination from pinhole's own listener
// for its transport and returns the final status (dispatch.Pinger).
func (p *Proxy) Ping(ctx context.Context, t dispatch.Target) (int, error) {
	out := p.listenerOf(t.Transport)
	if out == nil {
		return 0, fmt.Errorf("probe %s: no %s listener", t, t.Transport)
	}
	ruri := sip.Uri{Scheme: "sip", Host: t.Addr.Addr().String(), Port: int(t.Addr.Port())}
	req := sip.NewRequest(sip.OPTIONS, ruri)
	req.AppendHeader(&sip.ViaHeader{
		ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: out.transport,
		Host: out.Host, Port: out.Port, Params: sip.HeaderParams{{K: "branch", V: sip.GenerateBranchN(16)}},
	})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	self := sip.Uri{Scheme: "sip", User: "pinhole", Host: out.Host, Port: out.Port}
	req.AppendHeader(&sip.FromHeader{Address: self, Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(10)}}})
	req.AppendHeader(&sip.ToHeader{Address: ruri})
	cid := sip.CallIDHeader(sip.GenerateTagN(20) + "@pinhole")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	req.AppendHeader(sip.NewHeader("Content-Length", "0"))
	req.SetTransport(out.transport)
	req.SetDestination(t.Addr.String())
	if out.transport == "UDP" {
		out.laddr.Copy(&req.Laddr)
	}
	tx, err := p.cli.TransactionRequest(ctx, req, asIs)
	if err != nil {
		return 0, fmt.Errorf("probe %s: %w", t, err)
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if !res.IsProvisional() {
				return res.StatusCode, nil
			}
		case <-tx.Done():
			return 0, fmt.Errorf("probe %s: %w", t, tx.Err())
		case <-ctx.Done():
			return 0, fmt.Errorf("probe %s: %w", t, ctx.Err())
		}
	}
}

// What shrink did to an oversized request, for mOversize.
const (
	oversizeStripped = iota
	oversizeCompact
	oversizeTCP
	oversizeSent
)

// failoverTimeout is how long a farm node may stay silent; zero: no limit
// but the transaction's own timers.
func (p *Proxy) failoverTimeout() time.Duration {
	if p.cfg.Farm == nil {
		return 0
	}
	return p.cfg.Farm.Config().Failover.Timeout
}

// farmSource is the farm node a request came from, nil for none.
func (p *Proxy) farmSource(req *sip.Request) *dispatch.Node {
	if p.cfg.Farm == nil {
		return nil
	}
	src, ok := nat.ParseAddrPort(req.Source())
	if !ok {
		return nil
	}
	return p.cfg.Farm.NodeAt(src, sip.IsReliable(req.Transport()))
}

// dialogSetup marks an in-dialog request: one from the farm, so that
// topology hiding applies to it as to the dialog's first request; one of a
// relayed dialog, so that its offer goes through the relay; and any, so
// that a dialog pinhole does not relay is never taken for a new call
// (media.go).
func (p *Proxy) dialogSetup(req *sip.Request, dm *dialogMedia) func(*call) {
	var n *dispatch.Node
	if p.cfg.Farm != nil {
		n = p.farmSource(req)
	}
	return func(c *call) { c.fromFarm, c.dlg, c.inDialog = n, dm, true }
}

// nextHopNode is the farm node a request is about to be sent to (its top
// Route, else its Request-URI), nil when that is no node.
func (p *Proxy) nextHopNode(r *sip.Request) *dispatch.Node {
	u := &r.Recipient
	if rt := r.Route(); rt != nil {
		u = &rt.Address
	}
	a, err := netip.ParseAddr(strings.Trim(u.Host, "[]"))
	if err != nil {
		return nil
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return p.cfg.Farm.NodeAt(netip.AddrPortFrom(a, uint16(port)), sip.IsReliable(uriTransport(u)))
}
