package registrar

import (
	"errors"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/nat"
)

// The mid-registrar (slowpath/midreg) validates and applies REGISTERs by
// the same rules as this registrar but answers only after the upstream
// registrar did; these exports give it the rules without the handler.

// Request is a REGISTER validated by RFC 3261 §10.3 steps 1, 2 and 5-7,
// not yet applied to the store.
type Request struct {
	AOR      string
	CallID   string
	CSeq     uint32
	Wildcard bool // "Contact: *" with Expires 0
	Contacts []Contact
}

// Contact is one Contact of a Request.
type Contact struct {
	// Binding is what would be stored; AOR, CallID and CSeq are set by Merge.
	Binding location.Binding
	// Expires is the granted expiry in seconds within the configured
	// bounds; 0 removes the binding.
	Expires int
	key     string
}

// Parse validates req as the registrar would, without authorization: it
// returns an error that ErrorResponse turns into the right status.
func (r *Registrar) Parse(req *sip.Request, flow location.Flow, now time.Time) (*Request, error) {
	aor, err := r.requestAOR(req)
	if err != nil {
		return nil, err
	}
	f, err := fieldsOf(req)
	if err != nil {
		return nil, err
	}
	ps, wildcard, err := r.parseContacts(&f, flow, now.Truncate(time.Second), r.cfg.Trusted.Contains(flow.Remote.Addr()))
	if err != nil {
		return nil, err
	}
	out := &Request{AOR: aor, CallID: req.CallID().Value(), CSeq: req.CSeq().SeqNo, Wildcard: wildcard}
	for _, p := range ps {
		out.Contacts = append(out.Contacts, Contact{Binding: p.b, Expires: p.expires, key: p.key})
	}
	return out, nil
}

// Merge applies reg to the current bindings of its AOR (§10.3 steps 6
// and 7, RFC 5626 §6) and returns the new set, or a rejection.
func (r *Registrar) Merge(cur []location.Binding, reg *Request, now time.Time) ([]location.Binding, error) {
	if reg.Wildcard {
		for _, b := range cur {
			if b.CallID == reg.CallID && b.CSeq >= reg.CSeq {
				return nil, reject(400, "Out Of Order CSeq")
			}
		}
		return nil, nil
	}
	ps := make([]pending, len(reg.Contacts))
	for i, c := range reg.Contacts {
		ps[i] = pending{b: c.Binding, key: c.key, expires: c.Expires}
	}
	return r.merge(cur, ps, reg.AOR, reg.CallID, reg.CSeq, now)
}

// Find returns the index in bs of the binding that c would replace, or -1.
func Find(bs []location.Binding, c Contact) int {
	return findBinding(bs, pending{b: c.Binding, key: c.key, expires: c.Expires})
}

// Answer builds the 200 listing bs with their remaining expiry (§10.3 step 8).
func (r *Registrar) Answer(req *sip.Request, bs []location.Binding, now time.Time) *sip.Response {
	src, _ := nat.ParseAddrPort(req.Source())
	f, _ := fieldsOf(req) // only its Supported and Path are read: no error
	return r.ok(req, &f, bs, now.Truncate(time.Second), r.cfg.Trusted.Contains(src.Addr()))
}

// Reject returns an error that ErrorResponse answers with code and reason.
func Reject(code int, reason string, hdrs ...sip.Header) error {
	return reject(code, reason, hdrs...)
}

// ErrorResponse answers req for an error from Parse, Merge or Reject; any
// other error is a 500.
func ErrorResponse(req *sip.Request, err error) *sip.Response {
	var rj *rejection
	if !errors.As(err, &rj) {
		rj = &rejection{code: 500, reason: "Server Internal Error"}
	}
	res := reply(req, rj.code, rj.reason)
	for _, h := range rj.headers {
		res.AppendHeader(h)
	}
	return res
}

// Reply builds a response to req with the registrar's fixed headers
// (received on the top Via, RFC 3261 §18.2.1).
func Reply(req *sip.Request, code int, reason string) *sip.Response {
	return reply(req, code, reason)
}

// Observe counts a response to a REGISTER that the stateless path sent
// without the registrar (the raw 401 of a first registration), in
// pinhole_registrar_replies_total as if the registrar had sent it.
func Observe(code int) { observe(code) }
