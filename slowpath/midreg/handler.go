package midreg

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

// Handle is the sipgo request handler for REGISTER.
func (m *MidRegistrar) Handle(req *sip.Request, tx sip.ServerTransaction) {
	defer func() {
		// A bug must cost one REGISTER a 500, never the daemon.
		if p := recover(); p != nil {
			m.m.panics.Inc()
			_ = tx.Respond(registrar.Reply(req, 500, "Server Internal Error"))
		}
	}()
	flow, ok := registrar.FlowOf(req, tx)
	var res *sip.Response
	if !ok {
		res = registrar.Reply(req, 500, "Unknown Source Address")
	} else {
		res = m.Process(context.Background(), req, flow)
	}
	_ = tx.Respond(res) // the transaction layer retransmits; nothing to do on a send error
	if fn := m.committed.Load(); ok && res.StatusCode == 200 && fn != nil {
		(*fn)(req, res, flow)
	}
}

// OnCommit installs fn, told of every 200 sent to a device's REGISTER
// after it was sent (the fast path's fill hook, docs/fastpath.md).
func (m *MidRegistrar) OnCommit(fn registrar.Committed) { m.committed.Store(&fn) }

// verdict is what Process does with a valid REGISTER.
type verdict uint8

const (
	relay  verdict = iota // send upstream, answer with its answer
	renew                 // a refresh whose upstream registration nears its end: relay, absorb if no upstream answers
	absorb                // answer from the store alone
)

// Process applies one REGISTER that arrived on flow and returns the
// response for the device. It blocks while the request is upstream: at
// most len(Upstreams) × Timeout.
func (m *MidRegistrar) Process(ctx context.Context, req *sip.Request, flow location.Flow) *sip.Response {
	m.m.received.Inc()
	now := m.now()
	if mf := req.MaxForwards(); mf != nil && mf.Val() <= 0 {
		return registrar.Reply(req, 483, "Too Many Hops") // RFC 3261 §16.3 step 3
	}
	reg, err := m.reg.Parse(req, flow, now)
	if err != nil {
		return registrar.ErrorResponse(req, err)
	}
	m.settle(reg.AOR)
	cur := m.store.Lookup(reg.AOR)
	// What the store would refuse (ordering, too many contacts) is refused
	// before the upstream holds a binding pinhole does not.
	after, err := m.reg.Merge(cur, reg, now)
	if err != nil {
		return registrar.ErrorResponse(req, err)
	}
	switch v := m.classify(reg, cur, flow, now); v {
	case absorb:
		m.m.absorbed.Inc()
		return m.apply(req, reg, now, nil)
	default:
		return m.relay(ctx, req, reg, cur, after, now, v == renew)
	}
}

// classify decides whether a REGISTER may be answered without the
// upstream: only a refresh of bindings pinhole holds with a live upstream
// registration, from the very flow that registered them (a spoofed source
// would otherwise steal calls without the main registrar's
// authentication), with the same Call-ID, a higher CSeq and no change but
// the expiry.
func (m *MidRegistrar) classify(reg *registrar.Request, cur []location.Binding, flow location.Flow, now time.Time) verdict {
	if m.cfg.Mode == ModeMirror || reg.Wildcard || len(reg.Contacts) == 0 {
		return relay
	}
	v := absorb
	margin := time.Duration(m.cfg.RenewalMargin) * time.Second
	// Whole seconds on both sides, as the store keeps expiries: the
	// decision is then exact (docs/midregistrar.md predicts the rate).
	now = now.Truncate(time.Second)
	for _, c := range reg.Contacts {
		if c.Expires == 0 {
			return relay
		}
		i := registrar.Find(cur, c)
		if i < 0 {
			return relay
		}
		b := &cur[i]
		if b.CallID != reg.CallID || b.CSeq >= reg.CSeq || b.Flow != flow || b.Contact != c.Binding.Contact ||
			b.Q != c.Binding.Q || b.Path != c.Binding.Path || b.UpExpires.IsZero() {
			return relay
		}
		// The upstream registration must outlive the device's new expiry
		// by the margin; else this refresh is the one that renews it.
		if now.Add(time.Duration(c.Expires)*time.Second + margin).After(b.UpExpires) {
			v = renew
		}
	}
	return v
}

// apply merges reg into the store and answers the device. grant, when not
// nil, stamps the bindings the upstream just accepted.
func (m *MidRegistrar) apply(req *sip.Request, reg *registrar.Request, now time.Time, grant func(cur, next []location.Binding)) *sip.Response {
	stored, err := m.store.Update(reg.AOR, func(cur []location.Binding) ([]location.Binding, error) {
		next, err := m.reg.Merge(cur, reg, now)
		if err != nil {
			return nil, err
		}
		carryUpstream(next, cur)
		if grant != nil {
			grant(cur, next)
		}
		return next, nil
	})
	if err != nil && stored == nil {
		return registrar.ErrorResponse(req, err)
	}
	// A non-nil set with an error was kept in memory but not yet written
	// to disk; the flusher retries, and the device holds its binding.
	return m.reg.Answer(req, stored, now)
}

// settle has the fast path write the refreshes its loops absorbed, and
// the store has not heard of yet, before the mid-registrar reads or
// changes aor's bindings (registrar.Config.Settle): the 200 lists every
// phone of the AOR with the expiry of its last refresh, absorbed or not,
// as the loops list them (docs/fastpath.md, "AORs with several
// registrations"), and classify sees each binding's latest CSeq.
func (m *MidRegistrar) settle(aor string) {
	if fn := m.cfg.Registrar.Settle; fn != nil {
		fn(aor)
	}
}

// carryUpstream keeps the upstream registration of bindings the merge
// rebuilt from the request.
func carryUpstream(next, cur []location.Binding) {
	for i := range next {
		if !next[i].UpExpires.IsZero() {
			continue
		}
		for j := range cur {
			if cur[j].Contact == next[i].Contact && cur[j].Instance == next[i].Instance && cur[j].RegID == next[i].RegID {
				next[i].UpExpires, next[i].Upstream = cur[j].UpExpires, cur[j].Upstream
				break
			}
		}
	}
}

// relay sends the REGISTER to the upstreams in turn (RFC 3261 §16: a
// stateful proxy with its own Via) until one answers other than 503. An
// upstream given by name is tried at each target of its answer in turn;
// all attempts together take at most len(Upstreams) × Timeout, the bound
// configuration checks against the device's own transaction.
func (m *MidRegistrar) relay(ctx context.Context, req *sip.Request, reg *registrar.Request, cur, after []location.Binding, now time.Time, renewal bool) *sip.Response {
	rctx, rcancel := context.WithTimeout(ctx, time.Duration(len(m.cfg.Upstreams))*m.cfg.Timeout)
	defer rcancel()
attempts:
	for _, i := range m.order(reg, cur, now) {
		dsts := m.targets(i, reg.CallID)
		if len(dsts) == 0 {
			upstreamFailed(i) // a name with no address yet
			continue
		}
		for _, dst := range dsts {
			if rctx.Err() != nil {
				break attempts
			}
			out, asked := m.outgoing(req, reg, after, i, dst)
			actx, cancel := context.WithTimeout(rctx, m.cfg.Timeout)
			res, err := m.send.Send(actx, out)
			cancel()
			if err != nil || res.StatusCode == 503 {
				upstreamFailed(i)
				continue
			}
			upstreamReply(res.StatusCode)
			m.m.relayed.Inc()
			return m.finish(req, reg, res, i, asked, now)
		}
	}
	if renewal {
		// No upstream answered, but the upstream registration is still
		// live: keep the device (docs/architecture.md, "Nothing lost").
		// Its next refresh is inside the margin again and retries the
		// renewal.
		m.m.deferred.Inc()
		m.settle(reg.AOR) // the attempts gave the loops time: see finish
		return m.apply(req, reg, now, nil)
	}
	m.m.unavailable.Inc()
	res := registrar.Reply(req, 503, "Service Unavailable")
	res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(m.cfg.RetryAfter)))
	return res
}

// order lists the upstreams to try: the one that challenged this Call-ID
// (it issued the nonce the retry answers), else the one holding the
// bindings, then the others in configured order.
func (m *MidRegistrar) order(reg *registrar.Request, cur []location.Binding, now time.Time) []int {
	first := m.challenger(reg.CallID, now)
	if first < 0 {
		for _, c := range reg.Contacts {
			if i := registrar.Find(cur, c); i >= 0 && !cur[i].UpExpires.IsZero() {
				first = int(cur[i].Upstream)
				break
			}
		}
	}
	if first < 0 && m.cfg.Mode == ModeAOR {
		for _, b := range cur {
			if !b.UpExpires.IsZero() {
				first = int(b.Upstream)
				break
			}
		}
	}
	if first < 0 || first >= len(m.cfg.Upstreams) {
		first = 0
	}
	out := make([]int, 0, len(m.cfg.Upstreams))
	out = append(out, first)
	for i := range m.cfg.Upstreams {
		if i != first {
			out = append(out, i)
		}
	}
	return out
}

// finish turns the upstream's final response into the device's.
func (m *MidRegistrar) finish(req *sip.Request, reg *registrar.Request, res *sip.Response, i int, asked []asked, now time.Time) *sip.Response {
	switch {
	case res.StatusCode >= 200 && res.StatusCode < 300:
		// Again: the relay gave the loops time to absorb another phone's
		// refresh, which this 200 must list as they would.
		m.settle(reg.AOR)
		m.forget(reg.CallID)
		granted := grants(res, asked)
		var replaced []location.Binding
		out := m.apply(req, reg, now, func(cur, next []location.Binding) {
			m.stamp(next, reg, granted, i, now)
			replaced = m.replaced(cur, next, asked)
		})
		if out.StatusCode == 200 {
			for _, b := range replaced {
				m.OnExpire(b) // de-registered upstream by the lapse workers
			}
		}
		return out
	case res.StatusCode == 401 || res.StatusCode == 407:
		m.rememberChallenge(reg.CallID, i, now)
	case res.StatusCode == 423 && m.cfg.Mode != ModeMirror:
		// The main registrar refused outgoing_expires, which the device
		// cannot fix by asking longer: a configuration error to see in
		// pinhole_midreg_upstream_replies_total{code="423"}.
		return registrar.Reply(req, 500, "Upstream Refused outgoing_expires")
	}
	return relayedResponse(req, res)
}

// replaced returns, in mode contact, the bindings of cur with a live
// upstream registration that the request took out of the store without
// telling the upstream: one replaced by a new Contact with the same
// +sip.instance (and reg-id, RFC 5626 §6), or removed by an expires=0 for
// another Contact of that instance. The relayed request names only the new
// upstream contact, so the old one would stay at the main registrar, and
// reach a device that no longer answers there, until outgoing_expires.
func (m *MidRegistrar) replaced(cur, next []location.Binding, sent []asked) []location.Binding {
	if m.cfg.Mode != ModeContact {
		return nil // mirror: the upstream copy ends with the device's expiry; aor: one contact for all
	}
	var out []location.Binding
	for _, b := range cur {
		if b.UpExpires.IsZero() || slices.ContainsFunc(next, func(n location.Binding) bool {
			return n.Contact == b.Contact && n.Instance == b.Instance && n.RegID == b.RegID
		}) {
			continue
		}
		key, ok := m.upstreamKey(&b)
		if !ok || slices.ContainsFunc(sent, func(a asked) bool { return uriKey(&a.uri) == key }) {
			continue // the relayed request itself removed it upstream
		}
		out = append(out, b)
	}
	return out
}

// upstreamKey is uriKey of the contact pinhole registered upstream for b
// in mode contact: its token contact, or with path insertion the device's
// own Contact.
func (m *MidRegistrar) upstreamKey(b *location.Binding) (string, bool) {
	if m.cfg.Insertion == InsertPath {
		var u sip.Uri
		if err := sip.ParseUri(b.Contact, &u); err != nil {
			return "", false
		}
		return uriKey(&u), true
	}
	i := int(b.Upstream)
	if i >= len(m.cfg.Upstreams) {
		i = 0
	}
	u := m.insertedURI(contactToken(b), m.cfg.listener(m.cfg.Upstreams[i].Transport), false)
	return uriKey(&u), true
}

// stamp records the upstream registration on the bindings it covers.
func (m *MidRegistrar) stamp(next []location.Binding, reg *registrar.Request, granted []int, i int, now time.Time) {
	now = now.Truncate(time.Second)
	at := func(secs int) time.Time { return now.Add(time.Duration(secs) * time.Second) }
	if len(granted) == 0 {
		return // a query or "*": no upstream contact was asked for
	}
	if m.cfg.Mode == ModeAOR {
		// One upstream contact covers the whole AOR.
		for k := range next {
			next[k].UpExpires, next[k].Upstream = at(granted[0]), uint8(i)
		}
		return
	}
	for k, c := range reg.Contacts {
		j := registrar.Find(next, c)
		if j < 0 || k >= len(granted) {
			continue // removed by this request
		}
		b := &next[j]
		b.UpExpires, b.Upstream = at(granted[k]), uint8(i)
		if m.cfg.Mode == ModeMirror && granted[k] < c.Expires {
			// Mirror: the main registrar's expiry is the device's.
			b.Expires = b.UpExpires
		}
	}
}

// relayedHeaders are the headers of an upstream's answer a device gets;
// nothing else passes, so the main side's addresses do not leak
// (docs/architecture.md, "Never expose more than needed").
var relayedHeaders = []string{"WWW-Authenticate", "Proxy-Authenticate", "Retry-After", "Min-Expires", "Warning", "Unsupported", "Date"}

func relayedResponse(req *sip.Request, up *sip.Response) *sip.Response {
	res := registrar.Reply(req, up.StatusCode, up.Reason)
	for _, name := range relayedHeaders {
		for _, h := range up.GetHeaders(name) {
			res.AppendHeader(sip.NewHeader(h.Name(), h.Value()))
		}
	}
	return res
}
