package slowpath

import (
	"time"

	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/internal/rawreply"
	"github.com/pinhole-sip/pinhole/internal/scan"
	"github.com/pinhole-sip/pinhole/slowpath/sanity"
)

// Under a flood the stateless REGISTER queue fills, and what waits in it
// decides who is served. A device's refresh carries credentials that
// verify against a nonce pinhole issued: its sender knows a password. A
// scanner's REGISTER carries none, or credentials it guessed (a nonce of
// its own, a wrong response). With one queue for both, every guess sent
// pushed a real refresh further back, and past the queue's capacity
// refreshes were shed with the guesses: the attacker chose, by sending
// more, how many devices lost their registration (docs/registrar.md,
// "Shedding by priority"). So the REGISTERs pinhole can vouch for have a
// queue of their own that the workers always drain first, and the
// rest share the other queue, of which guesses may fill only half.

// vouched reports whether data, a REGISTER datagram, carries one set of
// digest credentials that verify (digest.Verifier.Verify: Valid, or Stale
// with the right response) against a nonce pinhole issued, for the user
// of its To, in that domain's realm, for a Request-URI and To in domains
// pinhole serves. It runs in the read filter for every
// REGISTER with credentials, so it does what the raw 200 does before the
// store, no more: a scan, a parse of the one Authorization value and a
// digest, with no allocation. A false true here costs a place in the
// queue, never a binding: the worker still runs the replay check before
// anything changes.
//
// When the credentials are Valid, out (if not nil) keeps the verdict for
// the worker's raw 200 (raw200.verify), which would otherwise run the
// same digest on the same bytes with the same verifier a moment later.
func (sl *stateless) vouched(data []byte, out *vouch) bool {
	return sl.vouchedScan(data, out, nil)
}

// vouchedScan is vouched scanning data into reg when reg is not nil (a
// job's raw 200 state, data the job's copy of the datagram): a Valid
// verdict then records it in out, and the worker's raw 200 does not scan
// the same bytes again (prepareRaw200).
func (sl *stateless) vouchedScan(data []byte, out *vouch, reg *scan.Register) bool {
	a := sl.s.ops.authn.Load()
	if a == nil {
		return false
	}
	sc := rawScratches.Get().(*rawScratch)
	defer rawScratches.Put(sc)
	lim := sl.s.ops.limits.Load()
	r := &sc.reg
	if reg != nil {
		r = reg
	}
	if scan.Scan(data, scan.Limits{MaxMessageBytes: lim.MaxMessageBytes, MaxHeaders: lim.MaxHeaders}, r) != scan.OK ||
		r.NumAuth != 1 || !rawreply.ParseAddress(r.To, &sc.to) || len(sc.to.URI.User) == 0 ||
		!rawreply.ParseURI(r.RequestURI, &sc.ruri) {
		return false
	}
	// A domain pinhole does not serve is refused (403) whatever the
	// password; with one realm the credentials alone would not show it.
	if !sl.s.reg.Serves(bytesString(sc.ruri.Host)) || !sl.s.reg.Serves(bytesString(sc.to.URI.Host)) {
		return false
	}
	v := a.Verifier()
	rlm, ok := v.RealmFor(bytesString(sc.to.URI.Host))
	if !ok {
		return false
	}
	// The parameters alias the datagram only for the check.
	p, err := digest.Parse(bytesString(r.Authorization))
	if err != nil || p.Realm != rlm.Name {
		return false
	}
	now := v.Now()
	verdict, c := v.Verify(&p, "REGISTER", rlm, p.URI == bytesString(r.RequestURI), bytesString(sc.to.URI.User), now)
	if verdict == digest.Valid && out != nil {
		*out = vouch{v: v, checked: c, now: now}
		if reg != nil {
			out.scanned, out.limits = reg, lim
		}
	}
	return verdict == digest.Valid || verdict == digest.Stale
}

// vouch is a Valid verdict of vouched, for the raw 200 of the same
// datagram. v is the verifier that gave it: after a reload swapped the
// authenticator the worker checks again. Nothing in it points into the
// datagram.
type vouch struct {
	v       *digest.Verifier
	checked digest.Checked
	now     time.Time
	// scanned, when not nil, holds the scan of the job's copy of the
	// datagram under limits (vouchedScan): the raw 200 takes it as it is
	// while the limits are the same.
	scanned *scan.Register
	limits  *sanity.Limits
}
