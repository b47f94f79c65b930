package proxy

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/resolve"
)

// Resolver is what the proxy needs of DNS (internal/resolve): the answer
// kept for a name, without waiting.
type Resolver interface {
	Cached(d resolve.Dest) *resolve.Answer
}

// OutboundName returns the outbound proxy's destination when its host is
// a DNS name: host, port and transport as RFC 3263 §4 reads them (a port
// means A only, a transport without port SRV for it, neither NAPTR). An
// IP address or a host that is not a valid name reports false: it is
// sent to as written.
func OutboundName(u *sip.Uri) (resolve.Dest, bool) {
	hp := u.Host
	if strings.Contains(hp, ":") && !strings.HasPrefix(hp, "[") {
		hp = "[" + hp + "]"
	}
	d, err := resolve.ParseHostPort(hp)
	if err != nil || !d.IsName() {
		return resolve.Dest{}, false
	}
	if u.Port > 0 && u.Port < 1<<16 {
		d.Port = uint16(u.Port)
	}
	d.Secure = u.Scheme == "sips"
	if tr, ok := u.UriParams.Get("transport"); ok {
		t, err := resolve.ParseTransport(tr)
		if err != nil {
			return resolve.Dest{}, false // a transport pinhole does not send on: left as it is
		}
		d.Transport = t
	}
	return d, true
}

// maxOutboundTries bounds the addresses of the outbound proxy's name one
// request tries. Each silent one holds the request until timer B or F
// (32 s), about as long as the caller's own transaction lives, so more
// would reach nobody; a refused connection or a 503 moves on at once.
const maxOutboundTries = 3

// resolveOutbound returns the targets of this request from the outbound
// name's cached answer, in RFC 2782 order (lowest priority first,
// weighted random within a priority), among transports pinhole has a
// listener for, at most maxOutboundTries.
func (p *Proxy) resolveOutbound() []resolve.Target {
	a := p.cfg.OutboundDNS.Cached(*p.outboundName)
	if a == nil {
		return nil
	}
	var ts []resolve.Target
	for _, t := range a.Targets {
		if p.listenerOf(t.Transport) != nil {
			ts = append(ts, t)
		}
	}
	ts = resolve.Order(ts, nil)
	return ts[:min(len(ts), maxOutboundTries)]
}

// outboundMoveOn reports whether a request to the outbound proxy goes on
// to the name's next address: only when the one tried gave no answer (a
// timeout or a transport error) or 503 (RFC 3263 §4.3). Any other answer
// is the outbound proxy's, and goes to the caller.
func (c *call) outboundMoveOn(bs []*branch) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range bs {
		if b.code != 0 && b.code != sip.StatusServiceUnavailable {
			return false
		}
	}
	return true
}
