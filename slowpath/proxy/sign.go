package proxy

import (
	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"
)

// paramSig is the MAC pinhole adds to every URI whose parameters it will
// follow later: its Record-Route entry, its Path entry toward a farm and a
// Contact that topology hiding rewrote (docs/security.md).
const paramSig = "sig"

// Domain separation: the same values signed for different uses never
// produce the same MAC, so a signed Path cannot stand in for a
// Record-Route entry.
const (
	sigRecordRoute = "rr"
	sigPath        = "path"
	sigHidden      = "th"
)

var (
	mForgedDialog = metrics.NewCounter(`pinhole_proxy_forged_total{what="record_route"}`)
	mForgedPath   = metrics.NewCounter(`pinhole_proxy_forged_total{what="path"}`)
	mForgedHidden = metrics.NewCounter(`pinhole_proxy_forged_total{what="hidden_contact"}`)
	// mIdentityRemoved counts identity headers removed from requests of
	// untrusted senders.
	mIdentityRemoved = metrics.NewCounter(`pinhole_proxy_identity_headers_removed_total`)
)

// rrParts are what pinhole's Record-Route MAC covers: the dialog (Call-ID
// and the dialog-creating request's From tag), both flows and the media
// relay mark. A missing flow signs as "", so adding one changes the MAC.
// The relay mark is a sixth part only when present, so entries written
// before it existed still verify; the parts are length-prefixed, so five
// parts never sign like six.
func rrParts(id string, u *sip.Uri) []string {
	ftag, _ := u.UriParams.Get(paramFtag)
	nr, _ := u.UriParams.Get(paramCaller)
	nc, _ := u.UriParams.Get(paramCallee)
	parts := []string{sigRecordRoute, id, ftag, nr, nc}
	if mr, ok := u.UriParams.Get(paramMedia); ok {
		parts = append(parts, mr)
	}
	return parts
}

// signRecordRoute sets the MAC of our Record-Route URI u for dialog id;
// it is called again whenever pinhole adds a parameter (markCallee).
func (p *Proxy) signRecordRoute(id string, u *sip.Uri) {
	parts := rrParts(id, u)
	u.UriParams.Add(paramSig, p.keys.Sign(parts...))
}

// verifyRecordRoute reports whether mark is a Record-Route entry pinhole
// wrote for req's dialog: its MAC verifies for req's Call-ID, and its
// ftag is the From or To tag of req (a request of that dialog carries the
// dialog-creating From tag on one side or the other).
func (p *Proxy) verifyRecordRoute(req *sip.Request, mark *sip.Uri) bool {
	if mark == nil {
		return false
	}
	sig, _ := mark.UriParams.Get(paramSig)
	parts := rrParts(callID(req), mark)
	if !p.keys.Verify(sig, parts...) {
		return false
	}
	ftag := parts[2]
	var fromTag, toTag string
	if f := req.From(); f != nil {
		fromTag, _ = f.Params.Get("tag")
	}
	if t := req.To(); t != nil {
		toTag, _ = t.Params.Get("tag")
	}
	return ftag == fromTag || ftag == toTag
}

// signPath sets the MAC of our Path URI u: it covers the device's flow
// and received address, which a request from the farm will follow.
func (p *Proxy) signPath(u *sip.Uri) {
	pf, _ := u.UriParams.Get(paramPathFlow)
	rcv, _ := u.UriParams.Get(paramReceived)
	u.UriParams.Add(paramSig, p.keys.Sign(sigPath, pf, rcv))
}

func (p *Proxy) verifyPath(u *sip.Uri) bool {
	pf, _ := u.UriParams.Get(paramPathFlow)
	rcv, _ := u.UriParams.Get(paramReceived)
	sig, _ := u.UriParams.Get(paramSig)
	return p.keys.Verify(sig, sigPath, pf, rcv)
}

// hiddenSig is the MAC of a Contact topology hiding rewrote: the node it
// stands for and the user part kept from the node's Contact.
func (p *Proxy) hiddenSig(id, user string) string {
	return p.keys.Sign(sigHidden, id, user)
}

func (p *Proxy) verifyHidden(u *sip.Uri, id string) bool {
	sig, _ := u.UriParams.Get(paramSig)
	return p.keys.Verify(sig, sigHidden, id, u.User)
}
