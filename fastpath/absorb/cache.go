package absorb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/scan"
)

// Mode says which slow path fills the cache; the mid-registrar adds the
// "upstream not due" rule.
type Mode uint8

const (
	Registrar    Mode = iota // standalone registrar
	MidRegistrar             // mid-registrar, contact or AOR throttling
)

// Options configure a Cache.
type Options struct {
	Store      location.Store // the authority; Touch receives absorbed refreshes
	MaxEntries int64          // AORs held at most (ristretto MaxCost, cost 1 each)
	Mode       Mode
	// RenewalMargin (mid-registrar): a refresh is absorbed only while
	// now + its expiry + RenewalMargin ≤ the upstream expiry, as
	// slowpath/midreg decides.
	RenewalMargin time.Duration
	// Refuse is a test hook: when it returns true a Fill's Set is refused
	// and a Loop's Get is treated as evicted, as ristretto may do at any time.
	Refuse func() bool
	Now    func() time.Time // tests; default time.Now
	// Digest, when set, returns the slow path's current digest check
	// (a reload swaps it; the nonce secret and replay memory stay): every
	// refresh must then carry credentials it accepts, and one without any
	// is challenged from the loop. nil: no authentication.
	Digest func() *digest.Verifier
}

// Entry is the prepared answer for one AOR: every registration holding
// bindings in it (members) and every binding in the order the 200 lists
// them (slots). The store's change hook drops it; the registrations'
// identities (Reg) outlive it in their own cache, so that the next fill,
// after a slow-path answer to one phone, can list the other phones again
// (docs/fastpath.md, "AORs with several registrations").
type Entry struct {
	members []member
	// form is the reply's tail; with several registrations, slots says
	// whose binding each of its Contact expiries is (form.cut.heads[i]).
	form  *form
	slots []slot
	// realm and user: the protection domain of the AOR's domain and the
	// To user, the identity credentials must be for (slowpath/auth);
	// authOK false when the domain has no realm.
	realm  digest.Realm
	user   string
	authOK bool
}

// oneReg is the Entry of an AOR with one registration, the common case,
// allocated with its member, form and answer as one object: every object
// an AOR holds is one more for each GC cycle to mark. The answer, which
// the Reg keeps for a retransmission, then keeps the Entry alive too;
// that Entry holds no registration but the Reg itself.
type oneReg struct {
	e Entry
	m [1]member
	f form
	a answer
}

// form is the reply's text after CSeq and before Date. With one
// registration, pre is all of it (its Contacts' expiries never change).
// With several, pre and cut.post are the lines before the first Contact
// and after the last, and each Contact line is cut.heads[i] ("Contact:
// <uri>;expires="), the seconds left, cut.rests[i] (the other parameters
// and CRLF). It points at no registration, so that an answer kept for a
// retransmission keeps nothing else alive.
type form struct {
	pre []byte
	cut *cutForm // nil with one registration
}

// cutForm is the part of a form of several registrations.
type cutForm struct {
	post         []byte
	heads, rests [][]byte
}

// slot is whose binding a Contact line of the form lists.
type slot struct {
	reg *Reg
	b   *binding
}

// member is one registration of an Entry.
type member struct {
	reg *Reg
	ans *answer
}

// answer is what a registration's last absorbed refresh got from one
// entry: the form and each Contact's expiry as listed. The Reg keeps it
// (answeredIn) to answer that refresh's retransmission the same way,
// whatever entry holds the AOR by then.
type answer struct {
	form *form
	left []atomic.Int64
}

// Reg is one registration (Call-ID, flow and Contacts) as its last 200
// printed it. The identity fields never change after Fill; cseq, last
// and the retransmission fields move in place when a refresh is
// absorbed, by the loop that owns the flow.
//
// Of the identity, only what the fast path reads back is kept as text:
// the AOR, the Call-ID and the top Via's sent-by, cut from one string.
// The fields a refresh must only repeat (Request-URI, From, To, Expires,
// User-Agent, Supported, the Contacts) are kept as their hash, ident:
// kept whole, they were some 250 B of every registration, each a string
// of its own (a header and an object for every GC cycle to mark).
type Reg struct {
	text      string
	end       [numFields]uint16
	ident     uint64 // identity.sum of the fields as sipgo printed them
	flow      location.Flow
	nContacts uint8
	bindings  []binding
	// one holds the bindings of a registration of one Contact, the
	// common case, so that they are no object of their own.
	one [1]binding

	cseq atomic.Uint32
	last atomic.Int64 // unix second of the last refresh, absorbed or the slow path's (then the store's Updated)
	// The last absorbed request's top Via branch (hash) and To tag, to
	// answer its retransmission with the same tag as sipgo's transaction
	// layer would (RFC 3261 §17.2.1).
	branch       atomic.Uint64
	tagHi, tagLo atomic.Uint64
	// answeredIn is the answer the last absorbed refresh got: its
	// retransmission gets it again (the other phones' expiries as they
	// were listed) even after a fill replaced the entry.
	answeredIn atomic.Pointer[answer]
}

// The fields of a Reg's text, in order.
const (
	fieldAOR    = iota // canonical "user@host"
	fieldCallID        // as sipgo reads it
	fieldSentBy        // the top Via up to its parameters, as sipgo prints it
	numFields
)

// maxText bounds a Reg's text, so that its field ends fit in a uint16; a
// request with more is not a device's and goes to the slow path.
const maxText = math.MaxUint16

func (g *Reg) field(f int) string {
	start := uint16(0)
	if f > 0 {
		start = g.end[f-1]
	}
	return g.text[start:g.end[f]]
}

func (g *Reg) aor() string    { return g.field(fieldAOR) }
func (g *Reg) callID() string { return g.field(fieldCallID) }
func (g *Reg) sentBy() string { return g.field(fieldSentBy) }

// regText builds a Reg's text: each field appended in order, then marked.
// Its buffer is allocated once with room for every field (size), so that
// the text is one object.
type regText struct {
	b   []byte
	end [numFields]uint16
	n   int // fields marked
}

func newRegText(size int) regText { return regText{b: make([]byte, 0, size)} }

// mark ends the next field where the text ends now.
func (t *regText) mark() {
	t.end[t.n] = uint16(len(t.b))
	t.n++
}

// add appends v as the next field.
func (t *regText) add(v string) {
	t.b = append(t.b, v...)
	t.mark()
}

// done stores the text in g; false when it outgrew maxText.
func (t *regText) done(g *Reg) bool {
	if len(t.b) > maxText || t.n != numFields {
		return false
	}
	g.text = unsafe.String(unsafe.SliceData(t.b), len(t.b))
	g.end = t.end
	return true
}

// identitySeed keys every identity hash of the process: the fills' and
// the loops' must agree, and no one outside can choose two requests of
// one hash without it.
var identitySeed = maphash.MakeSeed()

// identity hashes the fields a refresh must repeat exactly: the
// Request-URI, From, To, then Expires, User-Agent and Supported (each
// present or not), then the Contacts, followed by every field's length
// (or absence), so that no two lists of fields hash alike but by chance.
// A fill hashes them as sipgo prints them, the loop as the refresh
// carries them. With 64 bits and a seed drawn at start, a refresh that
// changed one of them passes for the same with a chance of 2⁻⁶⁴, which
// no sender can raise without the seed.
type identity struct {
	h    maphash.Hash
	lens [identityFields * 4]byte // each field's length, little endian
	n    int                      // fields added
}

// identityFields: Request-URI, From, To, the three optional headers, the
// number of Contacts and the Contacts.
const identityFields = 3 + 3 + 1 + scan.MaxContacts

// absent is the length an absent header is hashed with.
const absent = math.MaxUint32

func (x *identity) reset() {
	if x.h.Seed() != identitySeed {
		x.h.SetSeed(identitySeed)
	}
	x.h.Reset()
	x.n = 0
}

// length records the next field's length.
func (x *identity) length(n uint32) {
	if x.n < identityFields {
		binary.LittleEndian.PutUint32(x.lens[4*x.n:], n)
	}
	x.n++ // more Contacts than the scanner reads: sum tells them apart
}

// field adds a field that is always present.
func (x *identity) field(v string) {
	_, _ = x.h.WriteString(v) // maphash.Hash's writes never fail
	x.length(uint32(len(v)))
}

// optional adds a header that may be absent.
func (x *identity) optional(v string, present bool) {
	if !present {
		x.length(absent)
		return
	}
	x.field(v)
}

// count adds how many Contacts follow.
func (x *identity) count(n int) { x.length(uint32(n)) }

func (x *identity) sum() uint64 {
	_, _ = x.h.Write(x.lens[:4*min(x.n, identityFields)]) // the lengths of this hash's fields only
	_ = x.h.WriteByte(byte(x.n))
	return x.h.Sum64()
}

// binding is one refreshed binding: what Touch needs and its rules.
type binding struct {
	contact string
	exp     int64 // granted expiry, seconds
	// until is the unix second by which now+exp must stay (upstream not
	// due); MaxInt64 standalone. A fill of another phone moves it forward
	// (addOthers) when the mid-registrar in mode aor renewed the AOR's one
	// upstream registration for every phone.
	until atomic.Int64
}

// maxRegs bounds the registrations of one Entry, so that the loop's
// search for a refresh's Call-ID among them stays short. An AOR with more
// is answered by the slow path (shared_aor).
const maxRegs = 16

// maxSlots bounds the bindings of an Entry with several registrations,
// so that each loop's scratch for their expiries is allocated once.
const maxSlots = 64

// Cache holds Entries, and the registrations they are made of, in
// ristretto. It is safe for concurrent use.
type Cache struct {
	opt  Options
	rc   *ristretto.Cache[uint64, *Entry]
	regs *ristretto.Cache[uint64, *regSet] // by AOR; read by fills only
	seed maphash.Seed
	// gen counts invalidations; a Fill that saw it move while it worked
	// deletes what it set (see Fill).
	gen atomic.Uint64
	m   cacheCounters

	loopsMu    sync.Mutex
	loops      []*Loop
	flushMu    sync.Mutex
	flushLoops []*Loop
}

// cacheCounters are slow-path-side counts (not per absorbed packet).
type cacheCounters struct {
	fills         [numFillResults]atomic.Uint64
	invalidations atomic.Uint64
	touched       atomic.Uint64
	touchRefused  atomic.Uint64
	rawFills      atomic.Uint64 // fills read from bytes (PrepareRaw), of every result
}

// fillResult labels pinhole_fastpath_fills_total.
type fillResult uint8

const (
	fillStored    fillResult = iota
	fillShared               // the AOR holds a registration the cache has no current answer for
	fillNotUsable            // not a UDP 200 to a REGISTER with contacts, or a form the fast path does not vouch for
	fillStale                // the store no longer holds what the 200 said
	fillRefused              // ristretto (or the Refuse hook) refused the Set
	fillRaced                // a change arrived while filling
	numFillResults
)

var fillResultNames = [numFillResults]string{"stored", "shared_aor", "not_usable", "stale", "refused", "raced"}

// New builds a Cache. It fails when ristretto cannot be set up.
func New(opt Options) (*Cache, error) {
	if opt.Store == nil {
		return nil, errors.New("absorb: no location store")
	}
	if opt.MaxEntries < 1 {
		return nil, fmt.Errorf("absorb: cache size %d must be at least 1", opt.MaxEntries)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *Entry]{
		NumCounters:        counters(opt.MaxEntries),
		MaxCost:            opt.MaxEntries,
		BufferItems:        64,
		Metrics:            true,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("create absorption cache: %w", err)
	}
	regs, err := ristretto.NewCache(&ristretto.Config[uint64, *regSet]{
		NumCounters:        counters(opt.MaxEntries),
		MaxCost:            opt.MaxEntries,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("create absorption cache of registrations: %w", err)
	}
	return &Cache{opt: opt, rc: rc, regs: regs, seed: maphash.MakeSeed()}, nil
}

// counters is how many admission counters each ristretto cache keeps for
// maxEntries AORs: one per AOR, where ristretto's advice is ten per item
// held. The counters estimate how often each key is read, and serve only
// once the cache is full, to choose between a new AOR and one held: ten
// per item pay off for a skewed workload (a few keys read far more than
// the rest), while every AOR here is read about once per refresh
// interval. They were the cache's largest fixed cost: 16.8 M per cache
// at the default cache_size of a million, about 100 MB for the two
// caches whatever the number of devices, and each read's increment in a
// sketch that size missed the processor's caches (ristretto's
// processItems goroutine, 6 % of the CPU profile of first registrations
// at 6 000/s on 2026-12-07). One per AOR keeps the sketch's reset period
// (ristretto halves the counts after as many increments as counters) at
// about one read of every AOR.
func counters(maxEntries int64) int64 { return maxEntries }

// Close stops ristretto's goroutines.
func (c *Cache) Close() {
	c.rc.Close()
	c.regs.Close()
}

// Wait blocks until the Sets queued so far are applied (tests).
func (c *Cache) Wait() {
	c.rc.Wait()
	c.regs.Wait()
}

// key hashes the canonical AOR "user@host" (host lowercase).
func (c *Cache) key(aor string) uint64 { return maphash.String(c.seed, aor) }

// regSet is what the cache knows of an AOR's registrations: each as its
// last fill read it. It is never changed once stored; a fill stores a new
// one holding only the registrations the store still holds, so a
// registration that ended (a phone that rebooted and registered with a
// new Call-ID, one removed or lapsed) is forgotten at the AOR's next fill
// instead of waiting for ristretto to evict it. Kept by registration,
// a phone re-registering with a fresh Call-ID every time (as the
// first-registration benchmark does, and phones after each reboot)
// left one dead Reg per registration in the heap, which the collector
// then marked over and over.
//
// The set of one registration, the common case, holds it in one, so that
// it is one object.
type regSet struct {
	regs []*Reg
	one  [1]*Reg
}

// find returns the set's registration of aor with that Call-ID, or nil.
func (s *regSet) find(aor, callID string) *Reg {
	if s == nil {
		return nil
	}
	for _, g := range s.regs {
		if g.callID() == callID && g.aor() == aor {
			return g
		}
	}
	return nil
}

// with returns a set of own and those of s's registrations that hold
// bindings in bs, the store's bindings of own's AOR.
func (s *regSet) with(own *Reg, bs []location.Binding) *regSet {
	n := &regSet{one: [1]*Reg{own}}
	n.regs = n.one[:]
	if s == nil {
		return n
	}
	for _, g := range s.regs {
		if g.callID() == own.callID() || g.aor() != own.aor() || len(n.regs) == maxRegs {
			continue
		}
		for _, b := range bs {
			if b.CallID == g.callID() {
				n.regs = append(n.regs, g)
				break
			}
		}
	}
	return n
}

// Invalidate forgets the AOR's entry. The store's change hook calls it
// for every change of a binding (new, changed, removed, lapsed). The
// registrations stay: the next fill checks each against the store before
// it lists it again.
func (c *Cache) Invalidate(aor string) {
	c.gen.Add(1)
	c.m.invalidations.Add(1)
	c.rc.Del(c.key(aor))
}

// Settle writes to the store every refresh the loops absorbed and have
// not yet handed over. The registrar calls it before it reads or changes
// aor's bindings: its 200 lists every registration of the AOR, and must
// list one the loops refreshed a moment ago with the new expiry, as the
// loops list it and as it would with the fast path off. It costs nothing
// when the touch rings are empty, else a flush brought forward (the same
// work, in smaller pieces).
func (c *Cache) Settle(aor string) {
	c.loopsMu.Lock()
	pending := false
	for _, l := range c.loops {
		if l.ring.head.Load() != l.ring.tail.Load() {
			pending = true
			break
		}
	}
	c.loopsMu.Unlock()
	if pending {
		c.Flush()
	}
}

// Clear forgets every entry and registration (a reload that changes the
// rules).
func (c *Cache) Clear() {
	c.gen.Add(1)
	c.rc.Clear()
	c.regs.Clear()
}

// Fill prepares the answer to the next refresh of the registration that
// req made, after the slow path sent res (a 200) for it over flow. It is
// called from the slow path's goroutine, never from an event loop, and
// may allocate. Whatever does not fit the fast path's rules is simply not
// stored: the next refresh then goes to the slow path again.
func (c *Cache) Fill(req *sip.Request, res *sip.Response, flow location.Flow) {
	r := c.fill(req, res, flow)
	c.m.fills[r].Add(1)
}

func (c *Cache) fill(req *sip.Request, res *sip.Response, flow location.Flow) fillResult {
	if res == nil || res.StatusCode != 200 || flow.Transport != location.TransportUDP || req.Method != sip.REGISTER || len(res.Body()) > 0 {
		return fillNotUsable
	}
	in, ok := requestOf(req, flow)
	if !ok {
		return fillNotUsable
	}
	return c.fillFrom(&in, res.String())
}

// request is what a fill reads of a REGISTER: the registration's identity
// as sipgo prints it (the loop compares refreshes with it: Reg),
// how many Vias the 200 copies, and the To URI's user and host. Fill reads
// it from sipgo's objects (requestOf), FillRaw from the datagram's bytes
// (rawRequestOf, raw.go); everything after is the same code.
type request struct {
	reg        *Reg
	nVia       int
	user, host string // the To URI's, for the digest realm
}

// requestOf reads in from a request sipgo parsed.
func requestOf(req *sip.Request, flow location.Flow) (request, bool) {
	to, from, callID, cs, top := req.To(), req.From(), req.CallID(), req.CSeq(), req.Via()
	if to == nil || from == nil || callID == nil || cs == nil || top == nil || to.Params.Has("tag") {
		return request{}, false
	}
	aor, ok := canonicalAOR(&to.Address)
	if !ok {
		return request{}, false
	}
	contacts := req.GetHeaders("Contact")
	if len(contacts) > scan.MaxContacts {
		return request{}, false // the loop's scanner refuses its refreshes
	}
	g := &Reg{flow: flow, nContacts: uint8(len(contacts))}
	var x identity
	x.reset()
	x.field(req.Recipient.String())
	x.field(from.Value())
	x.field(to.Value())
	for _, name := range [...]string{"Expires", "User-Agent", "Supported"} {
		v, has, ok := single(req, name)
		if !ok {
			return request{}, false
		}
		x.optional(v, has)
	}
	x.count(len(contacts))
	for _, h := range contacts {
		x.field(h.Value())
	}
	g.ident = x.sum()
	cid, sb := callID.Value(), sentBy(top)
	t := newRegText(len(aor) + len(cid) + len(sb))
	t.add(aor)
	t.add(cid)
	t.add(sb)
	if !t.done(g) {
		return request{}, false
	}
	g.cseq.Store(cs.SeqNo)
	// The To user is the AOR's, cut from the Reg's text.
	return request{reg: g, nVia: len(req.GetHeaders("Via")), user: g.aor()[:len(to.Address.User)], host: to.Address.Host}, true
}

// fillFrom stores the entry for the registration in made, after the slow
// path sent it res, the 200's text.
func (c *Cache) fillFrom(in *request, res string) fillResult {
	gen := c.gen.Load()
	tail, ok := replyTail(res, in.nVia)
	if !ok {
		return fillNotUsable
	}
	k := c.key(in.reg.aor())
	known, _ := c.regs.Get(k)
	e, regs, r := c.build(in, tail, known)
	if e == nil {
		if r == fillShared {
			// The registration is what the store holds: kept even when
			// the AOR's entry cannot be made yet (another phone unknown,
			// as after a restart), so that the other phone's next fill
			// finds it and makes the entry for both.
			c.regs.Set(k, regs, 1)
		}
		return r
	}
	if c.opt.Refuse != nil && c.opt.Refuse() {
		return fillRefused
	}
	c.regs.Set(k, regs, 1)
	if !c.rc.Set(k, e, 1) {
		return fillRefused
	}
	if c.gen.Load() != gen {
		// A change may have been applied between the store read in build
		// and the Set; its Del may have run before the Set is applied.
		c.rc.Del(k)
		return fillRaced
	}
	return fillStored
}

// build checks the store against the registration req just made (own)
// and the registrations the cache already holds for the AOR (known), and
// makes the Entry. With fillStored and fillShared it also returns the
// AOR's registrations to keep: own and those of known the store still
// holds.
func (c *Cache) build(in *request, tail []string, known *regSet) (*Entry, *regSet, fillResult) {
	own := in.reg
	bs := c.opt.Store.Lookup(own.aor())
	location.SortByQContact(bs) // the 200's order
	// The bindings of own's Call-ID must be exactly what this request
	// left: from its CSeq and flow, one per Contact, written in one second.
	now := c.opt.Now().Unix()
	var mine []location.Binding
	others := 0
	for _, b := range bs {
		if b.CallID == own.callID() {
			mine = append(mine, b)
		} else {
			others++
		}
	}
	if len(mine) == 0 || len(mine) != int(own.nContacts) || countContacts(tail) != len(bs) {
		return nil, nil, fillStale
	}
	cseq := own.cseq.Load()
	var last int64
	own.bindings = own.one[:]
	if len(mine) > 1 {
		own.bindings = make([]binding, len(mine))
	}
	for i, b := range mine {
		if b.CSeq != cseq || b.Flow != own.flow || b.Path != "" || b.Expires.Unix() <= now {
			return nil, nil, fillStale
		}
		if c.opt.Mode == MidRegistrar && b.UpExpires.IsZero() {
			return nil, nil, fillStale
		}
		up := c.until(&b)
		if i == 0 {
			last = b.Updated.Unix()
		} else if b.Updated.Unix() != last {
			return nil, nil, fillStale
		}
		ob := &own.bindings[i]
		ob.contact, ob.exp = b.Contact, b.Expires.Unix()-last
		ob.until.Store(up)
	}
	own.last.Store(last)

	// From here on own is what the store holds: fillShared keeps it.
	regs := known.with(own, bs)
	var e *Entry
	if others == 0 {
		// One registration: every Contact's expiry in its answer is the
		// one it was granted, so the reply's tail never changes.
		one := &oneReg{}
		one.f.pre = join(tail)
		one.a.form = &one.f
		one.m[0] = member{reg: own, ans: &one.a}
		one.e.members, one.e.form = one.m[:], &one.f
		e = &one.e
	} else {
		e = &Entry{members: []member{{reg: own}}, form: &form{cut: &cutForm{}}}
		if len(bs) > maxSlots || !c.addOthers(e, bs, own, known) {
			return nil, regs, fillShared
		}
		if !e.cutSlots(tail, bs, last) {
			return nil, nil, fillNotUsable
		}
		for i := range e.members {
			e.members[i].ans = &answer{form: e.form, left: make([]atomic.Int64, len(e.slots))}
		}
	}
	if c.opt.Digest != nil {
		if v := c.opt.Digest(); v != nil {
			e.realm, e.authOK = v.RealmFor(in.host)
			e.user = in.user
		}
	}
	return e, regs, fillStored
}

// addOthers adds to e the registrations of the AOR other than own, each
// only if the cache holds it and it is exactly what the store holds: the
// same flow and Contacts, no Path, and each binding at the CSeq and
// expiry of the registration's last refresh and, in the mid-registrar,
// an upstream expiry no earlier than the registration knew (in mode aor
// another phone's relay renews every binding's, and the registration
// takes the new one). One whose absorbed refresh has not reached the
// store yet, or that the slow path answered since without a fill, is
// not: the AOR then waits for a later fill.
func (c *Cache) addOthers(e *Entry, bs []location.Binding, own *Reg, known *regSet) bool {
	for _, b := range bs {
		if b.CallID == own.callID() || e.member(b.CallID) != nil {
			continue
		}
		if len(e.members) == maxRegs {
			return false
		}
		g := known.find(own.aor(), b.CallID)
		if g == nil {
			return false
		}
		n := 0
		for _, ob := range bs {
			if ob.CallID != b.CallID {
				continue
			}
			n++
			gb := g.binding(ob.Contact)
			if gb == nil || ob.Flow != g.flow || ob.Path != "" || ob.CSeq != g.cseq.Load() || ob.Expires.Unix() != g.last.Load()+gb.exp ||
				c.until(&ob) < gb.until.Load() {
				// An upstream expiry earlier than the fill's would let
				// the loop absorb what the mid-registrar relays.
				return false
			}
		}
		if n != len(g.bindings) {
			return false
		}
		for _, ob := range bs {
			if ob.CallID == b.CallID {
				// In mode aor another phone's relay renewed this one's
				// upstream registration too (one upstream contact for
				// the AOR): its refreshes are not due until the new end.
				g.binding(ob.Contact).until.Store(c.until(&ob))
			}
		}
		e.members = append(e.members, member{reg: g})
	}
	return true
}

// until is the unix second by which a refresh of b must be over for
// the mid-registrar to answer it alone: its upstream expiry less the
// renewal margin (slowpath/midreg's classify). Standalone: never due.
func (c *Cache) until(b *location.Binding) int64 {
	if c.opt.Mode != MidRegistrar {
		return math.MaxInt64
	}
	return b.UpExpires.Unix() - int64(c.opt.RenewalMargin/time.Second)
}

// member returns e's member with that Call-ID, or nil.
func (e *Entry) member(callID string) *member {
	for i := range e.members {
		if e.members[i].reg.callID() == callID {
			return &e.members[i]
		}
	}
	return nil
}

// binding returns g's binding with that Contact, or nil.
func (g *Reg) binding(contact string) *binding {
	for i := range g.bindings {
		if g.bindings[i].contact == contact {
			return &g.bindings[i]
		}
	}
	return nil
}

// cutSlots splits the reply's tail around its Contact lines, which must
// list bs in order as the registrar prints them ("Contact: <uri>;expires=N"
// then the other parameters), each N what was left of the binding at
// last, the second the 200 was written.
func (e *Entry) cutSlots(tail []string, bs []location.Binding, last int64) bool {
	first := -1
	for i, l := range tail {
		if strings.HasPrefix(l, "Contact: ") {
			first = i
			break
		}
	}
	if first < 0 || first+len(bs) > len(tail) {
		return false
	}
	f := e.form
	f.pre = join(tail[:first])
	f.cut.post = join(tail[first+len(bs):])
	for i, b := range bs {
		var u sip.Uri
		if err := sip.ParseUri(b.Contact, &u); err != nil {
			return false
		}
		head := "Contact: <" + u.String() + ">;expires="
		l := tail[first+i]
		rest, ok := strings.CutPrefix(l, head)
		if !ok {
			return false
		}
		n := 0
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		left, err := strconv.ParseInt(rest[:n], 10, 64)
		if err != nil || left != b.Expires.Unix()-last {
			return false
		}
		m := e.member(b.CallID)
		if m == nil {
			return false
		}
		gb := m.reg.binding(b.Contact)
		if gb == nil {
			return false
		}
		e.slots = append(e.slots, slot{reg: m.reg, b: gb})
		f.cut.heads = append(f.cut.heads, []byte(head))
		f.cut.rests = append(f.cut.rests, []byte(rest[n:]))
	}
	return true
}

// join copies lines into one slice, allocated once.
func join(lines []string) []byte {
	n := 0
	for _, l := range lines {
		n += len(l)
	}
	b := make([]byte, 0, n)
	for _, l := range lines {
		b = append(b, l...)
	}
	return b
}

// countContacts counts the Contact lines of a reply tail.
func countContacts(tail []string) int {
	n := 0
	for _, l := range tail {
		if strings.HasPrefix(l, "Contact: ") {
			n++
		}
	}
	return n
}

// single returns the value of a header that must appear at most once.
func single(req *sip.Request, name string) (string, bool, bool) {
	hs := req.GetHeaders(name)
	switch len(hs) {
	case 0:
		return "", false, true
	case 1:
		return hs[0].Value(), true, true
	}
	return "", false, false
}

// canonicalAOR is "user@host" with the host lowercased, as the registrar
// keys bindings (RFC 3261 §10.3 step 5).
func canonicalAOR(u *sip.Uri) (string, bool) {
	if (u.Scheme != "sip" && u.Scheme != "sips") || u.User == "" || u.Host == "" {
		return "", false
	}
	return u.User + "@" + strings.ToLower(u.Host), true
}

// sentBy prints the top Via up to its parameters as sipgo does.
func sentBy(v *sip.ViaHeader) string {
	host := v.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	s := v.ProtocolName + "/" + v.ProtocolVersion + "/" + v.Transport + " " + host
	if v.Port > 0 {
		s += ":" + strconv.Itoa(v.Port)
	}
	return s
}

// replyTail cuts from s, the text of the 200 the slow path sent, the
// header lines that do not depend on the request's Via, From, To tag,
// CSeq or the time, each with its CRLF: with nVia Vias, the reply must be
// the status line, the Vias, From, To, Call-ID and CSeq, then the tail,
// then Date last. The lines alias s, which may be a buffer reused later:
// whatever keeps them copies them (join, cutSlots). Cut in place, they
// cost one allocation where splitting s and appending each line's CRLF
// cost one per line and two more.
func replyTail(s string, nVia int) ([]string, bool) {
	// status, nVia Vias, From, To, Call-ID, CSeq, tail..., Date, "", ""
	head := 1 + nVia + 4
	want := [4]string{"From: ", "To: ", "Call-ID: ", "CSeq: "}
	var tail []string
	date := false
	n := 0 // lines read
	for rest := s; ; n++ {
		end := strings.Index(rest, "\r\n")
		if end < 0 {
			return nil, false
		}
		l := rest[:end]
		if end == 0 {
			// The empty line: Date must have been last, and nothing follow.
			if !date || len(rest) != 2 {
				return nil, false
			}
			return tail, true
		}
		if date {
			return nil, false // a line after Date
		}
		switch {
		case n == 0:
			if l != "SIP/2.0 200 OK" {
				return nil, false
			}
		case n <= nVia:
			if !strings.HasPrefix(l, "Via: ") {
				return nil, false
			}
		case n < head:
			if !strings.HasPrefix(l, want[n-1-nVia]) {
				return nil, false
			}
		case strings.HasPrefix(l, "Date: "):
			date = true
		case strings.HasPrefix(l, "Via: "):
			return nil, false
		default:
			if tail == nil {
				tail = make([]string, 0, 8)
			}
			tail = append(tail, rest[:end+2])
		}
		rest = rest[end+2:]
	}
}
