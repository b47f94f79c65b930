package absorb

import (
	"bytes"
	"crypto/rand"
	"hash/maphash"
	randv2 "math/rand/v2"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/internal/rawreply"
	"github.com/pinhole-sip/pinhole/internal/scan"
)

// Decline says why a Loop did not absorb a datagram.
type Decline uint8

// Declines, each a label of pinhole_fastpath_declined_total (with the
// scanner's reasons for Scanned).
const (
	Absorbed   Decline = iota
	Scanned            // the scanner refused it; see the scan reason
	Miss               // no entry for the AOR (never filled, evicted, invalidated)
	Flow               // another source, local socket or Call-ID
	Order              // CSeq not higher (a retransmission the fast path did not answer)
	Changed            // an identity field differs from the registration's
	Via                // a Via the fast path cannot vouch for
	Due                // mid-registrar: the upstream registration must be renewed
	Lapsing            // a binding would lapse before the store hears of the refresh
	Backlog            // the touch ring is full: the store is behind
	Auth               // digest authentication on and the credentials not vouched for; see the auth reason
	Challenged         // answered with a 401 challenge from the loop (not a decline)
	NumDeclines
)

var declineNames = [NumDeclines]string{"absorbed", "scan", "miss", "flow", "order", "changed", "via", "due", "lapsing", "backlog", "auth", "challenged"}

// authWhy says why the loop did not vouch for a refresh's credentials;
// each is a label of pinhole_fastpath_declined_total ("auth_<why>"). The
// slow path then answers as it always did: 401 stale, 403, 400, ...
type authWhy uint8

const (
	authOK      authWhy = iota
	authSeveral         // more than one Authorization header: the slow path picks by realm
	authEscaped         // a backslash in the value: unescaping would allocate
	authParse           // not a Digest value, or malformed
	authRealm           // another realm, or the AOR's domain has none
	authNoQOP           // no qop: only qop=auth is checked in the loop
	authReplay          // the (nonce, nc) was used already, by either path
	// authVerdict + v: what digest.Verifier.Verify said.
	authVerdict
	numAuthWhy = authVerdict + authWhy(digest.NumVerdicts)
)

var authWhyNames = [authVerdict]string{"ok", "several", "escaped", "parse", "realm", "no_qop", "replay"}

func (a authWhy) String() string {
	if a < authVerdict {
		return authWhyNames[a]
	}
	return digest.Verdict(a - authVerdict).String()
}

func (d Decline) String() string {
	if d < NumDeclines {
		return declineNames[d]
	}
	return "unknown"
}

// lapseGuard: a binding must outlive the hand-off to the store (a flush
// every FlushEvery, then Touch) by this much, else the slow path refreshes
// it; a refresh that late is rare.
const lapseGuard = 2

// replyCap holds any reply Scan's limits allow: the request's header
// section is at most limits.max_message_bytes (≤ 65535), the reply adds
// received/rport, a tag and a Date to it plus the prepared tail.
const replyCap = 8192

// Loop is one event loop's absorption state. A Loop is used by one
// goroutine at a time; its counters are read at scrape time.
type Loop struct {
	c       *Cache
	reg     scan.Register
	vias    [scan.MaxVias]rawreply.Via
	head    rawreply.Head // what a reply copies from reg
	buf     []byte
	scratch []byte
	rng     *randv2.ChaCha8
	dateSec int64
	date    []byte
	ring    *touchRing
	cnt     *loopCounters
	nonce   []byte  // a challenge's nonce (scratch)
	left    []int64 // each slot's expiry in the answer being built (scratch)
	scanned bool    // reg holds the last datagram's scan (Scanned)
	ident   identity
	// ha2 remembers H("REGISTER:" uri) between refreshes: the devices
	// of one domain all register with one Request-URI.
	ha2 digest.HA2Memo
}

// loopCounters are written by one loop and read by the scrape; the
// padding keeps two loops' counters off one cache line.
type loopCounters struct {
	_        [64]byte
	declined [NumDeclines]atomic.Uint64 // [Absorbed] counts absorbed refreshes
	scan     [scan.NumReasons]atomic.Uint64
	auth     [numAuthWhy]atomic.Uint64
	// again counts retransmissions answered (also counted absorbed), by
	// whether the AOR's entry still held the registration.
	again [numAgain]atomic.Uint64
	_     [64]byte
}

// Where a retransmission's registration was found: in the AOR's entry,
// or, the entry gone or without it, in the cache of registrations.
const (
	againHeld = iota
	againGone
	numAgain
)

var againNames = [numAgain]string{"held", "gone"}

// NewLoop makes the state of one event loop.
func (c *Cache) NewLoop() *Loop {
	var seed [32]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails on Linux ≥ 3.17
	l := &Loop{
		c:       c,
		buf:     make([]byte, 0, replyCap),
		scratch: make([]byte, 0, 256),
		rng:     randv2.NewChaCha8(seed),
		date:    make([]byte, 0, 40),
		ring:    newTouchRing(touchRingSize),
		cnt:     &loopCounters{},
		nonce:   make([]byte, 0, 64),
		left:    make([]int64, maxSlots),
	}
	c.loopsMu.Lock()
	c.loops = append(c.loops, l)
	c.loopsMu.Unlock()
	return l
}

// Absorb answers data, a datagram from remote to the local socket, if it
// is an absorbable refresh: it returns the reply (valid until the next
// call) and Absorbed, or with digest authentication on, a 401 challenge
// and Challenged for a refresh that carries no credentials. Otherwise it
// returns nil and why; the caller hands the datagram to the slow path. It
// allocates nothing.
func (l *Loop) Absorb(data []byte, lim scan.Limits, local, remote netip.AddrPort, now time.Time) ([]byte, Decline) {
	d := l.absorb(data, lim, local, remote, now)
	l.cnt.declined[d].Add(1)
	if d != Absorbed && d != Challenged {
		return nil, d
	}
	return l.buf, d
}

func (l *Loop) absorb(data []byte, lim scan.Limits, local, remote netip.AddrPort, now time.Time) Decline {
	r := &l.reg
	why := scan.Scan(data, lim, r)
	if l.scanned = why == scan.OK; !l.scanned {
		l.cnt.scan[why].Add(1)
		return Scanned
	}
	key, ok := l.aorKey(r.To)
	if !ok {
		return Changed
	}
	callID := unsafe.String(unsafe.SliceData(r.CallID), len(r.CallID))
	var m *member
	e, held := l.c.rc.Get(key)
	if held {
		if l.c.opt.Refuse != nil && l.c.opt.Refuse() {
			l.c.rc.Del(key) // as if ristretto had evicted it
			held = false
		} else {
			m = e.member(callID)
		}
	}
	if m == nil {
		// No entry, or one without this registration: the loop still
		// answers a retransmission of a refresh it absorbed.
		why := Flow
		if !held {
			why = Miss
		}
		return l.answerAgain(key, callID, local, remote, now, why)
	}
	g := m.reg
	if d := l.sameRegistration(g, local, remote); d != Absorbed {
		return d
	}
	branch := maphash.Bytes(l.c.seed, viaParam(r.Vias[0], l.vias[0].SentByEnd, "branch"))
	switch {
	case r.CSeq > g.cseq.Load():
	case retransmitted(g, r.CSeq, branch, now):
		// Before the digest check: the slow path's response memory
		// answers a retransmission before it reads credentials too.
		l.cnt.again[againHeld].Add(1)
		l.buildAgain(g, remote)
		return Absorbed
	default:
		return Order
	}

	// Digest authentication (docs/auth.md, "One check for both paths"):
	// the checks of the slow path, on the same Verifier, up to the replay
	// memory, which is told last, once nothing else can decline.
	var v *digest.Verifier
	var checked digest.Checked
	if l.c.opt.Digest != nil {
		if v = l.c.opt.Digest(); v != nil {
			if r.NumAuth == 0 {
				return l.challenge(v, e, remote, now)
			}
			var why authWhy
			if checked, why = l.verify(v, e, now); why != authOK {
				l.cnt.auth[why].Add(1)
				return Auth
			}
		}
	}

	sec := now.Unix()
	prev := g.last.Load()
	for i := range g.bindings {
		b := &g.bindings[i]
		if sec+b.exp > b.until.Load() {
			return Due
		}
		if prev+b.exp-sec < lapseGuard {
			return Lapsing
		}
	}
	if d := l.listOthers(e, m, sec); d != Absorbed {
		return d
	}
	if !l.ring.reserve(len(g.bindings)) {
		return Backlog
	}
	if v != nil && !v.Accept(checked, now) {
		// The slow path finds the same pair used and answers stale.
		l.cnt.auth[authReplay].Add(1)
		return Auth
	}
	for i := range e.slots {
		m.ans.left[i].Store(l.left[i])
	}
	g.answeredIn.Store(m.ans)
	hi, lo := l.rng.Uint64(), l.rng.Uint64()
	g.tagHi.Store(hi)
	g.tagLo.Store(lo)
	g.branch.Store(branch)
	g.cseq.Store(r.CSeq)
	g.last.Store(sec)
	for i := range g.bindings {
		b := &g.bindings[i]
		l.ring.put(touch{g: g, b: b, cseq: r.CSeq, expires: sec + b.exp})
	}
	l.ring.publish()
	l.build(m.ans, g, remote, now)
	return Absorbed
}

// sameRegistration checks that the scanned request is g's registration
// as it came before: same flow, Vias the loop can write back, the same
// top Via sent-by and the same identity fields (same). It leaves
// the request's Vias parsed in l.vias.
func (l *Loop) sameRegistration(g *Reg, local, remote netip.AddrPort) Decline {
	r := &l.reg
	if g.flow.Remote != remote || g.flow.Local != local {
		return Flow
	}
	for i := 0; i < r.NumVias; i++ {
		if !rawreply.ParseVia(r.Vias[i], &l.vias[i]) {
			return Via
		}
	}
	top := &l.vias[0]
	if top.Received || string(r.Vias[0][:top.SentByEnd]) != g.sentBy() {
		return Via
	}
	if !l.same(g) {
		return Changed
	}
	return Absorbed
}

// timerJ is how long after its answer a refresh the loop absorbed is
// answered again: as long as a non-INVITE server transaction over UDP
// answers retransmissions (RFC 3261 §17.2.2, 64·T1 with T1 = 500 ms).
// Later, the same request goes to the slow path, as it would find no
// transaction there either.
const timerJ = 32

// retransmitted reports whether a request with cseq and the top Via
// branch hash branch is a retransmission of g's last absorbed refresh
// (RFC 3261 §17.2.3: same branch, same sent-by — checked by the caller —
// same method) still within Timer J of its answer.
func retransmitted(g *Reg, cseq uint32, branch uint64, now time.Time) bool {
	return cseq == g.cseq.Load() && branch == g.branch.Load() && g.answeredIn.Load() != nil &&
		now.Unix()-g.last.Load() <= timerJ
}

// answerAgain answers a retransmission of a refresh the loop absorbed
// when the AOR's entry is gone (the store's change hook dropped it,
// ristretto evicted it) or no longer lists the registration, from the
// registration itself: the cache keeps the AOR's registrations (key) apart
// from its entry, and each holds the answer its last absorbed refresh got.
// Without it the retransmission went to the slow path, whose registrar
// saw the same Call-ID with a CSeq not above the stored one and answered
// 400 to a phone that had been given its 200 (RFC 3261 §10.3 step 7 is
// for new requests). Anything else declines with why.
func (l *Loop) answerAgain(key uint64, callID string, local, remote netip.AddrPort, now time.Time, why Decline) Decline {
	r := &l.reg
	set, ok := l.c.regs.Get(key)
	if !ok {
		return why
	}
	// aorKey left the canonical AOR in l.scratch.
	g := set.find(unsafe.String(unsafe.SliceData(l.scratch), len(l.scratch)), callID)
	if g == nil || r.CSeq != g.cseq.Load() || l.sameRegistration(g, local, remote) != Absorbed {
		return why
	}
	branch := maphash.Bytes(l.c.seed, viaParam(r.Vias[0], l.vias[0].SentByEnd, "branch"))
	if !retransmitted(g, r.CSeq, branch, now) {
		return why
	}
	l.cnt.again[againGone].Add(1)
	l.buildAgain(g, remote)
	return Absorbed
}

// buildAgain writes into l.buf the answer g's last absorbed refresh got:
// the same To tag, Date and Contact expiries (the other phones' as they
// were listed), as sipgo's transaction layer resends its 200, whatever
// entry holds the AOR now.
func (l *Loop) buildAgain(g *Reg, remote netip.AddrPort) {
	a := g.answeredIn.Load()
	for i := range a.left {
		l.left[i] = a.left[i].Load()
	}
	l.build(a, g, remote, time.Unix(g.last.Load(), 0))
}

// Scanned returns the scan of the datagram the last Absorb call read,
// valid until the next call, or nil when the scanner refused it
// (engine.Scanner): the slow path's raw challenge, asked from the loop
// about a REGISTER it declined, reads it instead of scanning again.
func (l *Loop) Scanned() *scan.Register {
	if !l.scanned {
		return nil
	}
	return &l.reg
}

// listOthers fills l.left with what the 200 lists for each slot of e:
// the refreshing registration's bindings their granted expiry, the other
// registrations' what is left since their last refresh, absorbed or not
// (the slow path lists the same: the registrar has the loops' refreshes
// written to the store before it answers, Cache.Settle). A binding that
// has lapsed meanwhile declines (Lapsing): the store drops it, and the
// entry with it.
func (l *Loop) listOthers(e *Entry, m *member, sec int64) Decline {
	for i := range e.slots {
		s := &e.slots[i]
		if s.reg == m.reg {
			l.left[i] = s.b.exp
			continue
		}
		left := s.reg.last.Load() + s.b.exp - sec
		if left <= 0 {
			return Lapsing
		}
		l.left[i] = left
	}
	return Absorbed
}

// verify checks the refresh's one Authorization value with v, as the slow
// path would for the same bytes, but stops short of the replay memory
// (Accept): the caller may still decline.
func (l *Loop) verify(v *digest.Verifier, e *Entry, now time.Time) (digest.Checked, authWhy) {
	r := &l.reg
	if r.NumAuth > 1 {
		return digest.Checked{}, authSeveral
	}
	if !e.authOK {
		return digest.Checked{}, authRealm
	}
	a := r.Authorization
	if bytes.IndexByte(a, '\\') >= 0 {
		return digest.Checked{}, authEscaped
	}
	// The parameters alias the datagram, which outlives this call.
	p, err := digest.Parse(unsafe.String(unsafe.SliceData(a), len(a)))
	if err != nil {
		return digest.Checked{}, authParse
	}
	if p.Realm != e.realm.Name {
		return digest.Checked{}, authRealm
	}
	if p.QOP == "" {
		return digest.Checked{}, authNoQOP
	}
	// The slow path also accepts a digest uri that names the Request-URI
	// in another form; here only the bytes the entry holds (same() tied
	// them to the registration's Request-URI as sipgo printed it).
	verdict, c := v.VerifyWith(&p, "REGISTER", e.realm, p.URI == string(r.RequestURI), e.user, now, &l.ha2)
	if verdict != digest.Valid {
		return digest.Checked{}, authVerdict + authWhy(verdict)
	}
	return c, authOK
}

// challenge writes into l.buf the 401 the slow path sends to a REGISTER
// without credentials (rawreply.AppendChallenge, which the slow path's
// stateless registrar also answers first registrations with): one
// challenge per offered algorithm sharing one fresh nonce.
func (l *Loop) challenge(v *digest.Verifier, e *Entry, remote netip.AddrPort, now time.Time) Decline {
	if !e.authOK {
		l.cnt.auth[authRealm].Add(1)
		return Auth
	}
	l.nonce = v.AppendNonce(l.nonce[:0], now)
	l.buf = rawreply.AppendChallenge(l.buf[:0], l.replyHead(), remote, l.rng.Uint64(), l.rng.Uint64(), e.realm, v.Algorithms(), l.nonce)
	return Challenged
}

// same reports whether the request repeats the registration's identity
// fields (Reg.ident), as the registration's 200 printed them, without
// allocating.
func (l *Loop) same(g *Reg) bool {
	r := &l.reg
	if r.NumContact != int(g.nContacts) {
		return false
	}
	x := &l.ident
	x.reset()
	x.field(b2s(r.RequestURI))
	x.field(b2s(r.From))
	x.field(b2s(r.To))
	x.optional(b2s(r.Expires), r.Expires != nil)
	x.optional(b2s(r.UserAgent), r.UserAgent != nil)
	x.optional(b2s(r.Supported), r.Supported != nil)
	x.count(r.NumContact)
	for i := 0; i < r.NumContact; i++ {
		x.field(b2s(r.Contacts[i]))
	}
	return x.sum() == g.ident
}

// build writes the 200 into l.buf in the order sipgo writes it: status
// line, Vias, From, To (with the tag), Call-ID, CSeq, the answer's form
// with each Contact's expiry from l.left, Date.
func (l *Loop) build(a *answer, g *Reg, remote netip.AddrPort, now time.Time) {
	f := a.form
	b := rawreply.AppendHead(l.buf[:0], "SIP/2.0 200 OK\r\n", l.replyHead(), rawreply.AppendTopVia, remote, g.tagHi.Load(), g.tagLo.Load())
	b = append(b, f.pre...)
	if c := f.cut; c != nil {
		for i := range c.heads {
			b = append(b, c.heads[i]...)
			b = strconv.AppendInt(b, l.left[i], 10)
			b = append(b, c.rests[i]...)
		}
		b = append(b, c.post...)
	}
	b = append(b, "Date: "...)
	b = append(b, l.dateOf(now)...)
	b = append(b, "\r\n\r\n"...)
	l.buf = b
}

// dateOf formats the Date header value (RFC 1123 in UTC, as the
// registrar writes it) once per second.
func (l *Loop) dateOf(now time.Time) []byte {
	if s := now.Unix(); s != l.dateSec || len(l.date) == 0 {
		l.dateSec = s
		l.date = now.UTC().AppendFormat(l.date[:0], time.RFC1123)
	}
	return l.date
}

// aorKey hashes the canonical AOR of a To value ("user@host", host
// lowercase) as Fill does, without allocating. Only the "<sip:...>" form
// is read: it is the only one sipgo prints, and the entry's To must match.
func (l *Loop) aorKey(to []byte) (uint64, bool) {
	lt := bytes.IndexByte(to, '<')
	if lt < 0 {
		return 0, false
	}
	u := to[lt+1:]
	gt := bytes.IndexByte(u, '>')
	if gt < 0 {
		return 0, false
	}
	u = u[:gt]
	switch {
	case len(u) > 4 && string(u[:4]) == "sip:":
		u = u[4:]
	case len(u) > 5 && string(u[:5]) == "sips:":
		u = u[5:]
	default:
		return 0, false
	}
	at := bytes.IndexByte(u, '@')
	if at <= 0 {
		return 0, false
	}
	user, host := u[:at], u[at+1:]
	for i, c := range host {
		if c == ':' || c == ';' || c == '?' {
			host = host[:i]
			break
		}
	}
	if len(host) == 0 || bytes.IndexByte(user, ':') >= 0 || bytes.IndexByte(user, ';') >= 0 {
		return 0, false
	}
	s := append(l.scratch[:0], user...)
	s = append(s, '@')
	for _, c := range host {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		s = append(s, c)
	}
	l.scratch = s
	return maphash.Bytes(l.c.seed, s), true
}

// viaParam returns the value of a parameter of a Via that rawreply.ParseVia
// accepted (params start at from), or nil.
func viaParam(v []byte, from int, name string) []byte {
	for i := from; i < len(v); {
		i++ // ';'
		ns := i
		for i < len(v) && v[i] != '=' && v[i] != ';' {
			i++
		}
		n := v[ns:i]
		var val []byte
		if i < len(v) && v[i] == '=' {
			i++
			vs := i
			for i < len(v) && v[i] != ';' {
				i++
			}
			val = v[vs:i]
		}
		if string(n) == name {
			return val
		}
	}
	return nil
}

// replyHead is what a reply copies from the scanned request.
func (l *Loop) replyHead() *rawreply.Head {
	r := &l.reg
	l.head = rawreply.Head{Vias: r.Vias[:r.NumVias], TopVia: &l.vias[0], From: r.From, To: r.To, CallID: r.CallID, CSeq: r.CSeq}
	return &l.head
}
