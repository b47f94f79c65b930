package slowpath

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	randv2 "math/rand/v2"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/rawreply"
	"github.com/pinhole-sip/pinhole/internal/scan"
	"github.com/pinhole-sip/pinhole/slowpath/auth"
	"github.com/pinhole-sip/pinhole/slowpath/nat"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

// The second half of a first registration, the REGISTER with credentials
// that creates the binding, is answered by the stateless workers from the
// datagram's bytes too (docs/registrar.md, "The 200 from raw bytes"): the
// scanner and rawreply vouch for its form, the shared digest.Verifier
// checks its credentials (a step skipped when authentication is off: then
// every REGISTER is answered this way, as the registrar asks no
// credentials of any), the registrar's own rules apply it
// (registrar.Register, the code the sipgo path runs) and the 200 is
// written with the shared head writer (registrar.AppendOK). Through sipgo
// the same REGISTER cost a parse of about 60 allocations, the Contact URI
// parsed and printed, and a response object built and serialised.
//
// It runs in the worker, not in the read filter: the 200 waits for the
// store's group commit and is written from the committer.
//
// Only what ends in a 200: anything it declines before the store changed
// goes on to the sipgo path unchanged, which answers whatever the request
// deserves (401 stale, 403, 404, 423, 400, 503...).

// raw200Why is why the raw path declined a REGISTER with credentials, a
// label of pinhole_registrar_raw_200_declined_total.
type raw200Why uint8

const (
	raw200OK      raw200Why = iota
	raw200Off               // pinhole stopping, or a Committed hook without a RawFill
	raw200Scan              // scan.Scan refused the datagram
	raw200Form              // a Via, URI, address, Call-ID or Contact sipgo may print otherwise; a wildcard
	raw200Domain            // a domain not served, no realm (authentication on), a To without a user
	raw200Auth              // authentication on: credentials that are not one plain valid digest for the realm
	raw200Rules             // the registrar's rules refuse it (400, 423, 503, out of order CSeq)
	raw200Replay            // the (nonce, nc) was used already: a stale challenge
	raw200Unkeyed           // no transaction key from the bytes
	raw200Fill              // the RawFill hook (the fast path) cannot read the request as sipgo would
	numRaw200Why
)

var raw200WhyNames = [numRaw200Why]string{
	raw200OK: "ok", raw200Off: "off", raw200Scan: "scan", raw200Form: "form", raw200Domain: "domain",
	raw200Auth: "auth", raw200Rules: "rules", raw200Replay: "replay", raw200Unkeyed: "unkeyed",
	raw200Fill: "fill",
}

// raw200Counts are the raw path's outcomes.
type raw200Counts struct {
	answered atomic.Uint64 // 200s written from bytes
	// fallback: REGISTERs applied by the raw path whose answer sipgo
	// built after all (a stored Contact sipgo prints otherwise, a store
	// error after the nonce was used).
	fallback atomic.Uint64
	declined [numRaw200Why]atomic.Uint64
}

// raw200 is one REGISTER's state on the raw path. It lives in its job:
// the answer is written from the store's committer, after the worker
// moved on, and its slices alias the job's copy of the datagram.
type raw200 struct {
	reg      scan.Register
	via      rawreply.Via
	ruri     rawreply.URI
	from     rawreply.Address
	to       rawreply.Address
	head     rawreply.Head
	fields   registrar.Fields
	contacts [scan.MaxContacts]registrar.ContactField
	aor      string
	// v, checked and now: the credentials verified, whose nonce count
	// is used up once the rules passed; v is nil when authentication is
	// off and nothing was checked.
	v       *digest.Verifier
	checked digest.Checked
	now     time.Time // the verifier's clock when it checked
	// fill is what the RawFill hook returned: told the 200 once sent.
	fill func(res []byte, flow location.Flow)
}

// errReplayed refuses a change whose (nonce, nc) the replay memory had seen.
var errReplayed = errors.New("nonce count already used")

// answerRaw200 answers j, a REGISTER with credentials (any REGISTER when
// authentication is off), from its bytes when it can vouch for the 200.
// done reports whether j is dealt with (answered, or a retransmission
// answered or dropped); otherwise the sipgo path goes on with it, and
// key, when not 0, is the retransmission key already begun for it
// (retrans.Cache.Begin), which it must finish.
func (sl *stateless) answerRaw200(j *slJob, finish func()) (key uint64, done bool) {
	if !bytes.HasPrefix(j.buf, []byte("REGISTER ")) {
		return 0, false
	}
	// Loaded once: a reload swaps the authenticator, never turns it on or
	// off (Server.Reload).
	authn := sl.s.ops.authn.Load()
	if authn != nil && !hasCredentials(j.buf) {
		return 0, false // its answer is a 401 (rawchallenge.go), or sipgo's
	}
	ua, ok := j.remote.(*net.UDPAddr)
	if !ok {
		return 0, false
	}
	remote := ua.AddrPort()
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	local, lok := nat.ParseAddrPort(j.local)
	rs := &j.raw
	var pre *vouch
	if j.vouch.v != nil {
		pre = &j.vouch
	}
	why := sl.prepareRaw200(rs, j.buf, remote, authn, pre)
	if why == raw200OK && !lok {
		why = raw200Off
	}
	if why != raw200OK {
		sl.raw200.declined[why].Add(1)
		return 0, false
	}
	var srcBuf [64]byte
	if j.id, ok = rawTransactionID(j.id[:0], j.buf, remote.AppendTo(srcBuf[:0])); !ok {
		sl.raw200.declined[raw200Unkeyed].Add(1)
		return 0, false
	}
	key = sl.cache.Key(j.id)
	if sl.retransmission(j, key) {
		finish()
		return key, true
	}

	flow := location.Flow{Transport: location.TransportUDP, Remote: remote, Local: local}
	// accepted: the rules passed and the store is about to change; after
	// that an error is the store's, answered here (answerParsed), not
	// left to sipgo.
	accepted := false
	a, err := sl.s.reg.Register(rs.aor, &rs.fields, flow, func() error {
		// The replay check last, under the AOR's lock: a REGISTER the
		// rules refuse goes to sipgo with its nonce count unused, and
		// gets the same answer it gets today. No credentials were
		// checked when authentication is off: nothing to use up.
		if rs.v != nil && !rs.v.Accept(rs.checked, rs.now) {
			return errReplayed
		}
		accepted = true
		return nil
	})
	if err != nil && !accepted {
		if err == errReplayed {
			sl.raw200.declined[raw200Replay].Add(1)
		} else {
			sl.raw200.declined[raw200Rules].Add(1)
		}
		return key, false
	}
	if err != nil {
		sl.answerParsed(j, key, flow, &registrar.Applied{}, err)
		finish()
		return key, true
	}
	complete := func(err error, out *answerBatch) {
		if err != nil {
			sl.answerParsed(j, key, flow, &a, err)
		} else {
			sl.writeRaw200(j, key, flow, &a, out)
		}
		if sl.latency != nil {
			sl.latency.Update(time.Since(j.start).Seconds())
		}
		finish()
	}
	// A change waiting for its fsync is answered from the store's
	// committer once durable, into the committer's own batch, which it
	// sends after each group commit (initStateless). A refresh (written
	// behind) is durable at once: answered here, in the worker, into the
	// worker's batch.
	if !a.Commit.Defer(func(err error) { complete(err, sl.committed) }) {
		_, err := a.Commit.Durable()
		complete(err, j.out)
	}
	return key, true
}

// writeRaw200 writes the 200 for the REGISTER in j that the registrar
// applied as a, from bytes, and remembers it for retransmissions as send
// does; through sipgo when AppendOK cannot write it. out, when not nil,
// is the calling worker's batch of answers.
func (sl *stateless) writeRaw200(j *slJob, key uint64, flow location.Flow, a *registrar.Applied, out *answerBatch) {
	rs := &j.raw
	buf := slAnswers.Get().(*[]byte)
	b, ok := registrar.AppendOK((*buf)[:0], &rs.head, flow.Remote, randv2.Uint64(), randv2.Uint64(), &rs.fields, a)
	if !ok {
		putAnswer(buf, b)
		sl.answerParsed(j, key, flow, a, nil)
		return
	}
	sl.raw200.answered.Add(1) // before the answer: whoever sees it sees the count
	registrar.Observe(200)
	sl.cache.Finish(key, b) // before the write, as send
	out.write(j.conn, b, j.remote)
	if rs.fill != nil {
		// After the write, as the registrar tells Committed: the fast
		// path prepares its answer to the next refresh.
		rs.fill(b, flow)
		rs.fill = nil
	}
	putAnswer(buf, b)
}

// answerParsed answers the REGISTER in j, which the raw path applied as
// a (or failed to apply with err once the rules passed), through
// sipgo: a 200 that AppendOK could not write, or the error's answer. A
// 200 is told to Committed, as the registrar tells it of its own: the
// fast path fills its cache from sipgo's objects, now that they exist.
func (sl *stateless) answerParsed(j *slJob, key uint64, flow location.Flow, a *registrar.Applied, err error) {
	sl.raw200.fallback.Add(1)
	msg, perr := sl.parser.ParseSIP(j.buf)
	req, ok := msg.(*sip.Request)
	if perr != nil || !ok {
		sl.cache.Forget(key) // the scanner vouched for it: cannot happen
		return
	}
	req.SetTransport("UDP")
	req.SetSource(j.remote.String())
	var res *sip.Response
	if err == nil {
		res, err = sl.s.reg.OK(req, a)
	}
	if err != nil {
		res = registrar.ErrorResponse(req, err)
	}
	registrar.Observe(res.StatusCode)
	sl.send(j, key, res)
	if res.StatusCode == 200 {
		sl.s.committed(req, res, flow)
	}
}

// prepareRaw200 reads data, a REGISTER from remote, into rs and checks
// everything the raw path vouches for before the store is asked: its form,
// the domains, and, with authn (authentication on), its credentials
// (digest.Verifier.Verify as auth.Authenticator.Check calls it; the replay
// check comes last, in answerRaw200; pre, the read filter's verdict on the
// same credentials, spares the digest). Without authn the registrar asks
// for no credentials and reads no Authorization header (registrar.New
// with a nil Authorizer): neither is the step here. It returns raw200OK
// or why it declines.
func (sl *stateless) prepareRaw200(rs *raw200, data []byte, remote netip.AddrPort, authn *auth.Authenticator, pre *vouch) raw200Why {
	rs.fill, rs.v = nil, nil
	rawFill := sl.s.hooks.rawFill.Load()
	if sl.s.ops.draining.Load() || sl.s.hooks.committed.Load() != nil && rawFill == nil {
		// A Committed hook alone reads sipgo's request and response;
		// making them here would cost the allocations this path saves.
		return raw200Off
	}
	lim := sl.s.ops.limits.Load()
	r := &rs.reg
	// The read filter scanned the job's copy into rs already when it
	// vouched for the credentials (priority.go): taken as it is, under
	// the same limits.
	if pre == nil || pre.scanned != r || pre.limits != lim {
		if scan.Scan(data, scan.Limits{MaxMessageBytes: lim.MaxMessageBytes, MaxHeaders: lim.MaxHeaders}, r) != scan.OK {
			return raw200Scan
		}
	}
	if r.NumVias != 1 || !rawreply.ParseVia(r.Vias[0], &rs.via) || rs.via.Received {
		return raw200Form
	}
	if !rawreply.ParseURI(r.RequestURI, &rs.ruri) || !rawreply.ParseAddress(r.From, &rs.from) ||
		!rawreply.ParseAddress(r.To, &rs.to) || rs.to.Tag || !visible(r.CallID) || hasParsedHeader(data) {
		return raw200Form
	}
	f := &rs.fields
	*f = registrar.Fields{Contacts: rs.contacts[:0]}
	for i := 0; i < r.NumContact; i++ {
		v := r.Contacts[i]
		if !rawreply.ParsableContact(v) || len(v) == 1 && v[0] == '*' {
			return raw200Form
		}
		// sipgo's own Contact parser, on the value it would read (the
		// scanner refused a comma outside it): what is stored is what
		// the sipgo path stores.
		var c registrar.ContactField
		value := string(v)
		if _, err := sip.ParseAddressValue(value, &c.Address, &c.Params); err != nil {
			return raw200Form
		}
		// The URI between the angle brackets, which ParsableContact
		// vouched sipgo prints back as it is: stored without printing.
		lt := strings.IndexByte(value, '<')
		c.Printed = value[lt+1 : lt+strings.IndexByte(value[lt:], '>')]
		f.Contacts = append(f.Contacts, c)
	}
	if len(rs.to.URI.User) == 0 || !sl.s.reg.Serves(bytesString(rs.ruri.Host)) || !sl.s.reg.Serves(bytesString(rs.to.URI.Host)) {
		return raw200Domain
	}
	if authn != nil {
		// RFC 3261 §10.3 steps 3 and 4, as Registrar.process runs them:
		// after the domains, before the rules.
		v := authn.Verifier()
		rlm, ok := v.RealmFor(bytesString(rs.to.URI.Host))
		if !ok {
			return raw200Domain
		}
		if why := rs.verify(v, rlm, pre); why != raw200OK {
			return why
		}
	}
	aor, err := registrar.AOR(&sip.Uri{Scheme: "sip", User: bytesString(rs.to.URI.User), Host: bytesString(rs.to.URI.Host)})
	if err != nil {
		return raw200Domain
	}
	rs.aor = aor

	f.CallID = string(r.CallID)
	f.CSeq = r.CSeq
	if r.Expires != nil {
		if f.Expires, f.HasExpires, err = registrar.ParseExpires(bytesString(r.Expires)); err != nil {
			return raw200Rules
		}
	}
	if r.UserAgent != nil {
		f.UserAgent = string(bytes.TrimSpace(r.UserAgent)) // as sipgo trims a value
	}
	if r.Supported != nil {
		s := bytesString(r.Supported)
		f.SupportsOutbound = registrar.HasOptionTag(s, "outbound")
		f.SupportsPath = registrar.HasOptionTag(s, "path")
	}
	f.SentBy = sentBy(r.Vias[0][:rs.via.SentByEnd])
	rs.head = rawreply.Head{Vias: r.Vias[:1], TopVia: &rs.via, From: r.From, To: r.To,
		FromBare: rs.from.Bare, ToBare: rs.to.Bare, CallID: r.CallID, CSeq: r.CSeq}
	if rawFill != nil {
		// Last: the fast path's reading allocates what it keeps.
		fill, ok := (*rawFill)(data)
		if !ok {
			return raw200Fill
		}
		rs.fill = fill
	}
	return raw200OK
}

// verify checks the REGISTER's one Authorization value as
// auth.Authenticator.Check would, through the same digest.Verifier, and
// declines wherever Check could decide otherwise than "valid": several
// credentials (Check picks by realm), another realm or a malformed value
// (Check challenges or answers 400), escapes (Parse would copy them), a
// digest uri that is not the Request-URI byte for byte (Check compares
// forms), and every verdict but Valid.
//
// pre is the read filter's Valid verdict on the same bytes (vouched, which
// checks the one value, the realm, the user and the URI as here): from
// the same verifier it is taken as it is, and the digest is not run twice.
func (rs *raw200) verify(v *digest.Verifier, rlm digest.Realm, pre *vouch) raw200Why {
	r := &rs.reg
	if r.NumAuth != 1 || bytes.IndexByte(r.Authorization, '\\') >= 0 {
		return raw200Auth
	}
	if pre != nil && pre.v == v {
		rs.v, rs.checked, rs.now = v, pre.checked, pre.now
		return raw200OK
	}
	// The parameters alias the datagram, which outlives the answer.
	p, err := digest.Parse(bytesString(r.Authorization))
	if err != nil || p.Realm != rlm.Name {
		return raw200Auth
	}
	rs.now = v.Now()
	verdict, c := v.Verify(&p, "REGISTER", rlm, p.URI == bytesString(r.RequestURI), bytesString(rs.to.URI.User), rs.now)
	if verdict != digest.Valid {
		return raw200Auth
	}
	rs.v, rs.checked = v, c
	return raw200OK
}

// sentBy reads a top Via's "SIP/2.0/UDP host[:port]" (rawreply.ParseVia
// vouched for its form) as sipgo reads its host and port.
func sentBy(v []byte) nat.SentBy {
	s := nat.SentBy{Via: true}
	sp := bytes.IndexByte(v, ' ')
	hp := v[sp+1:]
	host, port := hp, []byte(nil)
	if hp[0] == '[' {
		end := bytes.IndexByte(hp, ']')
		host = hp[:end+1]
		if end+1 < len(hp) {
			port = hp[end+2:]
		}
	} else if c := bytes.IndexByte(hp, ':'); c >= 0 {
		host, port = hp[:c], hp[c+1:]
	}
	s.Host = string(host)
	if port != nil {
		s.Port, _ = strconv.Atoi(bytesString(port))
	}
	return s
}
