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
	"github.com/pinhole-sip/pinhole/internal/location"
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
	fromTag string // the offerer's tag: the ng commands' from-tag
	d       media.Decision
	flags   mediaFlags
	initial bool // a dialog-creating INVITE: a failure deletes the call
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
			if t.viaFlow {
				if t.flow.Transport == location.TransportUDP {
					// Registered behind NAT: reached over its flow.
					side.NAT = nat.ContactMismatch
				} else if side.NAT == nat.NotNATed {
					side.NAT = nat.Stream
				}
				if !side.Source.IsValid() {
					side.Source = t.flow.Remote.Addr()
				}
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
	if !isSDP(base.Body(), base.ContentType()) {
		// No offer here: an INVITE without SDP (late offer) gets its offer
		// in the 2xx and its answer in the ACK, which pinhole does not
		// relay (docs/media.md, "Not done").
		if c.invite && dlg == nil {
			mLateOffer.Inc()
		}
		return nil
	}
	s, err := sdp.Parse(base.Body())
	if err != nil {
		countStep(stepOffer, resultMalformed)
		return &refusal{sip.StatusBadRequest, "Malformed SDP"}
	}
	fromTag, toTag := tags(c.req)
	cm := &callMedia{fromTag: fromTag}
	opts := new(ng.Options)
	src := offerSide(c.req, s)
	step := stepOffer
	if dlg == nil {
		if !c.invite {
			return nil // an UPDATE outside a dialog pinhole relays
		}
		cm.d = media.Decide(m.Rules, src, answerSide(groups))
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
		opts = cm.d.OfferOptions(src.Source)
	} else {
		step = stepReoffer
		cm.flags = dlg.flags
		caller, callee := dlg.flags&callerWebRTC != 0, dlg.flags&calleeWebRTC != 0
		if fromTag == dlg.ftag {
			cm.d = media.Decision{Relay: true, OffererWebRTC: caller, AnswererWebRTC: callee}
		} else {
			cm.d = media.Decision{Relay: true, OffererWebRTC: callee, AnswererWebRTC: caller}
		}
		opts = cm.d.OfferOptions(src.Source)
		// A re-offer names the dialog's other party too, so rtpengine
		// finds the dialogue whichever side sends it.
		opts.Extra = map[string]any{"to-tag": toTag}
	}
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

// mediaAnswer gives the relay a branch's SDP answer (in a 18x or 2xx) and
// puts the relay's SDP into the response. A response whose SDP the relay
// cannot take goes up unchanged, counted: it is the callee's answer, and
// refusing it would leave an established dialog without its 2xx.
func (b *branch) mediaAnswer(res *sip.Response) {
	c := b.c
	cm := c.media
	if cm == nil || res.StatusCode <= sip.StatusTrying || res.StatusCode >= 300 || !isSDP(res.Body(), res.ContentType()) {
		return
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
		countStep(stepAnswer, resultMalformed)
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
	out, err := c.p.cfg.Media.Relay.Answer(context.Background(), callID(c.req), cm.fromTag, toTag, body, cm.d.AnswerOptions(from))
	if err != nil {
		countStep(stepAnswer, resultOf(err))
		c.p.log.Debug("relay answer failed", "call_id", callID(c.req), "error", err)
		return
	}
	countStep(stepAnswer, resultOK)
	c.mu.Lock()
	b.answerIn, b.answerOut = append([]byte(nil), body...), out
	c.mu.Unlock()
	res.SetBody(out)
}

// mediaEnd deletes a relayed call that no branch answered (every branch
// failed, the caller cancelled, or timer C expired), once no branch can
// answer any more.
func (c *call) mediaEnd() {
	if c.media == nil || !c.media.initial {
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
	stepDelete  = "delete"

	resultOK        = "ok"
	resultMalformed = "malformed_sdp" // the SDP did not parse: 400 for a request, unchanged for a response
	resultDown      = "down"          // no relay answered (ng.ErrUnavailable, ng.ErrTimeout)
	resultRefused   = "refused"       // the relay answered with an error
	resultError     = "error"         // anything else (a bad reply)
)

var (
	mLateOffer = metrics.NewCounter(`pinhole_media_late_offer_total`)
	mUnrelayed = metrics.NewCounter(`pinhole_media_unrelayed_total{why="down"}`)
	mDown503   = metrics.NewCounter(`pinhole_media_refused_total{why="down"}`)
)

func countStep(step, result string) {
	metrics.GetOrCreateCounter(`pinhole_media_steps_total{step="` + step + `",result="` + result + `"}`).Inc()
}

func countRelayedCall(r media.Reason) {
	metrics.GetOrCreateCounter(`pinhole_media_calls_relayed_total{reason="` + string(r) + `"}`).Inc()
}
