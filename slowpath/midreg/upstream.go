package midreg

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/nat"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

// asked is one contact as sent upstream, to find its expiry in the answer.
type asked struct {
	uri     sip.Uri
	expires int
}

// outgoing builds the REGISTER for upstream i, at dst, from the device's (RFC 3261
// §16.6): pinhole inserted, Expires raised in the throttling modes,
// Max-Forwards decremented, pinhole's Via on top. after is the AOR's set
// once the request applies (mode aor asks Expires 0 when it is empty).
func (m *MidRegistrar) outgoing(req *sip.Request, reg *registrar.Request, after []location.Binding, i int, dst netip.AddrPort) (*sip.Request, []asked) {
	u := m.cfg.Upstreams[i]
	l := m.cfg.listener(u.Transport)
	r := req.Clone()
	for r.RemoveHeader("Route") {
		// A Route naming pinhole was consumed here (§16.4); pinhole, not
		// the device, chooses the main registrar.
	}
	mf := sip.MaxForwardsHeader(70)
	if old := req.MaxForwards(); old != nil {
		mf = sip.MaxForwardsHeader(old.Val() - 1)
	}
	r.RemoveHeader("Max-Forwards") // sipgo's clone shares this header: replace, never change
	r.AppendHeader(&mf)

	var out []asked
	if !reg.Wildcard && len(reg.Contacts) > 0 {
		out = m.insert(r, reg, after, l)
	}
	if via := r.Via(); via != nil {
		// §18.2.1 and RFC 3581: the device's Via says where it really is.
		if src, ok := nat.ParseAddrPort(req.Source()); ok {
			via = via.Clone()
			if strings.Trim(via.Host, "[]") != src.Addr().String() {
				via.Params.Add("received", src.Addr().String())
			}
			if v, ok := via.Params.Get("rport"); ok && v == "" {
				via.Params.Add("rport", strconv.Itoa(int(src.Port())))
			}
			r.ReplaceHeader(via)
		}
	}
	r.PrependHeader(m.via(l))
	r.SetTransport(u.Transport)
	r.SetDestination(dst.String())
	r.Laddr = sip.Addr{}
	if u.Transport == "UDP" {
		// Leave from the listening socket, the address the main registrar
		// trusts and answers to.
		r.Laddr = sip.Addr{IP: l.Local.Addr().AsSlice(), Port: int(l.Local.Port())}
	}
	return r, out
}

// insert puts pinhole into r's contacts or Path and sets the expiries.
func (m *MidRegistrar) insert(r *sip.Request, reg *registrar.Request, after []location.Binding, l *Listener) []asked {
	upExpires := func(device int) int {
		if device == 0 || m.cfg.Mode == ModeMirror {
			return device
		}
		return m.cfg.OutgoingExpires
	}
	for r.RemoveHeader("Contact") {
	}
	r.RemoveHeader("Expires")
	var out []asked
	any := false
	add := func(u sip.Uri, exp int, q uint16) {
		ch := &sip.ContactHeader{Address: u, Params: sip.NewParams()}
		ch.Params.Add("expires", strconv.Itoa(exp))
		if q != 1000 {
			ch.Params.Add("q", registrar.FormatQ(q))
		}
		r.AppendHeader(ch)
		out = append(out, asked{uri: u, expires: exp})
		any = any || exp > 0
	}
	switch {
	case m.cfg.Mode == ModeAOR:
		exp := 0
		if len(after) > 0 {
			exp = m.cfg.OutgoingExpires
		}
		add(m.insertedURI(aorToken(reg.AOR), l, false), exp, 1000)
	case m.cfg.Insertion == InsertPath:
		for _, c := range reg.Contacts {
			var u sip.Uri
			if err := sip.ParseUri(c.Binding.Contact, &u); err != nil {
				continue // stored by registrar.Parse from a parsed URI: cannot happen
			}
			add(u, upExpires(c.Expires), c.Binding.Q)
		}
		// RFC 3327 §5.2: the proxy's Path goes on top of any already there.
		path := m.insertedURI(pathToken(reg.AOR, reg.CallID), l, true)
		r.PrependHeader(sip.NewHeader("Path", "<"+path.String()+">"))
	default:
		for _, c := range reg.Contacts {
			b := c.Binding
			b.AOR = reg.AOR
			add(m.insertedURI(contactToken(&b), l, false), upExpires(c.Expires), b.Q)
		}
	}
	e := 0
	if any {
		e = m.cfg.OutgoingExpires
		if m.cfg.Mode == ModeMirror {
			e = out[0].expires
		}
	}
	r.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(e)))
	return out
}

// insertedURI is sip:<token>@<pinhole> on listener l; lr for a Path.
// Built the same way every time: a de-registration must name the
// byte-identical contact the main registrar stored.
func (m *MidRegistrar) insertedURI(token string, l *Listener, lr bool) sip.Uri {
	u := sip.Uri{Scheme: "sip", User: token, Host: l.Host, Port: l.Port, UriParams: sip.NewParams()}
	if l.Transport != "UDP" {
		u.UriParams.Add("transport", strings.ToLower(l.Transport))
	}
	if lr {
		u.UriParams.Add("lr", "")
	}
	return u
}

func (m *MidRegistrar) via(l *Listener) *sip.ViaHeader {
	return &sip.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       l.Transport,
		Host:            l.Host,
		Port:            l.Port,
		Params:          sip.HeaderParams{{K: "branch", V: sip.GenerateBranchN(16)}},
	}
}

// grants reads the expiry the upstream granted each asked contact: its
// expires parameter in the 200, else the Expires header, else what was
// asked (RFC 3261 §10.2.4).
func grants(res *sip.Response, as []asked) []int {
	def := -1
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			def = n
		}
	}
	var listed []contactValue
	for _, h := range res.GetHeaders("Contact") {
		listed = append(listed, splitContacts(h.Value())...)
	}
	out := make([]int, len(as))
	for k, a := range as {
		out[k] = a.expires
		if def >= 0 {
			out[k] = def
		}
		key := uriKey(&a.uri)
		for _, c := range listed {
			if uriKey(&c.uri) != key {
				continue
			}
			if v, ok := c.params.Get("expires"); ok {
				if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
					out[k] = n
				}
			}
			break
		}
		out[k] = min(out[k], max(a.expires, 0))
	}
	return out
}

// uriKey compares the parts of a contact the registrar keys on: user,
// host without case, port.
func uriKey(u *sip.Uri) string {
	return u.User + "@" + strings.ToLower(strings.Trim(u.Host, "[]")) + ":" + strconv.Itoa(u.Port)
}

type contactValue struct {
	uri    sip.Uri
	params sip.HeaderParams
}

// splitContacts parses a Contact header value that may hold several
// comma-separated entries (RFC 3261 §20.10); commas inside <> or quotes
// belong to the entry. Unparsable entries are skipped: an upstream's odd
// contact for another device must not fail this one.
func splitContacts(v string) []contactValue {
	var out []contactValue
	inAngle, inQuote, start := false, false, 0
	flush := func(end int) {
		s := strings.TrimSpace(v[start:end])
		if s == "" || s == "*" {
			return
		}
		var c contactValue
		c.params = sip.NewParams()
		if _, err := sip.ParseAddressValue(s, &c.uri, &c.params); err == nil {
			out = append(out, c)
		}
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"' && !inAngle:
			inQuote = !inQuote
		case c == '\\' && inQuote:
			i++
		case c == '<' && !inQuote:
			inAngle = true
		case c == '>' && !inQuote:
			inAngle = false
		case c == ',' && !inQuote && !inAngle:
			flush(i)
			start = i + 1
		}
	}
	flush(len(v))
	return out
}

// deregistration builds pinhole's own REGISTER removing b's upstream
// contact (Expires 0), sent from the listener the main registrar trusts.
// It carries no credentials: the main registrar must accept REGISTER from
// pinhole's address without a challenge (docs/midregistrar.md).
func (m *MidRegistrar) deregistration(b *location.Binding) *sip.Request {
	i := int(b.Upstream)
	if i >= len(m.cfg.Upstreams) {
		i = 0
	}
	up := m.cfg.Upstreams[i]
	// The device's Call-ID picks the node its REGISTERs went to (dns.go).
	dsts := m.targets(i, b.CallID)
	if len(dsts) == 0 {
		return nil
	}
	l := m.cfg.listener(up.Transport)
	user, domain := splitAOR(b.AOR)
	r := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: domain, UriParams: sip.NewParams(), Headers: sip.NewParams()})
	aor := sip.Uri{Scheme: "sip", User: user, Host: domain, UriParams: sip.NewParams(), Headers: sip.NewParams()}
	r.AppendHeader(m.via(l))
	r.AppendHeader(&sip.FromHeader{Address: aor, Params: sip.HeaderParams{{K: "tag", V: randomHex(8)}}})
	r.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	callID := sip.CallIDHeader(randomHex(16) + "@pinhole")
	r.AppendHeader(&callID)
	r.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.REGISTER})
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)

	var contact sip.Uri
	switch {
	case m.cfg.Mode == ModeAOR:
		contact = m.insertedURI(aorToken(b.AOR), l, false)
	case m.cfg.Insertion == InsertPath:
		if err := sip.ParseUri(b.Contact, &contact); err != nil {
			return nil
		}
	default:
		contact = m.insertedURI(contactToken(b), l, false)
	}
	r.AppendHeader(&sip.ContactHeader{Address: contact, Params: sip.HeaderParams{{K: "expires", V: "0"}}})
	r.AppendHeader(sip.NewHeader("Expires", "0"))
	r.AppendHeader(sip.NewHeader("User-Agent", "pinhole"))
	cl := sip.ContentLengthHeader(0)
	r.AppendHeader(&cl)
	r.SetTransport(up.Transport)
	r.SetDestination(dsts[0].String())
	if up.Transport == "UDP" {
		r.Laddr = sip.Addr{IP: l.Local.Addr().AsSlice(), Port: int(l.Local.Port())}
	}
	return r
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
