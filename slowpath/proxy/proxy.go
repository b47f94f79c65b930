package proxy

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-sip/pinhole/internal/location"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/resolve"
	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
	"github.com/pinhole-sip/pinhole/slowpath/nat"
	"github.com/pinhole-sip/pinhole/slowpath/routesig"
)

// Methods the proxy handles; REGISTER belongs to the registrar.
var Methods = []sip.RequestMethod{
	sip.INVITE, sip.ACK, sip.BYE, sip.CANCEL, sip.OPTIONS, sip.MESSAGE,
	sip.SUBSCRIBE, sip.NOTIFY, sip.REFER, sip.INFO, sip.UPDATE, sip.PRACK, sip.PUBLISH,
}

// allow is the Allow header value of OPTIONS answered by pinhole (§11.2).
var allow = func() string {
	s := make([]string, 0, len(Methods)+1)
	for _, m := range Methods {
		s = append(s, m.String())
	}
	return strings.Join(append(s, sip.REGISTER.String()), ", ")
}()

// dialTimeout bounds connection set-up for one branch (TCP, TLS, DNS).
const dialTimeout = 10 * time.Second

// Proxy is a transaction-stateful proxy. It keeps state only for the
// transactions in flight; dialogs are carried in Record-Route.
type Proxy struct {
	cfg       Config
	cli       *sipgo.Client
	loc       Locator
	auth      Authorizer
	log       *slog.Logger
	listeners []listener
	outbound  *sip.Uri
	// outboundName is Outbound's host as a DNS name when OutboundDNS is
	// set; nil for an address or without a resolver.
	outboundName *resolve.Dest
	keys         *routesig.Keyring
}

// New checks cfg and returns a proxy that sends through cli. auth may be
// nil: then nobody is challenged. log may be nil.
func New(cfg Config, cli *sipgo.Client, loc Locator, auth Authorizer, log *slog.Logger) (*Proxy, error) {
	if cli == nil || loc == nil {
		return nil, fmt.Errorf("create proxy: client and locator are required")
	}
	cfg.Domains = slices.Clone(cfg.Domains)
	cfg.Listeners = slices.Clone(cfg.Listeners)
	cfg, ls, outbound, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("create proxy: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keys := cfg.Keys
	if keys == nil {
		var secret [routesig.KeySize]byte
		rand.Read(secret[:])
		keys = routesig.NewStatic(secret)
	}
	p := &Proxy{cfg: cfg, cli: cli, loc: loc, auth: auth, log: log.With("caller", "proxy"), listeners: ls, outbound: outbound, keys: keys}
	if outbound != nil && cfg.OutboundDNS != nil {
		if d, ok := OutboundName(outbound); ok {
			p.outboundName = &d
		}
	}
	return p, nil
}

// Handle processes one request from sipgo's server. It returns when the
// request's server transaction has its final response (or, for ACK, when
// the ACK is relayed): sipgo ends the transaction after the handler.
func (p *Proxy) Handle(req *sip.Request, tx sip.ServerTransaction) {
	if req.Method == sip.CANCEL {
		// The transaction layer answers a CANCEL that matches an INVITE
		// server transaction; this one matched nothing (§16.10).
		p.strayCancel(req, tx)
		return
	}
	d := p.decide(req)
	switch d.act {
	case actDrop:
		if req.IsAck() && p.strayAck(req) {
			return
		}
		if d.forged {
			mForgedDialog.Inc()
		}
		mAckDropped.Inc()
	case actReply:
		p.reply(req, tx, d.status, d.reason)
	case actSelf:
		p.replyOptions(req, tx)
	case actDialog:
		mDialog.Inc()
		if req.IsAck() {
			p.relayAck(req, &d)
			return
		}
		base := p.prepare(req, &d)
		t, err := p.dialogTarget(base, &d)
		if errors.Is(err, errFlowFailed) {
			p.reply(req, tx, StatusFlowFailed, "Flow Failed")
			return
		}
		if err != nil {
			p.log.Debug("in-dialog request has no way out", "error", err, "req", req.StartLine())
			p.reply(req, tx, sip.StatusInternalServerError, "Server Internal Error")
			return
		}
		if req.Method == sip.BYE && p.cfg.Farm != nil {
			p.cfg.Farm.CallEnded(callID(req))
		}
		if d.media != nil && p.cfg.Media != nil && req.Method == sip.BYE {
			// Either party's BYE ends the media; the relay is told before
			// the BYE goes on, whatever the other party answers.
			p.mediaDelete(callID(req), d.media.ftag)
		}
		p.forkWith(req, base, tx, false, [][]target{{t}}, p.dialogSetup(req, d.media))
	case actLocate, actOutbound:
		mInitial.Inc()
		if d.auth && !p.authorize(req, tx, &d) {
			return
		}
		p.route(req, tx, &d)
	case actFarm:
		mInitial.Inc()
		if d.auth && !p.authorize(req, tx, &d) {
			return
		}
		p.routeFarm(req, tx, &d)
	case actPath:
		mInitial.Inc()
		p.routePath(req, tx, &d)
	}
}

// route forwards an initial request to its targets (RFC 3261 §16.5, §16.6).
func (p *Proxy) route(req *sip.Request, tx sip.ServerTransaction, d *decision) {
	var groups [][]target
	if d.act == actOutbound {
		ts, err := p.outboundTargets()
		if errors.Is(err, errUnresolved) {
			// RFC 3263 §4.3: no server could be found; another try later
			// may find one once the name resolves.
			p.reply(req, tx, sip.StatusServiceUnavailable, "Service Unavailable")
			return
		}
		if err != nil {
			p.log.Debug("no listener for outbound", "error", err)
			p.reply(req, tx, sip.StatusInternalServerError, "Server Internal Error")
			return
		}
		for _, t := range ts {
			groups = append(groups, []target{t}) // tried in turn
		}
	} else {
		var status int
		var reason string
		if groups, status, reason = p.locate(req, d); groups == nil {
			p.reply(req, tx, status, reason)
			return
		}
	}
	// §16.6 step 4: record-route requests that may create a dialog.
	rr := req.Method == sip.INVITE || req.Method == sip.SUBSCRIBE ||
		req.Method == sip.REFER || req.Method == sip.NOTIFY
	if d.act == actOutbound {
		p.forkWith(req, p.prepare(req, d), tx, rr, groups, func(c *call) { c.outbound = true })
		return
	}
	p.fork(req, p.prepare(req, d), tx, rr, groups)
}

// locate finds the targets of a request for one of our AORs: its
// bindings here and the edges that own its other flows (edges.go). With
// no target it returns the status to answer instead. A stray CANCEL
// (cancel.go) comes here too, so it reaches what its INVITE reached.
func (p *Proxy) locate(req *sip.Request, d *decision) ([][]target, int, string) {
	bindings := p.loc.Lookup(d.aor)
	if d.ownerHop {
		mHopReceived.Inc()
		bindings = p.ownedOnly(bindings)
	}
	if len(bindings) == 0 && d.ownerHop {
		// The edge that sent the hop saw this edge as the owner, but
		// the device has moved or lapsed here: as for a closed flow.
		mHopUnowned.Inc()
		return nil, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
	}
	if len(bindings) == 0 {
		if p.loc.Known(d.aor) {
			return nil, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
		}
		return nil, sip.StatusNotFound, "Not Found"
	}
	groups := p.targetGroups(bindings)
	if !d.ownerHop {
		groups = p.withEdges(groups, p.edgeTargets(req, d.aor, bindings))
	}
	if len(groups) == 0 {
		return nil, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
	}
	return groups, 0, ""
}

// authorize checks Proxy-Authorization and answers the request when it
// fails (RFC 3261 §22.3); on success d learns who the caller is.
func (p *Proxy) authorize(req *sip.Request, tx sip.ServerTransaction, d *decision) bool {
	v := p.auth.Authorize(req)
	if v.OK {
		d.identity = v.User
		if !strings.Contains(v.User, "@") {
			d.identity = AOR(v.User, p.identityDomain(req))
		}
		return true
	}
	mAuthFailed.Inc()
	status, reason := v.Status, v.Reason
	if status < 400 || status > 699 {
		status, reason = sip.StatusForbidden, "Forbidden"
	}
	p.reply(req, tx, status, reason, v.Headers...)
	return false
}

// prepare returns the copy of req that every branch starts from: our
// Route entries removed (§16.4), the strict router's Request-URI put back,
// and the sender's Via marked with received/rport (§18.2.1, RFC 3581 §4).
func (p *Proxy) prepare(req *sip.Request, d *decision) *sip.Request {
	fwd := req.Clone()
	for range d.ours {
		fwd.RemoveHeader("Route")
	}
	if d.strict {
		// §16.4: replace the Request-URI with the last Route value and
		// remove that value.
		hs := fwd.Headers()
		for i := len(hs) - 1; i >= 0; i-- {
			if r, ok := hs[i].(*sip.RouteHeader); ok {
				fwd.Recipient = *r.Address.Clone()
				removeHeaderAt(fwd, i)
				break
			}
		}
	}
	if via := fwd.Via(); via != nil {
		if src, ok := nat.ParseAddrPort(req.Source()); ok {
			if h := strings.Trim(via.Host, "[]"); h != src.Addr().String() {
				via.Params.Add("received", src.Addr().String())
			}
			if v, ok := via.Params.Get("rport"); ok && v == "" {
				via.Params.Add("rport", strconv.Itoa(int(src.Port())))
			}
		}
	}
	if p.cfg.TopologyHiding && p.cfg.Farm != nil {
		p.unhide(fwd) // a Contact hideContact wrote is the farm node again
	}
	p.assertIdentity(fwd, d)
	return fwd
}

// Identity headers (RFC 3325 §9.1, and the older Remote-Party-ID draft
// that FreeSWITCH and many carriers still read): whoever sends them claims
// who the caller is, and a farm bills and displays what they say.
var identityHeaders = []string{"P-Asserted-Identity", "Remote-Party-ID"}

// assertIdentity keeps identity headers only from trusted peers (RFC 3325
// §5: a proxy removes them from requests of entities outside its trust
// domain), and states the authenticated subscriber toward the farm and
// the outbound proxy, which are inside it.
func (p *Proxy) assertIdentity(fwd *sip.Request, d *decision) {
	if d.trusted || d.fromFarm != nil {
		return
	}
	for _, name := range identityHeaders {
		for fwd.RemoveHeader(name) {
			mIdentityRemoved.Inc()
		}
	}
	if d.identity != "" && (d.act == actFarm || d.act == actOutbound) {
		fwd.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<sip:"+d.identity+">"))
	}
}

// identityDomain is the served domain an authenticated From names; the
// first served domain when it names none (the user authenticated against
// pinhole's credentials, which belong to its domains).
func (p *Proxy) identityDomain(req *sip.Request) string {
	if from := req.From(); from != nil && p.served(from.Address.Host) {
		return strings.TrimSuffix(strings.ToLower(from.Address.Host), ".")
	}
	if len(p.cfg.Domains) > 0 {
		return p.cfg.Domains[0]
	}
	return ""
}

// removeHeaderAt drops the i-th header of r, keeping sipgo's quick
// references right (it only offers removal of the first of a name).
func removeHeaderAt(r *sip.Request, i int) {
	hs := slices.Clone(r.Headers())
	name := hs[i].Name()
	for r.RemoveHeader(name) {
	}
	for j, h := range hs {
		if j != i && h.Name() == name {
			r.AppendHeader(h)
		}
	}
}

// reply answers req from pinhole itself.
func (p *Proxy) reply(req *sip.Request, tx sip.ServerTransaction, status int, reason string, hdrs ...sip.Header) {
	countReply(status)
	res := sip.NewResponseFromRequest(req, status, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		p.log.Debug("respond failed", "status", status, "error", err)
	}
}

// replyOptions answers OPTIONS for pinhole itself (RFC 3261 §11.2).
func (p *Proxy) replyOptions(req *sip.Request, tx sip.ServerTransaction) {
	if err := tx.Respond(optionsResponse(req)); err != nil {
		p.log.Debug("respond failed", "status", sip.StatusOK, "error", err)
	}
}

func optionsResponse(req *sip.Request) *sip.Response {
	countReply(sip.StatusOK)
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", allow))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	res.AppendHeader(sip.NewHeader("Supported", "path"))
	return res
}

// OptionsForItself reports whether an OPTIONS with Request-URI u and no
// Route header is one pinhole answers itself, whatever else it holds: u
// names pinhole or a served domain, without a user (RFC 3261 §11), and no
// farm is configured whose dispatch rules could claim it. The stateless
// path takes such OPTIONS before sipgo makes a transaction for them.
func (p *Proxy) OptionsForItself(u *sip.Uri) bool {
	if p.cfg.Farm != nil || u.User != "" || (u.Scheme != "sip" && u.Scheme != "sips") {
		return false
	}
	return p.served(u.Host) || p.isOurHost(u)
}

// SelfAnswer is what pinhole answers req itself, without routing it: 200
// to an OPTIONS for pinhole, or a refusal decided before any routing
// (hops, loop, Max-Breadth). handled is false when req is to be routed,
// which needs a server transaction; res is nil when req is dropped. It
// decides exactly as Handle does.
func (p *Proxy) SelfAnswer(req *sip.Request) (res *sip.Response, handled bool) {
	if req.Method == sip.CANCEL {
		return nil, false // strayCancel routes it
	}
	d := p.decide(req)
	switch d.act {
	case actSelf:
		return optionsResponse(req), true
	case actReply:
		countReply(d.status)
		return sip.NewResponseFromRequest(req, d.status, d.reason, nil), true
	case actDrop:
		mAckDropped.Inc()
		return nil, true
	}
	return nil, false
}

// relayAck forwards an ACK for a 2xx statelessly: it is a transaction of
// its own, end to end (RFC 3261 §13.2.2.4, §16.11).
func (p *Proxy) relayAck(req *sip.Request, d *decision) {
	base := p.prepare(req, d)
	t, err := p.dialogTarget(base, d)
	if err != nil {
		mAckDropped.Inc()
		return
	}
	ack := p.branchRequest(base, &t, nil, "")
	p.ackAnswer(req, ack, d.media)
	if n := p.farmSource(req); n != nil && p.cfg.TopologyHiding {
		p.hideRequest(ack, n, t.out)
	}
	if err := p.cli.WriteRequest(ack, asIs); err != nil {
		mAckDropped.Inc()
		p.log.Debug("relay ACK failed", "error", err, "dest", ack.Destination())
		return
	}
	mAckRelayed.Inc()
}

// asIs is a request option that leaves a request as the proxy built it.
// Without options sipgo fills in headers and may bump CSeq, which a proxy
// must not change (RFC 3261 §16.6).
func asIs(*sipgo.Client, *sip.Request) error { return nil }

// target is one destination of a request.
type target struct {
	uri       sip.Uri // new Request-URI, when retarget
	retarget  bool
	transport string        // "UDP", "TCP", ...
	dest      string        // host:port to send to; "" derives it from Route or Request-URI
	out       *listener     // socket and advertised address it leaves from
	flow      location.Flow // registered flow, when viaFlow
	viaFlow   bool
	nat       bool // the binding was judged behind NAT (media.go)
	q         uint16
	path      []sip.Uri      // Route entries from the binding's Path (RFC 3327 §5)
	node      *dispatch.Node // farm destination (farm.go)
	pathHdr   sip.Header     // our Path entry for a REGISTER relayed to the farm
	edge      string         // the owning edge this target hands the request to (edges.go)
}

// targetGroups turns bindings into fork groups: one group for parallel
// forking, one per q value (highest first) for serial.
func (p *Proxy) targetGroups(bindings []location.Binding) [][]target {
	ts := make([]target, 0, len(bindings))
	for i := range bindings {
		if !p.ownedHere(&bindings[i]) {
			continue // reached through its owner (edgeTargets)
		}
		t, err := p.bindingTarget(&bindings[i])
		if err != nil {
			mBadBinding.Inc()
			p.log.Debug("binding skipped", "aor", bindings[i].AOR, "contact", bindings[i].Contact, "error", err)
			continue
		}
		ts = append(ts, t)
	}
	return p.forkGroups(ts)
}

// forkGroups arranges targets for forking: one group for parallel, one
// per q value (highest first) for serial.
func (p *Proxy) forkGroups(ts []target) [][]target {
	if len(ts) == 0 {
		return nil
	}
	if p.cfg.Forking == ForkParallel {
		return [][]target{ts}
	}
	slices.SortStableFunc(ts, func(a, b target) int { return int(b.q) - int(a.q) })
	var groups [][]target
	start := 0
	for i := 1; i <= len(ts); i++ {
		if i == len(ts) || ts[i].q != ts[start].q {
			groups = append(groups, ts[start:i:i])
			start = i
		}
	}
	return groups
}

// bindingTarget works out how to reach one binding. A device behind NAT,
// or on a connection, is reached over its flow: to Flow.Remote, from the
// socket at Flow.Local. The Request-URI stays its Contact (§16.6 step 6).
func (p *Proxy) bindingTarget(b *location.Binding) (target, error) {
	t := target{retarget: true, q: b.Q, nat: b.NAT}
	if err := parseContact(b.Contact, &t.uri); err != nil {
		return t, err
	}
	if b.Path != "" {
		path, err := parsePath(b.Path)
		if err != nil {
			return t, err
		}
		t.path = path
	}
	if b.NAT || (b.Flow.Transport != 0 && b.Flow.Transport != location.TransportUDP) {
		l := p.listenerFor(b.Flow)
		if l == nil {
			mNoListener.Inc()
			return t, fmt.Errorf("flow %s %v->%v: not one of our listeners", b.Flow.Transport, b.Flow.Remote, b.Flow.Local)
		}
		if !b.Flow.Remote.IsValid() {
			return t, fmt.Errorf("flow without remote address")
		}
		if !p.flowUsable(b.Flow) {
			mFlowFailed.Inc()
			return t, errFlowFailed
		}
		t.transport, t.dest, t.out = l.transport, b.Flow.Remote.String(), l
		t.flow, t.viaFlow = b.Flow, true
		return t, nil
	}
	next := &t.uri
	if len(t.path) > 0 {
		next = &t.path[0]
	}
	if p.isOurHost(next) {
		// A binding that leads back to pinhole (a Contact naming its
		// address) would bring the request back to be forked again.
		mLoops.Inc()
		return t, fmt.Errorf("binding leads back to pinhole (%s)", next)
	}
	t.transport = uriTransport(next)
	// Leave from the socket the device registered to when there is one
	// (docs/architecture.md, "One address, one port").
	if l := p.listenerFor(b.Flow); l != nil && l.transport == t.transport {
		t.out = l
	} else if t.out = p.listenerOf(t.transport); t.out == nil {
		mNoListener.Inc()
		return t, fmt.Errorf("no %s listener for %s", t.transport, next)
	}
	return t, nil
}

// dialogTarget is the next hop of an in-dialog request: the flow named in
// our Record-Route, else the first remaining Route, else the Request-URI
// (RFC 3261 §16.12).
func (p *Proxy) dialogTarget(base *sip.Request, d *decision) (target, error) {
	if d.viaFlw {
		if !p.flowUsable(d.flow) {
			mFlowFailed.Inc()
			return target{}, errFlowFailed
		}
		l := p.listenerFor(d.flow)
		return target{transport: l.transport, dest: d.flow.Remote.String(), out: l, flow: d.flow}, nil
	}
	next := &base.Recipient
	if r := base.Route(); r != nil {
		next = &r.Address
	}
	t := target{transport: uriTransport(next)}
	if t.out = p.listenerOf(t.transport); t.out == nil {
		mNoListener.Inc()
		return t, fmt.Errorf("no %s listener for %s", t.transport, next)
	}
	return t, nil
}

// errUnresolved: the outbound proxy's name has no address in the cache.
var errUnresolved = errors.New("outbound name has no address")

// outboundTargets sends to Config.Outbound, keeping the Request-URI: one
// target, or for a name the addresses of its cached answer in the order
// to try them (outbound.go).
func (p *Proxy) outboundTargets() ([]target, error) {
	u := p.outbound
	if p.outboundName != nil {
		ts := p.resolveOutbound()
		if len(ts) == 0 {
			mUnresolved.Inc()
			return nil, fmt.Errorf("outbound %s: %w", u, errUnresolved)
		}
		out := make([]target, 0, len(ts))
		for _, rt := range ts {
			out = append(out, target{transport: rt.Transport, dest: rt.Addr.String(), out: p.listenerOf(rt.Transport)})
		}
		return out, nil
	}
	t := target{transport: uriTransport(u)}
	port := u.Port
	if port == 0 {
		port = sip.DefaultPort(t.transport)
	}
	t.dest = net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(port))
	if t.out = p.listenerOf(t.transport); t.out == nil {
		mNoListener.Inc()
		return nil, fmt.Errorf("no %s listener for outbound %s", t.transport, u)
	}
	return []target{t}, nil
}

// branchRequest builds the request for one target (RFC 3261 §16.6).
// rr, when not nil, are the Record-Route entries to insert.
// loop is the received request's loop hash for the branch parameter
// (loop.go); "" for a random branch alone.
func (p *Proxy) branchRequest(base *sip.Request, t *target, rr []sip.Header, loop string) *sip.Request {
	r := base.Clone()
	if t.retarget {
		r.Recipient = *t.uri.Clone() // step 2
	}
	// Step 3: Max-Forwards. sipgo's clone shares this header, so replace it.
	mf := sip.MaxForwardsHeader(p.cfg.MaxForwards)
	if old := base.MaxForwards(); old != nil {
		mf = sip.MaxForwardsHeader(old.Val() - 1)
		r.ReplaceHeader(&mf)
	} else {
		r.AppendHeader(&mf)
	}
	if len(rr) > 0 {
		r.PrependHeader(rr...) // step 4
	}
	if t.pathHdr != nil {
		r.PrependHeader(t.pathHdr) // RFC 3327 §4: our Path on top
	}
	if len(t.path) > 0 {
		// Step 6 with a Path (RFC 3327 §5): the request visits those
		// proxies first.
		hs := make([]sip.Header, len(t.path))
		for i := range t.path {
			hs[i] = &sip.RouteHeader{Address: *t.path[i].Clone()}
		}
		r.PrependHeader(hs...)
	}
	// Step 8: our Via, advertised address of the outgoing socket, fresh branch.
	r.PrependHeader(&sip.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       t.transport,
		Host:            t.out.Host,
		Port:            t.out.Port,
		Params:          sip.HeaderParams{{K: "branch", V: branchID(loop)}},
	})
	r.SetTransport(t.transport)
	r.SetDestination(t.dest) // "" lets sipgo take the first Route or the Request-URI
	r.Laddr = sip.Addr{}
	if t.transport == "UDP" {
		// Leave from the listening socket itself, never a new ephemeral
		// one: a NAT pinhole is open for that address pair only.
		t.out.laddr.Copy(&r.Laddr)
	}
	return r
}

// parseContact reads a binding's Contact: a bare URI or a name-addr.
func parseContact(s string, u *sip.Uri) error {
	s = strings.TrimSpace(s)
	if strings.ContainsAny(s, "<\"") {
		var params sip.HeaderParams
		if _, err := sip.ParseAddressValue(s, u, &params); err != nil {
			return fmt.Errorf("parse contact %q: %w", s, err)
		}
	} else if err := sip.ParseUri(s, u); err != nil {
		return fmt.Errorf("parse contact %q: %w", s, err)
	}
	if u.Scheme != "sip" && u.Scheme != "sips" || u.Host == "" {
		return fmt.Errorf("parse contact %q: not a sip URI", s)
	}
	return nil
}

// parsePath reads a Path header value: comma-separated name-addrs.
func parsePath(s string) ([]sip.Uri, error) {
	var out []sip.Uri
	for s = strings.TrimSpace(s); s != ""; {
		end := strings.IndexByte(s, '>')
		if !strings.HasPrefix(s, "<") || end < 0 {
			return nil, fmt.Errorf("parse path %q: want <uri>", s)
		}
		var u sip.Uri
		if err := sip.ParseUri(s[1:end], &u); err != nil {
			return nil, fmt.Errorf("parse path %q: %w", s, err)
		}
		out = append(out, u)
		s = strings.TrimSpace(s[end+1:])
		// Header parameters after the URI are not part of the route.
		if i := strings.IndexByte(s, ','); i >= 0 {
			s = strings.TrimSpace(s[i+1:])
		} else {
			s = ""
		}
	}
	return out, nil
}
