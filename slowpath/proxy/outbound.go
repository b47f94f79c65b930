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

// resolveOutbound picks the target of this request from the outbound
// name's cached answer: the first in RFC 2782 order (lowest priority,
// weighted random within it), among targets pinhole has a listener for.
func (p *Proxy) resolveOutbound() (resolve.Target, bool) {
	a := p.cfg.OutboundDNS.Cached(*p.outboundName)
	if a == nil {
		return resolve.Target{}, false
	}
	var ts []resolve.Target
	for _, t := range a.Targets {
		if p.listenerOf(t.Transport) != nil {
			ts = append(ts, t)
		}
	}
	if len(ts) == 0 {
		return resolve.Target{}, false
	}
	return resolve.Order(ts, nil)[0], true
}
