package absorb

import (
	"bytes"
	"math"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/rawreply"
	"github.com/pinhole-sip/pinhole/internal/scan"
)

// The slow path's raw 200 (docs/registrar.md, "The 200 from raw bytes")
// answers a REGISTER with credentials without sipgo's objects, which Fill
// reads. PrepareRaw reads the same registration from the datagram's bytes
// instead, and the fill it returns takes the 200's bytes: both then go
// through fillFrom, so the entry is the one Fill would have stored. Only
// the reading differs, and it vouches for what it reads: each value must
// be one whose form sipgo prints in a way known here (rawreply's
// grammars), else the slow path answers through sipgo and Fill runs.
// Through sipgo a fill cost the request's parse and the 200's printing;
// here the scanner reads the request without allocating, and what is
// kept is copied once.

// RawFill prepares the answer to the next refresh of the registration a
// REGISTER made, from the bytes of the 200 the slow path sent for it
// (res, which it does not keep) over flow. It is called from the slow
// path's goroutine, as Fill is.
type RawFill = func(res []byte, flow location.Flow)

// PrepareRaw reads data, a REGISTER the slow path means to answer with a
// 200 written from bytes, as Fill reads the request sipgo parses from the
// same bytes. It reports false when it cannot vouch for reading it so:
// the slow path should then answer through sipgo, and Fill prepares the
// reply. Otherwise the slow path calls the returned RawFill once its 200
// is sent. PrepareRaw keeps nothing of data.
func (c *Cache) PrepareRaw(data []byte) (RawFill, bool) {
	in, ok := rawRequestOf(data)
	if !ok {
		return nil, false // counted by the slow path, which declines
	}
	return func(res []byte, flow location.Flow) {
		r := fillNotUsable
		if flow.Transport == location.TransportUDP {
			in.reg.flow = flow
			r = c.fillFrom(&in, unsafe.String(unsafe.SliceData(res), len(res)))
		}
		c.m.fills[r].Add(1)
		c.m.rawFills.Add(1)
	}, true
}

// scanAll bounds nothing: the slow path applied its limits before it
// decided to answer from bytes.
var scanAll = scan.Limits{MaxMessageBytes: math.MaxInt, MaxHeaders: math.MaxInt}

// rawRequestOf reads in from a REGISTER's bytes as requestOf reads it
// from sipgo's objects, or reports false where it cannot be sure to.
// Every string it keeps is a copy.
func rawRequestOf(data []byte) (request, bool) {
	var r scan.Register
	if scan.Scan(data, scanAll, &r) != scan.OK {
		return request{}, false
	}
	var (
		via      rawreply.Via
		ruri     rawreply.URI
		from, to rawreply.Address
	)
	// The top Via's sent-by, the Request-URI, From and To are kept as
	// the bytes sipgo prints back for them (rawreply vouches for that);
	// a bare From or To sipgo prints inside angle brackets.
	if !rawreply.ParseVia(r.Vias[0], &via) || !rawreply.ParseURI(r.RequestURI, &ruri) ||
		!rawreply.ParseAddress(r.From, &from) || !rawreply.ParseAddress(r.To, &to) || to.Tag {
		return request{}, false
	}
	// canonicalAOR's rules: ParseURI allows only the sip and sips schemes.
	if len(to.URI.User) == 0 || len(to.URI.Host) == 0 {
		return request{}, false
	}
	callID := bytes.TrimSpace(r.CallID) // as sipgo reads a Call-ID
	if len(callID) == 0 {
		return request{}, false
	}
	// Of the registration, the AOR, Call-ID and sent-by are one copy and
	// the rest a hash (Reg): an entry lives as long as its phone
	// registers, and each string of its own was one more object for
	// every GC cycle to mark. The Contacts are hashed as sipgo prints
	// them, and only the hash is kept.
	var x identity
	x.reset()
	x.field(b2s(r.RequestURI))
	x.address(r.From, from.Bare)
	x.address(r.To, to.Bare)
	// sipgo keeps Expires, User-Agent and Supported as generic headers:
	// the value trimmed of white space.
	x.optional(b2s(bytes.TrimSpace(r.Expires)), r.Expires != nil)
	x.optional(b2s(bytes.TrimSpace(r.UserAgent)), r.UserAgent != nil)
	x.optional(b2s(bytes.TrimSpace(r.Supported)), r.Supported != nil)
	x.count(r.NumContact)
	for i := 0; i < r.NumContact; i++ {
		c := r.Contacts[i]
		if !rawreply.ParsableContact(c) || len(c) == 1 && c[0] == '*' {
			return request{}, false
		}
		if printedAsIs(c) {
			x.field(b2s(c)) // what sipgo would print, without printing it
			continue
		}
		v, ok := contact(c)
		if !ok {
			return request{}, false
		}
		x.field(v)
	}
	g := &Reg{nContacts: uint8(r.NumContact), ident: x.sum()}
	t := newRegText(len(to.URI.User) + 1 + len(to.URI.Host) + len(callID) + via.SentByEnd)
	t.aor(to.URI.User, to.URI.Host)
	t.addBytes(callID)
	t.addBytes(r.Vias[0][:via.SentByEnd])
	if !t.done(g) {
		return request{}, false
	}
	g.cseq.Store(r.CSeq)
	// The To user is the AOR's; the host is read once, by the fill.
	return request{reg: g, nVia: r.NumVias, user: g.aor()[:len(to.URI.User)], host: string(to.URI.Host)}, true
}

// b2s is v as a string, without a copy: only for the time of a call.
func b2s(v []byte) string { return unsafe.String(unsafe.SliceData(v), len(v)) }

// addBytes appends v as the next field.
func (t *regText) addBytes(v []byte) {
	t.b = append(t.b, v...)
	t.mark()
}

// aor appends canonicalAOR's "user@host", the host lower case as
// strings.ToLower makes it, as the next field.
func (t *regText) aor(user, host []byte) {
	t.b = append(t.b, user...)
	t.b = append(t.b, '@')
	if !ascii(host) {
		// Rare; the buffer may then move, which costs only a copy: no
		// field was cut from it yet.
		t.b = append(t.b, strings.ToLower(string(host))...)
	} else {
		for _, c := range host {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			t.b = append(t.b, c)
		}
	}
	t.mark()
}

// ascii reports whether v is all ASCII.
func ascii(v []byte) bool {
	for _, c := range v {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// address adds a From or To value that rawreply.ParseAddress accepted,
// as sipgo prints it: a bare one inside angle brackets.
func (x *identity) address(v []byte, bare bool) {
	if !bare {
		x.field(b2s(v))
		return
	}
	_ = x.h.WriteByte('<')
	_, _ = x.h.Write(v)
	_ = x.h.WriteByte('>')
	x.length(uint32(len(v) + 2))
}

// printedAsIs reports whether sipgo prints the Contact value v, which
// rawreply.ParsableContact accepted, back byte for byte after parsing it:
// it has no display name (sipgo may add a space before the "<"), its URI
// is one ParsableContact vouches sipgo prints as it is, and each of its
// parameters has a name seen once (sipgo keeps the last of a name) and a
// value, if any, without a space or tab (sipgo quotes such a value again,
// its own quotes included). Almost every device's Contact is of that form
// (fastpath/testdata/corpus): hashed from its bytes, it costs no parse
// and no printing, which were 11 of the 29 allocations of a fill from
// bytes (BenchmarkFill, 2026-12-07). FuzzContactPrintedAsIs holds it to
// sipgo's own printing.
func printedAsIs(v []byte) bool {
	if len(v) == 0 || v[0] != '<' {
		return false
	}
	i := bytes.IndexByte(v, '>') + 1
	if i == 0 {
		return false
	}
	var names [maxContactParams][]byte
	n := 0
	for i < len(v) {
		if v[i] != ';' || n == len(names) {
			return false
		}
		i++
		ns := i
		for i < len(v) && v[i] != '=' && v[i] != ';' {
			i++
		}
		name := v[ns:i]
		if len(name) == 0 {
			return false
		}
		for _, seen := range names[:n] {
			if bytes.EqualFold(seen, name) {
				return false
			}
		}
		names[n] = name
		n++
		if i == len(v) || v[i] != '=' {
			continue
		}
		i++
		vs := i
		if i < len(v) && v[i] == '"' {
			q := bytes.IndexByte(v[i+1:], '"')
			if q < 0 {
				return false
			}
			i += q + 2
		} else {
			for i < len(v) && v[i] != ';' {
				i++
			}
		}
		if value := v[vs:i]; len(value) == 0 || bytes.ContainsAny(value, " \t") {
			return false
		}
	}
	return true
}

// maxContactParams bounds the parameters printedAsIs compares, so that
// its check for a name seen twice stays short; a Contact with more is
// printed by sipgo.
const maxContactParams = 8

// contact is a Contact value as sipgo prints it after parsing it, for a
// value rawreply.ParsableContact vouches sipgo parses (it has no white
// space around its parameters, which the slow path's parser trims).
// It is printed by sipgo itself: its display name and parameters have
// more forms than a grammar here should copy.
func contact(v []byte) (string, bool) {
	if !rawreply.ParsableContact(v) || len(v) == 1 && v[0] == '*' {
		return "", false
	}
	h := sip.ContactHeader{}
	var err error
	if h.DisplayName, err = sip.ParseAddressValue(string(v), &h.Address, &h.Params); err != nil {
		return "", false
	}
	return h.Value(), true
}
