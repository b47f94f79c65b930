package proxy

import (
	"context"
	"errors"
	"mime"
	"net/netip"
	"strconv"
	"strings"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/slowpath/media"
	"github.com/pinhole-sip/pinhole/slowpath/media/ng"
	"github.com/pinhole-sip/pinhole/slowpath/media/sdp"
	"github.com/pinhole-sip/pinhole/slowpath/nat"
)

// Relay is the control of a media relay: *ng.Client, or a fake in tests.
// The proxy needs nothing else of it.
type Relay interface {
	Offer(ctx context.Context, callID, fromTag string, sdp []byte, o *ng.Options) ([]byte, error)
	Answer(ctx context.Context, callID, fromTag, toTag string, sdp []byte, o *ng.Options) ([]byte, error)
	Delete(ctx context.Context, callID, fromTag, toTag string) (ng.Reply, error)
}

var _ Relay = (*ng.Client)(nil)

// Media wires a media relay into calls (docs/media.md).
type Media struct {
	Relay Relay
	// Rules decide which calls are relayed (media.Decide).
	Rules config.MediaRules
	// Proceed lets a call through unrelayed when no relay can take it
	// (media.on_down: proceed); otherwise it is refused with 503.
	Proceed bool
}

// paramMedia marks our Record-Route entry of a relayed call, so that its
// in-dialog requests (BYE, re-INVITE, UPDATE) are re-offered and deleted
// with no dialog table. Its value is a digit of mediaFlags.
const paramMedia = "mr"

// mediaFlags say which party of a relayed dialog speaks WebRTC media;
// rtpengine bridges when they differ, so every re-offer needs them.
type mediaFlags uint8

const (
	callerWebRTC mediaFlags = 1 << iota // the dialog's caller (From tag = ftag)
	calleeWebRTC
)

func (f mediaFlags) String() string { return strconv.Itoa(int(f)) }

func parseMediaFlags(s string) (mediaFlags, bool) {
	if len(s) != 1 || s[0] < '0' || s[0] > '3' {
		return 0, false
	}
	return mediaFlags(s[0] - '0'), true
}

// callMedia is the relay state of one forwarded INVITE or UPDATE whose
// SDP offer went through the relay: its responses' answers go there too.
type callMedia struct {
	fromTag string // the request sender's tag: the offer's from-tag
	// d is oriented from the request's sender (Offerer) to its
	// recipient (Answerer), whichever of the two sends the SDP offer.
	d       media.Decision
	flags   mediaFlags
	initial bool // a dialog-creating INVITE: a failure deletes the call
	// late: the INVITE had no SDP (RFC 3261 §13.2.1): the offer comes in
	// the 2xx and the answer in the ACK.
	late bool
}

// dialogMedia is what a relayed dialog's Record-Route entry says, for an
// in-dialog request.
type dialogMedia struct {
	ftag  string // the dialog's caller's From tag
	flags mediaFlags
}

// mediaRetryAfter is the Retry-After of a 503 for a relay that is down:
// the relay's pinger finds it back within seconds, and the caller should
// not retry in a burst.
const mediaRetryAfter = "30"

// refusal is a status that ends a request the relay could not take.
type refusal struct {
	status int
	reason string
}

// isSDP reports whether msg carries an SDP body (RFC 3264). A multipart
// body is not looked into: it goes through unchanged.
func isSDP(body []byte, ct *sip.ContentTypeHeader) bool {
	if len(body) == 0 || ct == nil {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct.Value())
	return err == nil && mt == "application/sdp"
}

// offerSide is what the proxy knows of the sender of req.
func offerSide(req *sip.Request, s *sdp.Session) media.Side {
	side := media.Side{Transport: req.Transport(), SDP: s}
	if src, ok := nat.ParseAddrPort(req.Source()); ok {
		side.Source = src.Addr()
		var contact *sip.Uri
		if h := req.Contact(); h != nil {
			contact = &h.Address
		}
		side.NAT = nat.Detect(req, src, contact)
	}
	return side
}

// answerSide is what the proxy knows of the targets before they answer:
// one offer serves every branch (rtpengine tells the answers apart by
// their To tag), so the side is behind NAT or WebRTC when any target is.
func answerSide(groups [][]target) media.Side {
	var side media.Side
	for _, g := range groups {
		for i := range g {
			t := &g[i]
			tr := strings.ToUpper(t.transport)
			if tr == "WS" || tr == "WSS" || side.Transport == "" {
				side.Transport = tr
			}
			switch {
			case t.nat:
				// The registrar judged the binding behind NAT; which
				// test said so is not kept, and does not matter here.
				side.NAT = nat.ContactMismatch
			case t.viaFlow && side.NAT == nat.NotNATed:
				side.NAT = nat.Stream // reached over its connection
			}
			if t.viaFlow && !side.Source.IsValid() {
				side.Source = t.flow.Remote.Addr()
			}
		}
	}
	return side
}

// mediaOffer sends the request's SDP offer through the relay when the call
// is relayed and puts the relay's SDP into base. It returns a refusal when
// the request must be answered instead of forwarded.
func (c *call) mediaOffer(base *sip.Request, groups [][]target, dlg *dialogMedia) *refusal {
	m := c.p.cfg.Media
	if m == nil || !(c.invite || c.req.Method == sip.UPDATE) {
		return nil
	}
	if dlg == nil && (c.inDialog || !c.invite) {
		// A dialog pinhole does not relay stays as it began; an UPDATE
		// outside a dialog has nothing to relay.
		return nil
	}
	step := stepOffer
	if dlg != nil {
		step = stepReoffer
	}
	if !isSDP(base.Body(), base.ContentType()) {
		if c.invite {
			c.lateOffer(groups, dlg)
		}
		return nil
	}
	s, err := sdp.Parse(base.Body())
	if err != nil {
		countStep(step, resultMalformed)
		return &refusal{sip.StatusBadRequest, "Malformed SDP"}
	}
	src := offerSide(c.req, s)
	cm := c.planMedia(src, groups, dlg)
	if cm == nil {
		return nil
	}
	opts := cm.d.OfferOptions(src.Source)
	if dlg != nil {
		// A re-offer names the dialog's other party too, so rtpengine
		// finds the dialogue whichever side sends it.
		_, toTag := tags(c.req)
		opts.Extra = map[string]any{"to-tag": toTag}
	}
	fromTag := cm.fromTag
	out, err := m.Relay.Offer(context.Background(), callID(c.req), fromTag, base.Body(), opts)
	if err != nil {
		return c.offerFailed(step, err, m.Proceed)
	}
	countStep(step, resultOK)
	if dlg == nil {
		countRelayedCall(cm.d.Reason)
	}
	base.SetBody(out)
	c.media = cm
	return nil
}

// planMedia decides whether the request's media is relayed and how: for a
// dialog-creating INVITE by the rules, in a dialog by its Record-Route
// mark. nil: not relayed.
func (c *call) planMedia(src media.Side, groups [][]target, dlg *dialogMedia) *callMedia {
	fromTag, _ := tags(c.req)
	cm := &callMedia{fromTag: fromTag}
	if dlg != nil {
		cm.flags = dlg.flags
		cm.d = dlg.flags.towards(fromTag == dlg.ftag)
		return cm
	}
	cm.d = media.Decide(c.p.cfg.Media.Rules, src, answerSide(groups))
	if !cm.d.Relay {
		return nil
	}
	cm.initial = true
	if cm.d.OffererWebRTC {
		cm.flags |= callerWebRTC
	}
	if cm.d.AnswererWebRTC {
		cm.flags |= calleeWebRTC
	}
	return cm
}

// towards orients the flags of a relayed dialog for SDP sent by its caller
// (fromCaller) or by its callee.
func (f mediaFlags) towards(fromCaller bool) media.Decision {
	caller, callee := f&callerWebRTC != 0, f&calleeWebRTC != 0
	if fromCaller {
		return media.Decision{Relay: true, OffererWebRTC: caller, AnswererWebRTC: callee}
	}
	return media.Decision{Relay: true, OffererWebRTC: callee, AnswererWebRTC: caller}
}

// lateOffer prepares the relay of an INVITE without SDP: its 2xx will
// carry the offer and the ACK the answer (RFC 3261 §13.2.1). The call is
// marked relayed now, so that its ACK finds the mark in the Record-Route.
func (c *call) lateOffer(groups [][]target, dlg *dialogMedia) {
	cm := c.planMedia(offerSide(c.req, nil), groups, dlg)
	if cm == nil {
		return
	}
	cm.late = true
	mLateOffer.Inc()
	if dlg == nil {
		countRelayedCall(cm.d.Reason)
	}
	c.media = cm
}

// offerFailed decides what becomes of a request whose offer failed: a relay
// that is down refuses it with 503 or lets it through unrelayed
// (media.on_down); a relay that refused the SDP makes it a 488.
func (c *call) offerFailed(step string, err error, proceed bool) *refusal {
	var cmdErr *ng.CommandError
	switch {
	case errors.Is(err, ng.ErrUnavailable) || errors.Is(err, ng.ErrTimeout):
		countStep(step, resultDown)
		if proceed {
			mUnrelayed.Inc()
			return nil
		}
		mDown503.Inc()
		return &refusal{sip.StatusServiceUnavailable, "Media Relay Unavailable"}
	case errors.As(err, &cmdErr):
		// RFC 3261 §21.4.26: the session description is not acceptable.
		countStep(step, resultRefused)
		c.p.log.Debug("relay refused offer", "call_id", callID(c.req), "error", err)
		return &refusal{sip.StatusNotAcceptableHere, "Not Acceptable Here"}
	default:
		countStep(step, resultError)
		c.p.log.Debug("relay offer failed", "call_id", callID(c.req), "error", err)
		return &refusal{sip.StatusInternalServerError, "Server Internal Error"}
	}
}

// refuse answers the request for a failed offer.
func (c *call) refuse(r *refusal) {
	c.mu.Lock()
	sent := c.finalSent
	c.finalSent = true
	c.mu.Unlock()
	if sent {
		return // the caller's CANCEL came first
	}
	var hs []sip.Header
	if r.status == sip.StatusServiceUnavailable {
		hs = append(hs, sip.NewHeader("Retry-After", mediaRetryAfter))
	}
	c.p.reply(c.req, c.stx, r.status, r.reason, hs...)
}

// mediaAnswer gives the relay a branch's SDP answer (in a 18x or 2xx), or
// the offer of a 2xx to an INVITE without SDP, and puts the relay's SDP
// into the response. A response whose SDP the relay cannot take goes up
// unchanged, counted: it is the callee's, and refusing it would leave an
// established dialog without its 2xx.
func (b *branch) mediaAnswer(res *sip.Response) {
	c := b.c
	cm := c.media
	if cm == nil || res.StatusCode <= sip.StatusTrying || res.StatusCode >= 300 || !isSDP(res.Body(), res.ContentType()) {
		return
	}
	if cm.late && res.StatusCode < 200 {
		// Only a reliable 18x (RFC 3262) could carry the offer; pinhole
		// relays the one in the 2xx (docs/media.md, "Not done").
		return
	}
	step := stepAnswer
	if cm.late {
		step = stepLateOffer
	}
	body := res.Body()
	c.mu.Lock()
	if b.answerIn != nil && string(b.answerIn) == string(body) {
		// The same answer again (a 2xx retransmission, or the 183's SDP
		// repeated in the 200): the relay's answer is the same too.
		out := b.answerOut
		c.mu.Unlock()
		res.SetBody(out)
		return
	}
	c.mu.Unlock()
	if _, err := sdp.Parse(body); err != nil {
		countStep(step, resultMalformed)
		return
	}
	var toTag string
	if to := res.To(); to != nil {
		toTag, _ = to.Params.Get("tag")
	}
	var from netip.Addr
	if src, ok := nat.ParseAddrPort(res.Source()); ok {
		from = src.Addr()
	}
	var out []byte
	var err error
	if cm.late {
		// The callee offers: its tag is the from-tag, and the offer goes
		// toward the request's sender.
		opts := cm.d.AnswerOptions(from)
		opts.Extra = map[string]any{"to-tag": cm.fromTag}
		out, err = c.p.cfg.Media.Relay.Offer(context.Background(), callID(c.req), toTag, body, opts)
	} else {
		out, err = c.p.cfg.Media.Relay.Answer(context.Background(), callID(c.req), cm.fromTag, toTag, body, cm.d.AnswerOptions(from))
	}
	if err != nil {
		countStep(step, resultOf(err))
		if cm.late && resultOf(err) == resultDown {
			mUnrelayed.Inc()
		}
		c.p.log.Debug("relay "+step+" failed", "call_id", callID(c.req), "error", err)
		return
	}
	countStep(step, resultOK)
	c.mu.Lock()
	b.answerIn, b.answerOut = append([]byte(nil), body...), out
	c.mu.Unlock()
	res.SetBody(out)
}

// mediaEnd deletes a relayed call that no branch answered (every branch
// failed, the caller cancelled, or timer C expired), once no branch can
// answer any more.
func (c *call) mediaEnd() {
	if c.media == nil || !c.media.initial || c.media.late {
		// A late offer reaches the relay only in a 2xx: nothing to delete
		// when none came.
		return
	}
	c.mu.Lock()
	bs := append([]*branch(nil), c.branches...)
	c.mu.Unlock()
	for _, b := range bs {
		<-b.done
	}
	c.mu.Lock()
	answered := c.answered
	c.mu.Unlock()
	if !answered {
		c.p.mediaDelete(callID(c.req), c.media.fromTag)
	}
}

// mediaDelete ends the relay of a call.
func (p *Proxy) mediaDelete(id, ftag string) {
	if _, err := p.cfg.Media.Relay.Delete(context.Background(), id, ftag, ""); err != nil {
		countStep(stepDelete, resultOf(err))
		p.log.Debug("relay delete failed", "call_id", id, "error", err)
		return
	}
	countStep(stepDelete, resultOK)
}

// ackAnswer gives the relay the SDP answer of an ACK to a 2xx that carried
// the offer (an INVITE without SDP) and puts the relay's SDP into ack.
// Only the ACK's sender knows its answer, so one the relay cannot take goes
// on unchanged, counted.
func (p *Proxy) ackAnswer(req, ack *sip.Request, dm *dialogMedia) {
	if p.cfg.Media == nil || dm == nil || !isSDP(ack.Body(), ack.ContentType()) {
		return
	}
	if _, err := sdp.Parse(ack.Body()); err != nil {
		countStep(stepAckAnswer, resultMalformed)
		return
	}
	fromTag, toTag := tags(req)
	var from netip.Addr
	if src, ok := nat.ParseAddrPort(req.Source()); ok {
		from = src.Addr()
	}
	// The offer came from the ACK's recipient (the To tag); the answer
	// goes back toward it.
	opts := dm.flags.towards(fromTag == dm.ftag).OfferOptions(from)
	out, err := p.cfg.Media.Relay.Answer(context.Background(), callID(req), toTag, fromTag, ack.Body(), opts)
	if err != nil {
		countStep(stepAckAnswer, resultOf(err))
		p.log.Debug("relay answer of ACK failed", "call_id", callID(req), "error", err)
		return
	}
	countStep(stepAckAnswer, resultOK)
	ack.SetBody(out)
}

// dialogMediaOf reads the relay mark of a verified Record-Route entry.
func dialogMediaOf(mark *sip.Uri) *dialogMedia {
	if mark == nil {
		return nil
	}
	v, ok := mark.UriParams.Get(paramMedia)
	if !ok {
		return nil
	}
	f, ok := parseMediaFlags(v)
	if !ok {
		return nil
	}
	ftag, _ := mark.UriParams.Get(paramFtag)
	return &dialogMedia{ftag: ftag, flags: f}
}

// tags returns a request's From and To tags.
func tags(req *sip.Request) (from, to string) {
	if h := req.From(); h != nil {
		from, _ = h.Params.Get("tag")
	}
	if h := req.To(); h != nil {
		to, _ = h.Params.Get("tag")
	}
	return from, to
}

// resultOf names an ng error for the step counters.
func resultOf(err error) string {
	var cmdErr *ng.CommandError
	switch {
	case errors.Is(err, ng.ErrUnavailable) || errors.Is(err, ng.ErrTimeout):
		return resultDown
	case errors.As(err, &cmdErr):
		return resultRefused
	}
	return resultError
}

// Steps of the relay in a call, and their results, for
// pinhole_media_steps_total (docs/media.md). The ng client counts the
// commands themselves; these say what the call made of them.
const (
	stepOffer   = "offer"   // a dialog-creating INVITE's offer
	stepReoffer = "reoffer" // a re-INVITE's or UPDATE's offer in a relayed dialog
	stepAnswer  = "answer"
	// A 2xx's offer to an INVITE without SDP, and the ACK's answer.
	stepLateOffer = "late_offer"
	stepAckAnswer = "ack_answer"
	stepDelete    = "delete"

	resultOK        = "ok"
	resultMalformed = "malformed_sdp" // the SDP did not parse: 400 for a request, unchanged for a response
	resultDown      = "down"          // no relay answered (ng.ErrUnavailable, ng.ErrTimeout)
	resultRefused   = "refused"       // the relay answered with an error
	resultError     = "error"         // anything else (a bad reply)
)

var (
	mLateOffer = metrics.NewCounter(`pinhole_media_late_offers_total`)
	mUnrelayed = metrics.NewCounter(`pinhole_media_unrelayed_total{why="down"}`)
	mDown503   = metrics.NewCounter(`pinhole_media_refused_total{why="down"}`)
)

func countStep(step, result string) {
	metrics.GetOrCreateCounter(`pinhole_media_steps_total{step="` + step + `",result="` + result + `"}`).Inc()
}

func countRelayedCall(r media.Reason) {
	metrics.GetOrCreateCounter(`pinhole_media_calls_relayed_total{reason="` + string(r) + `"}`).Inc()
}
