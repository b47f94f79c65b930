package registrar

import (
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/nat"
)

// Fields are what RFC 3261 §10.3 steps 6 to 8 read of a REGISTER once its
// AOR is known and it is authorized. The registrar fills them from a
// request sipgo parsed (fieldsOf); the stateless path's raw 200
// (slowpath/raw200.go) fills them from the datagram's bytes. Both then run
// the same rules (Register) and answer from the same result, so a rule
// lives in one place.
type Fields struct {
	CallID     string
	CSeq       uint32
	Expires    int // the Expires header (ParseExpires), when HasExpires
	HasExpires bool
	UserAgent  string   // "" when absent
	Path       []string // the Path values, in order (RFC 3327)
	// SupportsOutbound and SupportsPath: the Supported header lists
	// "outbound" (RFC 5626 §6) or "path" (RFC 3327 §5.3); the 200 then
	// carries Require: outbound, or echoes Path.
	SupportsOutbound bool
	SupportsPath     bool
	SentBy           nat.SentBy // for NAT detection
	Contacts         []ContactField
}

// ContactField is one Contact of a REGISTER as sipgo's parser reads it
// (sip.ParseAddressValue fills Address and Params the same way for
// both paths).
type ContactField struct {
	Address sip.Uri
	Params  sip.HeaderParams
	// Malformed: a Contact header sipgo kept unparsed (a 400).
	Malformed bool
	// Printed is Address as sipgo prints it (sip.Uri.String), when the
	// caller knows it without printing: the raw path has the bytes sipgo
	// would print back (rawreply.ParseURI). "": print Address.
	Printed string
}

// printed is the Contact URI as the binding stores it.
func (c *ContactField) printed() string {
	if c.Printed != "" {
		return c.Printed
	}
	return c.Address.String()
}

// fieldsOf reads f from a request sipgo parsed.
func fieldsOf(req *sip.Request) (Fields, error) {
	var f Fields
	var err error
	if f.Expires, f.HasExpires, err = headerExpires(req); err != nil {
		return f, err
	}
	f.CallID = req.CallID().Value()
	f.CSeq = req.CSeq().SeqNo
	if h := req.GetHeader("User-Agent"); h != nil {
		f.UserAgent = h.Value()
	}
	for _, h := range req.GetHeaders("Path") {
		f.Path = append(f.Path, h.Value())
	}
	f.SupportsOutbound = hasTag(req, "Supported", "outbound")
	f.SupportsPath = hasTag(req, "Supported", "path")
	f.SentBy.Reliable = sip.IsReliable(req.Transport())
	if via := req.Via(); via != nil {
		f.SentBy.Via, f.SentBy.Host, f.SentBy.Port = true, via.Host, via.Port
	}
	hdrs := req.GetHeaders("Contact")
	f.Contacts = make([]ContactField, len(hdrs))
	for i, h := range hdrs {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			f.Contacts[i].Malformed = true
			continue
		}
		f.Contacts[i] = ContactField{Address: ch.Address, Params: ch.Params}
	}
	return f, nil
}

// Applied is a REGISTER applied to the store: the bindings of its AOR
// afterwards, the second the registrar read the clock in, whether its
// Path was trusted (and stored), and the durability of the change (nil:
// none to wait for).
type Applied struct {
	Stored []location.Binding
	Now    time.Time
	PathOK bool
	Commit *location.Commit
}

// Register applies a REGISTER for aor, authorized, whose fields are f,
// that arrived on flow (RFC 3261 §10.3 steps 6 to 8, RFC 5626 §6): it
// validates the Contacts, merges them into the AOR's bindings and returns
// the result, or a rejection that ErrorResponse answers. accept, when not
// nil, is called once the rules passed and before anything changes, under
// the store's lock of the AOR: an error from it leaves the store as it was
// and is returned. The raw 200 records the nonce count there, so that a
// REGISTER it leaves to sipgo after all has not used it up.
func (r *Registrar) Register(aor string, f *Fields, flow location.Flow, accept func() error) (Applied, error) {
	now := r.cfg.Now().Truncate(time.Second)
	a := Applied{Now: now, PathOK: r.cfg.Trusted.Contains(flow.Remote.Addr())}
	contacts, wildcard, err := r.parseContacts(f, flow, now, a.PathOK)
	if err != nil {
		return a, err
	}
	if r.cfg.Settle != nil {
		r.cfg.Settle(aor)
	}
	accepted := func() error {
		if accept == nil {
			return nil
		}
		return accept()
	}
	switch {
	case wildcard:
		a.Stored, a.Commit, err = r.update(aor, func(cur []location.Binding) ([]location.Binding, error) {
			// RFC 3261 §10.3 step 6: "*" removes every binding unless one
			// from the same Call-ID has a CSeq at least as high.
			for _, b := range cur {
				if b.CallID == f.CallID && b.CSeq >= f.CSeq {
					return nil, reject(400, "Out Of Order CSeq")
				}
			}
			return nil, accepted()
		})
	case len(contacts) == 0:
		// A query: list the bindings, change nothing (§10.3 step 8).
		if err := accepted(); err != nil {
			return a, err
		}
		a.Stored = r.store.Lookup(aor)
	default:
		a.Stored, a.Commit, err = r.update(aor, func(cur []location.Binding) ([]location.Binding, error) {
			next, err := r.merge(cur, contacts, aor, f.CallID, f.CSeq, now)
			if err != nil {
				return nil, err
			}
			return next, accepted()
		})
	}
	return a, err
}

// OK builds through sipgo the 200 for req that a Register returned a:
// what the raw 200 falls back to when AppendOK cannot write it.
func (r *Registrar) OK(req *sip.Request, a *Applied) (*sip.Response, error) {
	f, err := fieldsOf(req)
	if err != nil {
		return nil, err
	}
	return r.ok(req, &f, a.Stored, a.Now, a.PathOK), nil
}
