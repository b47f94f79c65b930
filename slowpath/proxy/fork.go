package proxy

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pinhole-sip/pinhole/internal/location"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
	"github.com/pinhole-sip/pinhole/slowpath/nat"
)

// reasonAnswered is the Reason of CANCELs sent to the other branches when
// one answered (RFC 3261 §16.7 step 10, RFC 3326 §2).
var reasonAnswered = sip.NewHeader("Reason", `SIP;cause=200;text="Call completed elsewhere"`)

// call is the response context of one forwarded request (RFC 3261 §16.7).
type call struct {
	p      *Proxy
	req    *sip.Request // as received
	stx    sip.ServerTransaction
	invite bool
	ftag   string // From tag, for Record-Route
	nr     string // caller's flow parameter; "" when not behind NAT
	in     *listener
	rr     bool
	loop   string // the received request's loop hash, in every branch's Via
	upDst  string // where responses to the caller go
	upTP   string

	stop     chan struct{} // closed when forking must go no further
	stopOnce sync.Once

	mu         sync.Mutex
	branches   []*branch
	best       *sip.Response
	challenges []sip.Header // from every 401/407 (§16.7 step 6)
	finalSent  bool
	answered   bool
	canceled   bool // by the caller's CANCEL

	// Farm (farm.go): targets are farm nodes tried in turn; key finds the
	// node that challenged; fromFarm is the node the request came from.
	farm     bool
	key      string
	fromFarm *dispatch.Node
	// outbound: targets are addresses of the outbound proxy's name, tried
	// in turn (outbound.go).
	outbound bool

	// Media relay (media.go): dlg is the relay mark of the dialog an
	// in-dialog request belongs to; media is set once the request's offer
	// went through the relay.
	dlg      *dialogMedia
	media    *callMedia
	inDialog bool // an in-dialog request (actDialog)
}

// branch is one client transaction of a call.
type branch struct {
	c   *call
	t   target
	req *sip.Request
	tx  sip.ClientTransaction
	rr  bool   // carries our Record-Route
	nc  string // callee's flow parameter for our Record-Route in responses

	done     chan struct{} // closed on the branch's final response
	doneOnce sync.Once

	// Guarded by c.mu.
	provisional bool
	final       bool
	cancelWant  bool // CANCEL once a provisional arrives (§9.1)
	cancelSent  bool
	timedOut    bool
	reason      sip.Header
	timerC      *time.Timer
	silence     *time.Timer // farm node: no response at all within failover.timeout
	code        int         // final status received; 0 for none (timeout, transport)
	// The branch's last SDP answer and the relay's version of it
	// (media.go), so a repeated answer costs no ng round trip.
	answerIn, answerOut []byte
}

// fork runs the request's branches group after group and answers the
// caller with the best final response unless a 2xx went up already.
func (p *Proxy) fork(req, base *sip.Request, stx sip.ServerTransaction, rr bool, groups [][]target) {
	p.forkWith(req, base, stx, rr, groups, nil)
}

// forkWith is fork with a hook that sets up the call first (farm.go).
func (p *Proxy) forkWith(req, base *sip.Request, stx sip.ServerTransaction, rr bool, groups [][]target, setup func(*call)) {
	c := &call{
		p:      p,
		req:    req,
		stx:    stx,
		invite: req.IsInvite(),
		rr:     rr,
		stop:   make(chan struct{}),
	}
	if setup != nil {
		setup(c)
	}
	c.loop = loopHash(req)
	mb, _ := p.breadth(req) // decide refused a malformed one
	if mb < 1 {
		mBreadthDeny.Inc()
		p.reply(req, stx, StatusMaxBreadthExceeded, "Max-Breadth Exceeded")
		return
	}
	groups, shares := shareBreadth(groups, mb)
	// Where sipgo itself would answer: Via received/rport (§18.2.2, RFC 3581 §4).
	probe := sip.NewResponseFromRequest(req, sip.StatusTrying, "Trying", nil)
	c.upDst, c.upTP = probe.Destination(), req.Transport()
	if c.invite {
		// §16.2: a stateful proxy answers INVITE with 100 at once, so the
		// caller stops retransmitting.
		if err := stx.Respond(probe); err != nil {
			p.log.Debug("send 100 failed", "error", err)
		}
		if !stx.OnCancel(func(r *sip.Request) { go c.callerCancel(r) }) {
			return // canceled already; the transaction layer sent 487
		}
	}
	if r := c.mediaOffer(base, groups, c.dlg); r != nil {
		c.refuse(r)
		return
	}
	if rr {
		c.prepareRecordRoute()
	}
	for gi, g := range groups {
		started := make([]*branch, 0, len(g))
		for i := range g {
			if b := c.start(base, g[i], shares[gi][i]); b != nil {
				started = append(started, b)
			}
		}
		c.wait(started)
		if c.halted() || !c.moveOn(started) {
			break
		}
	}
	c.finish()
	if c.media != nil {
		go c.mediaEnd()
	}
}

// prepareRecordRoute works out what our Record-Route will say about the
// caller: its From tag and, when it is behind NAT, its flow.
func (c *call) prepareRecordRoute() {
	if from := c.req.From(); from != nil {
		c.ftag, _ = from.Params.Get("tag")
	}
	c.in = c.p.inbound(c.req, c.stx)
	src, ok := nat.ParseAddrPort(c.req.Source())
	if !ok || c.in == nil {
		return
	}
	var contact *sip.Uri
	if h := c.req.Contact(); h != nil {
		contact = &h.Address
	}
	if nat.Detect(c.req, src, contact) != nat.NotNATed {
		c.nr = FlowParam(location.Flow{Transport: c.in.Transport, Remote: src, Local: c.in.Local})
	}
}

// inbound finds the listener a request arrived on.
func (p *Proxy) inbound(req *sip.Request, stx sip.ServerTransaction) *listener {
	if cx, ok := stx.(interface{ Connection() sip.Connection }); ok && cx.Connection() != nil {
		if la, err := netip.ParseAddrPort(cx.Connection().LocalAddr().String()); err == nil {
			t := transportOf(req.Transport())
			if l := p.listenerFor(location.Flow{Transport: t, Local: la}); l != nil {
				return l
			}
		}
	}
	return p.listenerOf(req.Transport())
}

func transportOf(s string) location.Transport {
	for t := location.TransportUDP; t <= location.TransportWSS; t++ {
		if strings.EqualFold(s, t.String()) {
			return t
		}
	}
	return 0
}

// recordRoute is our Record-Route entry for one interface.
func (c *call) recordRoute(l *listener) *sip.RecordRouteHeader {
	params := make(sip.HeaderParams, 0, 4)
	params = append(params, sip.HeaderKV{K: "transport", V: strings.ToLower(l.transport)}, sip.HeaderKV{K: "lr"})
	if c.ftag != "" {
		params = append(params, sip.HeaderKV{K: paramFtag, V: c.ftag})
	}
	if c.nr != "" {
		params = append(params, sip.HeaderKV{K: paramCaller, V: c.nr})
	}
	if c.media != nil && c.media.initial {
		params = append(params, sip.HeaderKV{K: paramMedia, V: c.media.flags.String()})
	}
	u := sip.Uri{Scheme: "sip", Host: l.Host, Port: l.Port, UriParams: params}
	c.p.signRecordRoute(callID(c.req), &u)
	return &sip.RecordRouteHeader{Address: u}
}

// start sends one branch; a branch that cannot be sent counts as a 503
// (RFC 3261 §16.9) and returns nil.
func (c *call) start(base *sip.Request, t target, breadth int) *branch {
	b := &branch{c: c, t: t, done: make(chan struct{})}
	var rr []sip.Header
	if c.rr {
		// RFC 5658 §3.3: one entry per interface when the request leaves
		// by another one than it came in, the outgoing one on top.
		if c.in != nil && c.in != t.out {
			rr = []sip.Header{c.recordRoute(t.out), c.recordRoute(c.in)}
		} else {
			rr = []sip.Header{c.recordRoute(t.out)}
		}
		b.rr = true
		if t.viaFlow {
			b.nc = FlowParam(t.flow)
		}
	}
	b.req = c.p.branchRequest(base, &t, rr, c.loop)
	if breadth > 0 {
		b.req.ReplaceHeader(sip.NewHeader("Max-Breadth", strconv.Itoa(breadth)))
	}
	if c.p.cfg.Farm != nil {
		b.req = c.p.farmBranch(c, base, &t, rr, b.req)
		b.t = t
	}
	if c.statelessSafe(&b.t) {
		c.p.signBranch(b.req, c.req, &b.t, b.nc) // stray.go, cancel.go
	}

	c.mu.Lock()
	if c.halted() {
		c.mu.Unlock()
		return nil
	}
	c.branches = append(c.branches, b)
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	mBranches.Inc()
	if t.edge != "" {
		mHopSent.Inc()
	}
	tx, err := c.p.cli.TransactionRequest(ctx, b.req, asIs)
	if err != nil {
		mBranchErr.Inc()
		c.p.log.Debug("branch failed", "dest", b.req.Destination(), "transport", t.transport, "error", err)
		b.fail(sip.StatusServiceUnavailable, "Service Unavailable")
		return nil
	}
	b.tx = tx
	if to := c.p.failoverTimeout(); t.node != nil && to > 0 {
		c.mu.Lock()
		b.silence = time.AfterFunc(to, b.onSilence)
		c.mu.Unlock()
	}
	if c.invite {
		// RFC 6026 §7.2: 2xx retransmissions and further 2xx from the
		// same branch reach the TU outside the response channel; a proxy
		// relays them.
		tx.OnRetransmission(func(res *sip.Response) {
			if res.IsSuccess() {
				b.onResponse(res)
			}
		})
		c.mu.Lock()
		b.timerC = time.AfterFunc(c.p.cfg.InviteTimeout, b.onTimerC)
		c.mu.Unlock()
	}
	go b.loop()
	return b
}

func (c *call) wait(bs []*branch) {
	for _, b := range bs {
		select {
		case <-b.done:
		case <-c.stop:
			return
		}
	}
}

func (c *call) halt() { c.stopOnce.Do(func() { close(c.stop) }) }

func (c *call) halted() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

// callerCancel handles the caller's CANCEL. The transaction layer already
// answered it with 200 and the INVITE with 487 (RFC 3261 §9.2); we cancel
// every pending branch (§16.10), passing on the caller's Reason.
func (c *call) callerCancel(r *sip.Request) {
	c.mu.Lock()
	c.canceled, c.finalSent = true, true
	c.mu.Unlock()
	c.halt()
	var reason sip.Header
	if h := r.GetHeader("Reason"); h != nil {
		reason = sip.HeaderClone(h)
	}
	c.cancelOthers(nil, reason)
}

func (c *call) cancelOthers(except *branch, reason sip.Header) {
	c.mu.Lock()
	bs := append([]*branch(nil), c.branches...)
	c.mu.Unlock()
	for _, b := range bs {
		if b != except {
			b.cancel(reason)
		}
	}
}

// consider keeps the best final response so far (§16.7 step 6). c.mu held.
func (c *call) consider(res *sip.Response) {
	if res.StatusCode == sip.StatusUnauthorized || res.StatusCode == sip.StatusProxyAuthRequired {
		for _, h := range res.Headers() {
			if n := strings.ToLower(h.Name()); n == "www-authenticate" || n == "proxy-authenticate" {
				c.challenges = append(c.challenges, h)
			}
		}
	}
	if c.best == nil || rank(res.StatusCode) < rank(c.best.StatusCode) {
		c.best = res
	}
}

// rank orders final responses for §16.7 step 6, lower is better: 6xx
// first, then the lowest class; within 4xx the codes that let the caller
// retry (401, 407, 415, 420, 484) are preferred, as the step suggests.
func rank(code int) int {
	switch {
	case code >= 600:
		return 0
	case code >= 500:
		return 4
	case code >= 400:
		switch code {
		case 401, 407, 415, 420, 484:
			return 2
		}
		return 3
	default:
		return 1
	}
}

// finish sends the best response when no final response went up yet.
func (c *call) finish() {
	c.mu.Lock()
	if c.finalSent {
		c.mu.Unlock()
		return
	}
	c.finalSent = true
	best, challenges := c.best, c.challenges
	c.mu.Unlock()

	if best == nil {
		// §16.7 step 6: no final response at all.
		best = sip.NewResponseFromRequest(c.req, sip.StatusRequestTimeout, "Request Timeout", nil)
	}
	switch best.StatusCode {
	case sip.StatusServiceUnavailable:
		// §16.7 step 6: a 503 is not passed on; the caller would take it
		// as pinhole being unavailable.
		best.StatusCode, best.Reason = sip.StatusInternalServerError, "Server Internal Error"
	case sip.StatusUnauthorized, sip.StatusProxyAuthRequired:
		// §16.7 step 6: the caller gets every branch's challenges.
		own := best.Headers()
		for _, h := range challenges {
			if !containsHeader(own, h) {
				best.AppendHeader(h)
			}
		}
	}
	c.relay(nil, best)
}

func containsHeader(hs []sip.Header, h sip.Header) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}

// relay sends a response to the caller (§16.7 steps 4, 5, 9).
func (c *call) relay(b *branch, res *sip.Response) {
	if c.p.cfg.TopologyHiding && c.fromFarm == nil && b != nil && b.t.node != nil {
		c.hideUp(b, res) // toward a device: no farm address
	}
	if b != nil && b.nc != "" && res.StatusCode > 100 && res.StatusCode < 300 {
		c.markCallee(res, b.nc)
	}
	res.SetDestination(c.upDst)
	res.SetTransport(c.upTP)
	c.mu.Lock()
	canceled := c.canceled
	c.mu.Unlock()
	countRelayed(res.StatusCode)
	if !canceled {
		if err := c.stx.Respond(res); err == nil || !res.IsSuccess() {
			return
		}
	}
	// The server transaction is over (caller's CANCEL, or a reliable
	// transport after the first 2xx) but a 2xx must still reach the caller
	// (§16.7 step 5, RFC 6026 §7.1): send it without a transaction.
	if err := c.p.cli.TransportLayer().WriteMsg(res); err != nil {
		mRelayFailed.Inc()
		c.p.log.Debug("relay 2xx failed", "dest", c.upDst, "error", err)
	}
}

// markCallee adds the callee's flow to our Record-Route entries in a
// response (§16.7 step 4 allows a proxy to change its own entry), so that
// the caller's in-dialog requests carry it back to us.
func (c *call) markCallee(res *sip.Response, nc string) {
	for _, h := range res.Headers() {
		rr, ok := h.(*sip.RecordRouteHeader)
		if !ok || !c.p.isOurs(&rr.Address) {
			continue
		}
		if tag, _ := rr.Address.UriParams.Get(paramFtag); tag == c.ftag {
			rr.Address.UriParams.Add(paramCallee, nc)
			c.p.signRecordRoute(callID(c.req), &rr.Address)
		}
	}
}

// loop reads the branch's responses until its final one.
func (b *branch) loop() {
	for {
		select {
		case res := <-b.tx.Responses():
			if b.onResponse(res) {
				return
			}
		case <-b.tx.Done():
			// No final response: timer B/F or timer C is a 408 (§16.8),
			// a transport error a 503 (§16.9).
			b.c.mu.Lock()
			timedOut := b.timedOut
			b.c.mu.Unlock()
			if timedOut || errors.Is(b.tx.Err(), sip.ErrTransactionTimeout) {
				b.fail(sip.StatusRequestTimeout, "Request Timeout")
			} else {
				b.fail(sip.StatusServiceUnavailable, "Service Unavailable")
			}
			return
		}
	}
}

// onResponse processes one response of the branch (§16.7) and reports
// whether it was final.
func (b *branch) onResponse(res *sip.Response) bool {
	c := b.c
	code := res.StatusCode
	c.mu.Lock()
	if b.silence != nil {
		b.silence.Stop() // the node is alive; timer C or B takes over
	}
	c.mu.Unlock()
	if code != sip.StatusTrying {
		// Step 3: take our Via off. A response with no Via left was
		// meant for us and goes no further.
		res.RemoveHeader("Via")
		if c.fromFarm != nil && c.p.cfg.TopologyHiding {
			c.restoreUp(res) // the farm's Vias, hidden from the device
		}
		if res.Via() == nil {
			return !res.IsProvisional()
		}
	}
	switch {
	case res.IsProvisional():
		c.mu.Lock()
		b.provisional = true
		sendCancel := b.cancelWant && !b.cancelSent
		if sendCancel {
			b.cancelSent = true
		}
		if code > sip.StatusTrying && b.timerC != nil && !b.cancelSent {
			b.timerC.Reset(c.p.cfg.InviteTimeout) // §16.7 step 2
		}
		up := code > sip.StatusTrying && !c.finalSent
		reason := b.reason
		c.mu.Unlock()
		if sendCancel {
			b.sendCancel(reason)
		}
		if up {
			b.mediaAnswer(res)
			c.relay(b, res) // step 5: every provisional but 100
		}
		return false

	case res.IsSuccess():
		c.mu.Lock()
		branchFirst := !b.final
		b.final, b.code = true, code
		b.stopTimer()
		first := !c.answered
		c.answered = true
		// Every 2xx to an INVITE goes up; for other methods only the first
		// final response can (step 5).
		up := c.invite || !c.finalSent
		c.finalSent = true
		c.mu.Unlock()
		if branchFirst {
			b.farmFinal(code)
		}
		if up {
			b.mediaAnswer(res)
			c.relay(b, res)
		}
		if first {
			c.halt()
			if c.invite {
				c.cancelOthers(b, reasonAnswered) // step 10
			}
		}
		b.markDone()
		return true

	default:
		c.mu.Lock()
		b.final, b.code = true, code
		b.stopTimer()
		c.consider(res)
		global := code >= 600 && !c.answered
		c.mu.Unlock()
		b.farmFinal(code)
		if global && c.invite {
			// Step 5: a 6xx ends the search; the other branches are
			// cancelled and the best response (the 6xx) goes up.
			c.halt()
			c.cancelOthers(b, sip.NewHeader("Reason", "SIP;cause="+strconv.Itoa(code)+`;text="`+res.Reason+`"`))
		}
		b.markDone()
		return true
	}
}

// fail ends the branch with a response pinhole makes up (§16.8, §16.9).
func (b *branch) fail(code int, reason string) {
	c := b.c
	c.mu.Lock()
	first := !b.final
	if first {
		b.final = true
		b.stopTimer()
		c.consider(sip.NewResponseFromRequest(c.req, code, reason, nil))
	}
	c.mu.Unlock()
	if first {
		b.farmFinal(0) // no answer: timeout or transport error
	}
	b.markDone()
}

func (b *branch) markDone() { b.doneOnce.Do(func() { close(b.done) }) }

// stopTimer stops timer C; c.mu held.
func (b *branch) stopTimer() {
	if b.timerC != nil {
		b.timerC.Stop()
	}
	if b.silence != nil {
		b.silence.Stop()
	}
}

// onSilence ends a farm branch that got no response at all within
// failover.timeout: the node is taken as down for this request (a 408,
// §16.8) and the next destination is tried.
func (b *branch) onSilence() {
	c := b.c
	c.mu.Lock()
	if b.final || b.provisional {
		c.mu.Unlock()
		return
	}
	b.timedOut = true
	c.mu.Unlock()
	mSilent.Inc()
	b.tx.Terminate()
}

// onTimerC implements RFC 3261 §16.8: with a provisional response the
// branch is cancelled; without one it is over, as if a 408 came.
func (b *branch) onTimerC() {
	c := b.c
	c.mu.Lock()
	if b.final {
		c.mu.Unlock()
		return
	}
	mTimerC.Inc()
	if !b.provisional {
		b.timedOut = true
		c.mu.Unlock()
		b.tx.Terminate() // loop sees Done and records the 408
		return
	}
	send := !b.cancelSent
	b.cancelSent = true
	reason := b.reason
	// §9.1: give the CANCEL 64*T1 to bring the 487, then give up.
	b.timerC = time.AfterFunc(64*sip.T1, func() {
		c.mu.Lock()
		b.timedOut = true
		c.mu.Unlock()
		b.tx.Terminate()
	})
	c.mu.Unlock()
	if send {
		b.sendCancel(reason)
	}
}

// cancel cancels the branch now, or once it has a provisional response
// (RFC 3261 §9.1: no CANCEL before a provisional). Only INVITE is
// cancelled; a non-INVITE transaction runs to its end (§9.1).
func (b *branch) cancel(reason sip.Header) {
	c := b.c
	if !c.invite {
		return
	}
	c.mu.Lock()
	if b.final || b.cancelSent || b.cancelWant {
		c.mu.Unlock()
		return
	}
	b.reason = reason
	if !b.provisional {
		b.cancelWant = true
		c.mu.Unlock()
		return
	}
	b.cancelSent = true
	c.mu.Unlock()
	b.sendCancel(reason)
}

// sendCancel builds the CANCEL for the branch's INVITE (RFC 3261 §9.1):
// same Request-URI, Call-ID, To, From, CSeq number, the single top Via
// and the Route set, sent to the same place from the same socket.
func (b *branch) sendCancel(reason sip.Header) {
	inv := b.req
	cr := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	cr.AppendHeader(inv.Via().Clone())
	for _, h := range inv.Headers() {
		if r, ok := h.(*sip.RouteHeader); ok {
			cr.AppendHeader(r.Clone())
		}
	}
	mf := sip.MaxForwardsHeader(70)
	cr.AppendHeader(&mf)
	cr.AppendHeader(sip.HeaderClone(inv.From()))
	cr.AppendHeader(sip.HeaderClone(inv.To()))
	cr.AppendHeader(sip.HeaderClone(inv.CallID()))
	cr.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	if reason != nil {
		cr.AppendHeader(reason)
	}
	cr.SetBody(nil)
	cr.SetTransport(inv.Transport())
	cr.SetDestination(inv.Destination())
	inv.Laddr.Copy(&cr.Laddr)

	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	tx, err := b.c.p.cli.TransactionRequest(ctx, cr, asIs)
	if err != nil {
		mBranchErr.Inc()
		b.c.p.log.Debug("send CANCEL failed", "dest", cr.Destination(), "error", err)
		return
	}
	mCancels.Inc()
	go func() {
		defer tx.Terminate()
		for {
			select {
			case res := <-tx.Responses():
				if !res.IsProvisional() {
					return
				}
			case <-tx.Done():
				return
			}
		}
	}()
}
