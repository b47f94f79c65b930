package slowpath

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	randv2 "math/rand/v2"

	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/internal/rawreply"
	"github.com/pinhole-sip/pinhole/internal/scan"
	"github.com/pinhole-sip/pinhole/internal/sipheader"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

// A first registration is two REGISTERs: one without credentials, which
// only gets a 401, and one with them. The first half needs nothing of the
// registrar but a few checks and a nonce, yet through sipgo it cost a
// parse, a queue hand-off and a response object as large as the second
// half's. rawChallenge answers it in the read filter from the datagram's
// bytes instead (docs/registrar.md, "The challenge from raw bytes"), with
// the writer the fast path's loops challenge with (package rawreply), so
// the 401 is byte for byte the one the registrar would send.
//
// Only what it can vouch for: anything it declines goes to the queue and
// the registrar as before, which answers whatever the request deserves
// (403, 404, 420, 400, a 401 in another form).

// rawScratch is one challenge's working state, pooled: the read filter
// runs on every listener's reading goroutine at once.
type rawScratch struct {
	reg   scan.Register
	via   rawreply.Via
	head  rawreply.Head
	ruri  rawreply.URI
	from  rawreply.Address
	to    rawreply.Address
	nonce []byte
	out   []byte
}

var rawScratches = sync.Pool{New: func() any {
	return &rawScratch{nonce: make([]byte, 0, 64), out: make([]byte, 0, 2048)}
}}

// challengeRaw answers data, a REGISTER datagram from remote on conn, with
// the registrar's 401 when it can vouch for the answer, and reports
// whether it did.
func (sl *stateless) challengeRaw(conn net.PacketConn, remote net.Addr, data []byte, start time.Time) bool {
	ua, ok := remote.(*net.UDPAddr)
	if !ok {
		return false
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	sc := rawScratches.Get().(*rawScratch)
	defer rawScratches.Put(sc)
	reply, ok := sl.rawChallenge(sc, data, nil, ap)
	if !ok {
		sl.rawDeclined.Add(1)
		return false
	}
	sl.rawAnswered.Add(1) // before the answer: whoever sees it sees the count
	registrar.Observe(401)
	if bc, ok := conn.(*batchedUDP); ok {
		bc.replyInReader(reply, remote) // the read filter runs in its reader
	} else {
		_, _ = conn.WriteTo(reply, remote)
	}
	if sl.latency != nil {
		sl.latency.Update(time.Since(start).Seconds())
	}
	return true
}

// LoopChallenge appends to dst the 401 the registrar answers data with, a
// REGISTER datagram from remote that the fast path's loop did not absorb,
// and reports whether it could vouch for it: the read filter's raw
// challenge, its rules and its writer, called from the loop so that a
// first registration's credential-less REGISTER is answered without a
// hand-off. r, when not nil, is the loop's scan of data with the limits
// UDPLimits returns, which the raw challenge then reads instead of
// scanning the same bytes a second time. What it declines the loop hands
// off, and the read filter tries (and counts) it again. Safe for
// concurrent use.
func (s *Server) LoopChallenge(dst, data []byte, r *scan.Register, remote netip.AddrPort) ([]byte, bool) {
	sl := s.sl
	if sl == nil {
		return dst, false // the mid-registrar or a farm answers REGISTER
	}
	sc := rawScratches.Get().(*rawScratch)
	defer rawScratches.Put(sc)
	reply, ok := sl.rawChallenge(sc, data, r, remote)
	if !ok {
		return dst, false
	}
	sl.rawAnswered.Add(1) // before the answer, as in the read filter
	registrar.Observe(401)
	return append(dst, reply...), true
}

// rawChallenge writes into sc.out the 401 the registrar answers data with,
// or reports false when it cannot be sure of it. r is data as scan.Scan
// read it with the current limits, or nil: scanned here. It follows the
// registrar's checks in their order (RFC 3261 §10.3 steps 1 to 4:
// Registrar.requestAOR, then auth.Authenticator.Check) and declines
// wherever they could end in anything but a fresh challenge:
//   - authentication off, or pinhole stopping (the worker answers 503);
//   - whatever scan.Scan refuses: among others Require and Proxy-Require
//     (a 420 to decide), no Contact (a query), a body, folded lines;
//   - an Authorization header that does not earn a new challenge: more
//     than one, one of another realm or scheme, one with escapes, one
//     whose digest uri is not the Request-URI byte for byte, and every
//     verdict of digest.Verifier.Verify but Challenge (a nonce pinhole
//     did not issue: after a restart, from the other box of a pair, or
//     made up) and Stale (the right response to an expired nonce);
//   - more than one Via (a proxy in front: rare for a first REGISTER), a
//     Via ParseVia cannot vouch for, or one with received already;
//   - a Request-URI, From or To that sipgo would print otherwise
//     (rawreply.ParseURI, ParseAddress), a To with a tag, a Call-ID
//     with a byte outside visible ASCII;
//   - a Request-URI or To domain not served (403, 404), a To without a
//     user (404), a domain with no realm (403).
func (sl *stateless) rawChallenge(sc *rawScratch, data []byte, r *scan.Register, remote netip.AddrPort) ([]byte, bool) {
	a := sl.s.ops.authn.Load()
	if a == nil || sl.s.ops.draining.Load() {
		return nil, false
	}
	if r == nil {
		lim := sl.s.ops.limits.Load()
		r = &sc.reg
		if scan.Scan(data, scan.Limits{MaxMessageBytes: lim.MaxMessageBytes, MaxHeaders: lim.MaxHeaders}, r) != scan.OK {
			return nil, false
		}
	}
	if r.NumAuth > 1 || r.NumVias != 1 {
		return nil, false
	}
	v := a.Verifier()
	now := v.Now()
	// Credentials for an offered algorithm and a nonce still accepted
	// earn no new challenge, whatever their response and whatever the
	// rest of the request: declined for the nonce's MAC alone, before
	// the form checks below. They are most often a first registration's
	// second REGISTER, which the read filter verifies next (vouched):
	// the loop ran the whole digest on it, and these checks, for nothing.
	var p digest.Params
	if r.NumAuth == 1 {
		var err error
		if bytes.IndexByte(r.Authorization, '\\') >= 0 {
			return nil, false // Parse would copy the unescaped values
		}
		if p, err = digest.Parse(bytesString(r.Authorization)); err != nil || v.Fresh(&p, now) {
			return nil, false
		}
	}
	if !rawreply.ParseVia(r.Vias[0], &sc.via) || sc.via.Received {
		return nil, false
	}
	if !rawreply.ParseURI(r.RequestURI, &sc.ruri) || !rawreply.ParseAddress(r.From, &sc.from) ||
		!rawreply.ParseAddress(r.To, &sc.to) || sc.to.Tag || len(sc.to.URI.User) == 0 || !visible(r.CallID) {
		return nil, false
	}
	// What the 401 does not copy must still be what sipgo parses: it drops
	// a request with one header it cannot read.
	for i := 0; i < r.NumContact; i++ {
		if !rawreply.ParsableContact(r.Contacts[i]) {
			return nil, false
		}
	}
	if hasParsedHeader(data) {
		return nil, false
	}
	// The strings alias the datagram only for the look-ups.
	if !sl.s.reg.Serves(bytesString(sc.ruri.Host)) || !sl.s.reg.Serves(bytesString(sc.to.URI.Host)) {
		return nil, false
	}
	rlm, ok := v.RealmFor(bytesString(sc.to.URI.Host))
	if !ok {
		return nil, false
	}
	stale := false
	if r.NumAuth == 1 {
		if stale, ok = rechallenged(v, &p, r, rlm, bytesString(sc.to.URI.User), now); !ok {
			return nil, false
		}
	}
	sc.head = rawreply.Head{Vias: r.Vias[:1], TopVia: &sc.via, From: r.From, To: r.To,
		FromBare: sc.from.Bare, ToBare: sc.to.Bare, CallID: r.CallID, CSeq: r.CSeq}
	sc.nonce = v.AppendNonce(sc.nonce[:0], now)
	sc.out = rawreply.AppendRechallenge(sc.out[:0], &sc.head, remote, randv2.Uint64(), randv2.Uint64(), rlm, v.Algorithms(), sc.nonce, stale)
	return sc.out, true
}

// rechallenged reports whether p, the one Authorization value of r,
// parsed and not Fresh, earns a new challenge from
// auth.Authenticator.Check, and whether that challenge says stale=true;
// ok is false wherever Check could answer anything else (it picks the
// Digest value of realm rlm, verifies it as here, and answers Challenge
// with a fresh nonce and Stale with stale=true). After a restart every
// device's cached nonce is one pinhole no longer issues: through sipgo
// each of those REGISTERs cost a parse, a transaction kept 32 s and a
// response object, in the middle of the avalanche. Nothing is recorded:
// the replay memory is only told of Valid credentials.
func rechallenged(v *digest.Verifier, p *digest.Params, r *scan.Register, rlm digest.Realm, user string, now time.Time) (stale, ok bool) {
	if p.Realm != rlm.Name {
		return false, false
	}
	switch verdict, _ := v.Verify(p, "REGISTER", rlm, p.URI == bytesString(r.RequestURI), user, now); verdict {
	case digest.Challenge:
		return false, true
	case digest.Stale:
		return true, true
	}
	return false, false
}

// sipgoParses are the headers sipgo's parser (v1.7) parses at once, in
// lower case, long and compact names, beyond those scan.Scan vets or
// refuses: rare in a REGISTER, so their presence sends it to sipgo.
var sipgoParses = []string{"content-type", "c", "record-route", "refer-to", "r", "referred-by", "b"}

// hasParsedHeader reports whether msg (which scan.Scan accepted: CRLF
// lines, no folding) has a header named in sipgoParses.
func hasParsedHeader(msg []byte) bool {
	i := bytes.Index(msg, []byte("\r\n")) + 2
	for i < len(msg) {
		end := bytes.Index(msg[i:], []byte("\r\n"))
		if end <= 0 {
			return false // the empty line
		}
		line := msg[i : i+end]
		if c := bytes.IndexByte(line, ':'); c > 0 {
			for _, name := range sipgoParses {
				if sipheader.EqualFold(line[:c], name) {
					return true
				}
			}
		}
		i += end + 2
	}
	return false
}

// visible reports whether b holds only visible ASCII (sipgo prints a
// Call-ID as it read it, trimmed).
func visible(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return len(b) > 0
}

func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
