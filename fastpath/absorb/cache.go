package absorb

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/internal/location"
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

// Entry is the prepared answer for one AOR held by one registration. The
// identity fields never change after Fill; cseq, last and the
// retransmission fields move in place when a refresh is absorbed.
type Entry struct {
	aor    string
	flow   location.Flow
	ruri   string
	from   string
	to     string
	callID string
	sentBy string // top Via up to its parameters
	// contacts: the Contact values in request order; expires, ua and
	// supported: the header values ("" and has* false when absent).
	contacts     []string
	expires      string
	hasExpires   bool
	ua           string
	hasUA        bool
	supported    string
	hasSupported bool
	bindings     []binding
	tail         []byte // reply headers after CSeq, before Date
	// realm and user: the protection domain of the AOR's domain and the
	// To user, the identity credentials must be for (slowpath/auth);
	// authOK false when the domain has no realm.
	realm  digest.Realm
	user   string
	authOK bool

	cseq atomic.Uint32
	last atomic.Int64 // unix second of the last refresh (the store's Updated)
	// The last absorbed request's top Via branch (hash) and To tag, to
	// answer its retransmission with the same tag as sipgo's transaction
	// layer would (RFC 3261 §17.2.1).
	branch       atomic.Uint64
	tagHi, tagLo atomic.Uint64
}

// binding is one refreshed binding: what Touch needs and its rules.
type binding struct {
	contact string
	exp     int64 // granted expiry, seconds
	until   int64 // unix second by which now+exp must stay (upstream not due); MaxInt64 standalone
}

// Cache holds Entries in ristretto. It is safe for concurrent use.
type Cache struct {
	opt  Options
	rc   *ristretto.Cache[uint64, *Entry]
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
}

// fillResult labels pinhole_fastpath_fills_total.
type fillResult uint8

const (
	fillStored    fillResult = iota
	fillShared               // the AOR holds bindings of other registrations
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
		// ristretto's advice: ten counters per item held.
		NumCounters:        opt.MaxEntries * 10,
		MaxCost:            opt.MaxEntries,
		BufferItems:        64,
		Metrics:            true,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("create absorption cache: %w", err)
	}
	return &Cache{opt: opt, rc: rc, seed: maphash.MakeSeed()}, nil
}

// Close stops ristretto's goroutines.
func (c *Cache) Close() { c.rc.Close() }

// Wait blocks until the Sets queued so far are applied (tests).
func (c *Cache) Wait() { c.rc.Wait() }

// key hashes the canonical AOR "user@host" (host lowercase).
func (c *Cache) key(aor string) uint64 { return maphash.String(c.seed, aor) }

// Invalidate forgets the AOR's entry. The store's change hook calls it
// for every change of a binding (new, changed, removed, lapsed).
func (c *Cache) Invalidate(aor string) {
	c.gen.Add(1)
	c.m.invalidations.Add(1)
	c.rc.Del(c.key(aor))
}

// Clear forgets every entry (a reload that changes the rules).
func (c *Cache) Clear() {
	c.gen.Add(1)
	c.rc.Clear()
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
	if res == nil || res.StatusCode != 200 || flow.Transport != location.TransportUDP || req.Method != sip.REGISTER {
		return fillNotUsable
	}
	gen := c.gen.Load()
	e, r := c.build(req, res, flow)
	if e == nil {
		return r
	}
	if c.opt.Refuse != nil && c.opt.Refuse() {
		return fillRefused
	}
	k := c.key(e.aor)
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

// build checks the request, the reply and the store and makes the Entry.
func (c *Cache) build(req *sip.Request, res *sip.Response, flow location.Flow) (*Entry, fillResult) {
	to, from, callID, cs, top := req.To(), req.From(), req.CallID(), req.CSeq(), req.Via()
	if to == nil || from == nil || callID == nil || cs == nil || top == nil || to.Params.Has("tag") || len(res.Body()) > 0 {
		return nil, fillNotUsable
	}
	aor, ok := canonicalAOR(&to.Address)
	if !ok {
		return nil, fillNotUsable
	}
	e := &Entry{
		aor:    aor,
		flow:   flow,
		ruri:   req.Recipient.String(),
		from:   from.Value(),
		to:     to.Value(),
		callID: callID.Value(),
		sentBy: sentBy(top),
	}
	for _, h := range req.GetHeaders("Contact") {
		e.contacts = append(e.contacts, h.Value())
	}
	var ok1, ok2, ok3 bool
	if e.expires, e.hasExpires, ok1 = single(req, "Expires"); !ok1 {
		return nil, fillNotUsable
	}
	if e.ua, e.hasUA, ok2 = single(req, "User-Agent"); !ok2 {
		return nil, fillNotUsable
	}
	if e.supported, e.hasSupported, ok3 = single(req, "Supported"); !ok3 {
		return nil, fillNotUsable
	}
	tail, ok := replyTail(res, len(req.GetHeaders("Via")))
	if !ok {
		return nil, fillNotUsable
	}
	e.tail = tail

	// The store must hold exactly what this request left: every binding
	// of the AOR from this Call-ID, CSeq and flow, one per Contact.
	bs := c.opt.Store.Lookup(aor)
	// Another registration's binding first: it is why the counts below
	// would differ, and shared_aor says so (docs/fastpath.md, "AORs with
	// several registrations").
	for _, b := range bs {
		if b.CallID != e.callID || b.Flow != flow {
			return nil, fillShared
		}
	}
	if len(bs) == 0 || len(bs) != len(e.contacts) || strings.Count(string(tail), "\r\nContact: ")+boolInt(strings.HasPrefix(string(tail), "Contact: ")) != len(bs) {
		return nil, fillStale
	}
	now := c.opt.Now().Unix()
	var last int64
	for i, b := range bs {
		if b.CSeq != cs.SeqNo || b.Path != "" || b.Expires.Unix() <= now {
			return nil, fillStale
		}
		up := int64(math.MaxInt64)
		if c.opt.Mode == MidRegistrar {
			if b.UpExpires.IsZero() {
				return nil, fillStale
			}
			up = b.UpExpires.Unix() - int64(c.opt.RenewalMargin/time.Second)
		}
		if i == 0 {
			last = b.Updated.Unix()
		} else if b.Updated.Unix() != last {
			return nil, fillStale
		}
		e.bindings = append(e.bindings, binding{contact: b.Contact, exp: b.Expires.Unix() - last, until: up})
	}
	if c.opt.Digest != nil {
		if v := c.opt.Digest(); v != nil {
			e.realm, e.authOK = v.RealmFor(to.Address.Host)
			e.user = to.Address.User
		}
	}
	e.cseq.Store(cs.SeqNo)
	e.last.Store(last)
	return e, fillStored
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
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

// replyTail cuts from the 200 the slow path sent the header lines that do
// not depend on the request's Via, From, To tag, CSeq or the time: with
// nVia Vias, the reply must be the status line, the Vias, From, To,
// Call-ID and CSeq, then the tail, then Date last.
func replyTail(res *sip.Response, nVia int) ([]byte, bool) {
	s := res.String()
	lines := strings.Split(s, "\r\n")
	// status, nVia Vias, From, To, Call-ID, CSeq, tail..., Date, "", ""
	head := 1 + nVia + 4
	if len(lines) < head+3 || lines[0] != "SIP/2.0 200 OK" || lines[len(lines)-1] != "" || lines[len(lines)-2] != "" {
		return nil, false
	}
	for i := 1; i <= nVia; i++ {
		if !strings.HasPrefix(lines[i], "Via: ") {
			return nil, false
		}
	}
	want := [4]string{"From: ", "To: ", "Call-ID: ", "CSeq: "}
	for i, p := range want {
		if !strings.HasPrefix(lines[1+nVia+i], p) {
			return nil, false
		}
	}
	date := len(lines) - 3
	if !strings.HasPrefix(lines[date], "Date: ") {
		return nil, false
	}
	var b strings.Builder
	for _, l := range lines[head:date] {
		if strings.HasPrefix(l, "Date: ") || strings.HasPrefix(l, "Via: ") {
			return nil, false
		}
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	return []byte(b.String()), true
}
