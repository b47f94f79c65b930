package media

import (
	"net/netip"
	"strings"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/slowpath/media/ng"
	"github.com/pinhole-sip/pinhole/slowpath/media/sdp"
	"github.com/pinhole-sip/pinhole/slowpath/nat"
)

// Side is what the proxy knows of one party of a call.
type Side struct {
	// Transport of its SIP signalling: UDP, TCP, TLS, WS or WSS (as
	// sipgo spells it; case does not matter).
	Transport string
	// NAT is nat.Detect's verdict on its signalling (the caller's request,
	// or the callee's binding).
	NAT nat.Reason
	// Source is the address its signalling came from; the zero value when
	// unknown.
	Source netip.Addr
	// SDP is its offer or answer; nil when not known yet (the callee at
	// offer time) or absent.
	SDP *sdp.Session
}

// Reason names the rule that made a call relayed.
type Reason string

// Reasons, in the order Decide tries them.
const (
	NoRelay    Reason = ""
	Always     Reason = "always"
	WebRTC     Reason = "webrtc"
	NAT        Reason = "nat"
	PrivateSDP Reason = "private_sdp"
)

// Decision is Decide's answer.
type Decision struct {
	Relay  bool
	Reason Reason
	// OffererWebRTC and AnswererWebRTC say which sides speak WebRTC media
	// (DTLS-SRTP, ICE, AVPF); when they differ rtpengine must bridge.
	OffererWebRTC, AnswererWebRTC bool
}

// IsWebRTC reports whether a side speaks WebRTC media: it signals over
// WebSocket (RFC 7118; browsers can do nothing else) or its SDP asks for
// SAVPF, DTLS-SRTP or ICE.
func (s Side) IsWebRTC() bool {
	switch strings.ToUpper(s.Transport) {
	case "WS", "WSS":
		return true
	}
	return s.SDP != nil && s.SDP.Profile().WebRTC()
}

// behindNAT reports whether the side's signalling proves a NAT. A Stream
// verdict says only that the device is reached through its connection,
// nothing about its media path: the private_sdp rule judges those.
func (s Side) behindNAT() bool {
	return s.NAT != nat.NotNATed && s.NAT != nat.Stream
}

// privateSDP reports whether the side's SDP names a private (or
// unspecified) address while its signalling came from a public one: media
// sent there would not arrive. Both private means both on pinhole's LAN.
func (s Side) privateSDP() bool {
	if s.SDP == nil || (s.Source.IsValid() && nat.IsPrivate(s.Source)) {
		return false
	}
	for _, a := range s.SDP.Profile().Addrs {
		if nat.IsPrivate(a) {
			return true
		}
	}
	return false
}

// Decide says whether the call between offerer and answerer is relayed,
// trying the rules that are on in a fixed order so the reason given is
// always the same for the same input.
func Decide(rules config.MediaRules, offerer, answerer Side) Decision {
	d := Decision{OffererWebRTC: offerer.IsWebRTC(), AnswererWebRTC: answerer.IsWebRTC()}
	switch {
	case rules.Always:
		d.Reason = Always
	case rules.WebRTC && (d.OffererWebRTC || d.AnswererWebRTC):
		d.Reason = WebRTC
	case rules.NAT && (offerer.behindNAT() || answerer.behindNAT()):
		d.Reason = NAT
	case rules.PrivateSDP && (offerer.privateSDP() || answerer.privateSDP()):
		d.Reason = PrivateSDP
	}
	d.Relay = d.Reason != NoRelay
	return d
}

// RTP profiles rtpengine translates between.
const (
	plainProfile  = "RTP/AVP"
	webRTCProfile = "UDP/TLS/RTP/SAVPF"
)

// OfferOptions are the ng options of the offer toward the answerer; from
// is the offerer's signalling source. rtpengine replaces the SDP's origin
// and session c= with its own address, and, when the two sides differ,
// bridges plain RTP and WebRTC media (Kamailio's rtpengine_manage with
// "ICE=force DTLS=passive UDP/TLS/RTP/SAVPF" or "ICE=remove RTP/AVP").
func (d Decision) OfferOptions(from netip.Addr) *ng.Options {
	return bridge(d.OffererWebRTC, d.AnswererWebRTC, from)
}

// AnswerOptions are the ng options of the answer back toward the
// offerer; from is the answerer's signalling source.
func (d Decision) AnswerOptions(from netip.Addr) *ng.Options {
	return bridge(d.AnswererWebRTC, d.OffererWebRTC, from)
}

// bridge builds options for SDP from a sender toward a receiver.
func bridge(senderWebRTC, receiverWebRTC bool, from netip.Addr) *ng.Options {
	o := &ng.Options{Replace: []string{"origin", "session-connection"}}
	if from.IsValid() {
		// Without the SIP-source-address flag rtpengine keeps the SDP's
		// c= as the first guess and learns the real media source from
		// the first packets (symmetric RTP, its default); received-from
		// names the signalling source in its logs and for that flag.
		o.ReceivedFrom = from
	}
	switch {
	case receiverWebRTC && !senderWebRTC:
		o.TransportProtocol = webRTCProfile
		o.ICE = "force"
		o.DTLS = "passive"
		// Browsers require RTP and RTCP on one port (RFC 8834 §4.5).
		o.RTCPMux = []string{"offer", "require"}
	case senderWebRTC && !receiverWebRTC:
		o.TransportProtocol = plainProfile
		o.ICE = "remove"
		o.RTCPMux = []string{"demux"}
	case senderWebRTC && receiverWebRTC:
		// Both browsers: rtpengine stays the only candidate so the media
		// really passes it.
		o.ICE = "force"
	}
	return o
}
