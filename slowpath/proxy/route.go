package proxy

import (
	"net/netip"
	"strings"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
	"github.com/pinhole-sip/pinhole/slowpath/nat"

	"github.com/emiago/sipgo/sip"
)

// action is what Handle does with a request.
type action uint8

const (
	actReply    action = iota + 1 // answer status/reason ourselves
	actSelf                       // OPTIONS for pinhole itself: 200 with capabilities
	actLocate                     // look the AOR up and fork to its contacts
	actOutbound                   // forward to Config.Outbound
	actDialog                     // in-dialog: loose-route to the next hop or a flow
	actDrop                       // nothing to do (ACK that is not ours)
	actFarm                       // relay to a dispatch set (farm.go)
	actPath                       // from the farm through our Path, to a device (farm.go)
)

// Record-Route URI parameters pinhole writes (docs/proxy.md).
const (
	paramFtag   = "ftag" // From tag of the dialog-creating request
	paramCallee = "nc"   // callee's flow, added to responses (RFC 3261 §16.7 step 4)
	paramCaller = "nr"   // caller's flow, when the caller is behind NAT
)

// decision is the routing verdict for one request. decide computes it
// without changing the request, so it can be measured alone.
type decision struct {
	act    action
	status int
	reason string
	aor    string
	auth   bool // Proxy-Authorization must be checked first
	// trusted: the request comes from a peer of the trust list (or a farm
	// node): it is not challenged and its identity headers are kept.
	trusted bool
	// identity is the subscriber the request authenticated as
	// ("user@domain"), asserted toward the farm and outbound (RFC 3325).
	identity string
	ours     int           // top Route entries that name pinhole, to strip (§16.4)
	strict   bool          // the previous hop was a strict router (§16.4)
	flow     location.Flow // actDialog: send over this registered flow
	viaFlw   bool          // flow is set
	// pathUser is the user part of a top Route naming pinhole with one:
	// a Path pinhole inserted upstream (RFC 3327 §5), whose user names the
	// bindings the request is for (the Locator resolves it).
	pathUser string
	// Farm (farm.go): the set a rule chose, what it looked at, and the
	// node a request came from.
	set      *dispatch.Set
	dreq     dispatch.Request
	fromFarm *dispatch.Node
	// media: the dialog's Record-Route marks it relayed (media.go).
	media *dialogMedia
	// ownerHop: another edge handed the request here as the owner of
	// the AOR's flows (edges.go): deliver only to bindings this edge
	// owns, never to another edge.
	ownerHop bool
	// forged: an ACK claiming a dialog through a Route entry of ours
	// pinhole did not write; forged unless it goes on as a stray ACK.
	forged bool
}

// decide routes req: RFC 3261 §16.3 (validation), §16.4 (route
// information preprocessing) and §16.5 (determining targets), plus
// pinhole's relay policy.
func (p *Proxy) decide(req *sip.Request) decision {
	// §16.3 step 3: Max-Forwards; §11 lets the proxy answer OPTIONS itself.
	if mf := req.MaxForwards(); mf != nil && mf.Val() <= 0 {
		switch req.Method {
		case sip.OPTIONS:
			return decision{act: actSelf}
		case sip.ACK:
			return decision{act: actDrop}
		}
		return decision{act: actReply, status: sip.StatusTooManyHops, reason: "Too Many Hops"}
	}

	if p.looped(req) {
		mLoops.Inc()
		if req.Method == sip.ACK {
			return decision{act: actDrop}
		}
		return decision{act: actReply, status: sip.StatusLoopDetected, reason: "Loop Detected"}
	}
	if _, ok := p.breadth(req); !ok {
		return decision{act: actReply, status: sip.StatusBadRequest, reason: "Bad Max-Breadth"}
	}

	var d decision
	if src, ok := nat.ParseAddrPort(req.Source()); ok {
		d.trusted = p.cfg.Trusted.Contains(src.Addr()) || (p.cfg.Farm != nil && p.cfg.Farm.IsFarm(src.Addr())) ||
			(p.cfg.Peers != nil && p.cfg.Peers(src.Addr()))
	}
	var mark *sip.Uri // our Record-Route URI, carrying ftag/nc/nr
	routes, top := 0, true
	for _, h := range req.Headers() {
		r, ok := h.(*sip.RouteHeader)
		if !ok {
			continue
		}
		routes++
		if top && p.isOurs(&r.Address) {
			d.ours++
			if mark == nil || r.Address.UriParams.Has(paramFtag) {
				mark = &r.Address
			}
			continue
		}
		if top && d.pathUser == "" && r.Address.User != "" && r.Address.UriParams.Has("lr") && p.isOurHost(&r.Address) {
			d.ours++
			d.pathUser = r.Address.User
			continue
		}
		top = false
	}
	// §16.4: a Request-URI that is a URI we placed in Record-Route means
	// the previous hop was a strict router; the real Request-URI is the
	// last Route entry.
	if routes > d.ours && p.isOurs(&req.Recipient) && req.Recipient.UriParams.Has("lr") {
		d.strict = true
		mark = &req.Recipient
	}

	to, from := req.To(), req.From()
	if to != nil && to.Params.Has("tag") && (d.ours > 0 || d.strict) {
		if d.pathUser != "" && mark == nil {
			// Only a Path entry of pinhole's (the mid-registrar's, with a
			// user part) on top: not a dialog pinhole record-routed.
		} else if !p.verifyRecordRoute(req, mark) {
			// Our address in a Route, but not an entry pinhole wrote for
			// this dialog: following it would relay for whoever forged it.
			if req.Method == sip.ACK {
				// Counted by Handle: the caller's ACK for a non-2xx repeats
				// the INVITE's Route (§17.1.1.3), unsigned when the phone
				// preloaded pinhole as its outbound proxy, and may still
				// go on as a stray ACK.
				return decision{act: actDrop, forged: true}
			}
			mForgedDialog.Inc()
			return decision{act: actReply, status: sip.StatusForbidden, reason: "Forbidden"}
		} else {
			d.act = actDialog
			p.pickFlow(&d, mark, from)
			d.media = dialogMediaOf(mark)
			return d
		}
	}

	// Not in a dialog we record-routed: an initial request, or one that
	// claims a dialog but did not come by our Route. Both get the full
	// policy, so a To tag cannot skip authentication.
	if req.Method == sip.ACK {
		return decision{act: actDrop}
	}
	if routes > d.ours || d.strict {
		// A pre-loaded route to somewhere else: we would be relaying for
		// whoever sent it (docs/architecture.md, "Never expose more than
		// needed": not an open relay).
		return decision{act: actReply, status: sip.StatusForbidden, reason: "Relaying Denied"}
	}
	if mark != nil && mark.UriParams.Has(paramOwner) {
		// Before the farm's rules: the edge that sent it decided already.
		return p.decideOwnerHop(req, d, mark)
	}
	if p.cfg.Farm != nil && d.pathUser == "" && p.decideFarm(req, &d, mark) {
		if d.act == actFarm {
			// Whatever the From says: a farm trusts pinhole's address, so
			// an unchallenged outsider would call at the carrier's cost.
			d.auth = p.auth != nil && req.Method != sip.REGISTER && !d.trusted
		}
		return d
	}
	if d.pathUser != "" && len(p.cfg.Domains) > 0 {
		// Through our Path: the Request-URI is the device's own Contact,
		// which the binding the Path names replaces (flow, NAT).
		d.auth = p.auth != nil && !d.trusted && d.fromFarm == nil
		d.act, d.aor = actLocate, AOR(d.pathUser, p.cfg.Domains[0])
		return d
	}
	ruri := &req.Recipient
	served, self := false, false
	if ruri.Scheme == "sip" || ruri.Scheme == "sips" {
		served, self = p.served(ruri.Host), p.isOurHost(ruri)
	}
	if (served || self) && ruri.User == "" {
		if req.Method == sip.OPTIONS {
			return decision{act: actSelf}
		}
		return decision{act: actReply, status: sip.StatusNotFound, reason: "Not Found"}
	}
	// Authentication follows the source, never the From header the sender
	// wrote: every initial request from outside the trust list is
	// challenged before pinhole routes it anywhere (docs/security.md).
	d.auth = p.auth != nil && !d.trusted && d.fromFarm == nil
	if served || self {
		domain := ruri.Host
		if !served {
			// sip:user@<pinhole's address>: the user of our first domain.
			if len(p.cfg.Domains) == 0 {
				return decision{act: actReply, status: sip.StatusNotFound, reason: "Not Found"}
			}
			domain = p.cfg.Domains[0]
		}
		d.act = actLocate
		d.aor = AOR(ruri.User, domain)
		return d
	}
	// Toward a foreign domain: for peers and, with authentication, for
	// whoever proves a subscriber's credentials. Without authentication
	// pinhole cannot tell a subscriber from an outsider, and the From
	// domain is the only hint left (docs/security.md says why that is weak).
	fromServed := from != nil && p.served(from.Address.Host)
	if p.outbound == nil || !(d.trusted || d.fromFarm != nil || p.auth != nil || fromServed) {
		return decision{act: actReply, status: sip.StatusForbidden, reason: "Relaying Denied"}
	}
	d.act = actOutbound
	return d
}

// pickFlow chooses the flow of the side an in-dialog request goes to: the
// dialog-creating request's From tag (ftag) tells the caller's requests
// (towards the callee, nc) from the callee's (towards the caller, nr).
func (p *Proxy) pickFlow(d *decision, mark *sip.Uri, from *sip.FromHeader) {
	if mark == nil {
		return
	}
	ftag, _ := mark.UriParams.Get(paramFtag)
	var tag string
	if from != nil {
		tag, _ = from.Params.Get("tag")
	}
	name := paramCaller
	if tag == ftag {
		name = paramCallee
	}
	v, ok := mark.UriParams.Get(name)
	if !ok {
		return
	}
	f, err := ParseFlowParam(v)
	if err != nil || p.listenerFor(f) == nil {
		// Not ours to trust: fall back to ordinary loose routing.
		mFlowBad.Inc()
		return
	}
	d.flow, d.viaFlw = f, true
}

// AOR is the location-store key of user at domain, as the registrar
// writes it: "user@domain", the domain in lower case (RFC 3261 §19.1.4:
// the host compares without case, the user with case).
func AOR(user, domain string) string {
	return user + "@" + strings.ToLower(strings.TrimSuffix(domain, "."))
}

// served reports whether host is one of our domains. A trailing dot names
// the same domain (RFC 1034 §3.1) and must not escape the match.
func (p *Proxy) served(host string) bool {
	host = strings.TrimSuffix(host, ".")
	for _, d := range p.cfg.Domains {
		if strings.EqualFold(host, strings.TrimSuffix(d, ".")) {
			return true
		}
	}
	return false
}

// isOurs reports whether u names pinhole itself: no user part and one of
// our listeners' advertised or local address and port.
func (p *Proxy) isOurs(u *sip.Uri) bool {
	return u.User == "" && p.isOurHost(u)
}

func (p *Proxy) isOurHost(u *sip.Uri) bool {
	host := strings.TrimSuffix(strings.TrimPrefix(u.Host, "["), "]")
	port := u.Port
	if port == 0 {
		port = 5060
		if u.Scheme == "sips" || strings.EqualFold(u.UriParams.GetOr("transport", ""), "tls") {
			port = 5061
		}
	}
	addr, addrErr := netip.ParseAddr(host)
	for i := range p.listeners {
		l := &p.listeners[i]
		if port == l.Port && strings.EqualFold(host, l.Host) {
			return true
		}
		if addrErr == nil && port == int(l.Local.Port()) && addr.Unmap() == l.Local.Addr().Unmap() {
			return true
		}
	}
	return false
}

// listenerFor finds the listener a flow arrived on.
func (p *Proxy) listenerFor(f location.Flow) *listener {
	local := f.Local.Addr().Unmap()
	for i := range p.listeners {
		l := &p.listeners[i]
		if l.Transport == f.Transport && l.Local.Port() == f.Local.Port() && l.Local.Addr().Unmap() == local {
			return l
		}
	}
	return nil
}

// listenerOf returns the first listener of a transport ("UDP", "TCP"...).
func (p *Proxy) listenerOf(transport string) *listener {
	for i := range p.listeners {
		if strings.EqualFold(p.listeners[i].transport, transport) {
			return &p.listeners[i]
		}
	}
	return nil
}

// uriTransport is the transport a URI asks for (RFC 3263 §4.1 without
// DNS): its transport parameter, else TLS for sips, else UDP.
func uriTransport(u *sip.Uri) string {
	if t, ok := u.UriParams.Get("transport"); ok && t != "" {
		return strings.ToUpper(t)
	}
	if u.Scheme == "sips" {
		return "TLS"
	}
	return "UDP"
}
