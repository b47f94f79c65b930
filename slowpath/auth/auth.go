package auth

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/digest"
)

// Defaults for [Config].
const (
	DefaultRealm         = digest.DefaultRealm
	DefaultNonceTTL      = digest.DefaultNonceTTL
	DefaultReplayEntries = digest.DefaultReplayEntries
)

// Config configures an [Authenticator]; see [digest.Config].
type Config = digest.Config

// Algorithm is a digest algorithm (RFC 7616 §3.3, RFC 8760 §2.1).
type Algorithm = digest.Algorithm

// The algorithms pinhole offers.
const (
	MD5    = digest.MD5
	SHA256 = digest.SHA256
)

// ParseAlgorithm parses an algorithm token case-insensitively.
func ParseAlgorithm(s string) (Algorithm, error) { return digest.ParseAlgorithm(s) }

// HA1 returns H(username ":" realm ":" password) in lowercase hex.
func HA1(alg Algorithm, user, realm, password string) string {
	return digest.HA1(alg, user, realm, password)
}

// Credentials holds HA1 values per user and realm; see [digest.Credentials].
type Credentials = digest.Credentials

// LoadCredentials reads a credentials file.
func LoadCredentials(path string) (*Credentials, error) { return digest.LoadCredentials(path) }

// ParseCredentials parses the credentials format of [digest.Credentials].
func ParseCredentials(r io.Reader) (*Credentials, error) { return digest.ParseCredentials(r) }

// Authenticator checks digest credentials on SIP requests parsed by sipgo.
// The rules and the state (nonces, replay memory, HA1 values) are its
// [digest.Verifier], which the event loops share ([Authenticator.Verifier]).
// It is safe for concurrent use.
type Authenticator struct {
	v *digest.Verifier
}

// New validates cfg, fills in defaults and returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	v, err := digest.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Authenticator{v: v}, nil
}

// WithCredentials returns an Authenticator like a but over creds: the same
// realm, algorithms, nonce secret and replay memory. A reload of the
// credentials file uses it, so that outstanding nonces stay valid and a
// (nonce, nc) accepted before the reload cannot be replayed after it.
func (a *Authenticator) WithCredentials(creds *Credentials) (*Authenticator, error) {
	v, err := a.v.WithCredentials(creds)
	if err != nil {
		return nil, err
	}
	return &Authenticator{v: v}, nil
}

// Verifier is the digest check itself, shared with the event loops: a
// (nonce, nc) either path accepts is a replay for the other.
func (a *Authenticator) Verifier() *digest.Verifier { return a.v }

// claimedIdentity is the domain and user of the identity req claims: To
// for REGISTER (the AOR, RFC 3261 §10.3 steps 5 and 6), From otherwise.
func claimedIdentity(req *sip.Request, register bool) (domain, user string) {
	if register {
		if to := req.To(); to != nil {
			return to.Address.Host, to.Address.User
		}
		return "", ""
	}
	if from := req.From(); from != nil {
		return from.Address.Host, from.Address.User
	}
	return "", ""
}

// Knows reports whether aor ("user@domain") has credentials in its
// domain's realm, for any algorithm: the proxy tells 404 from 480 by it.
func (a *Authenticator) Knows(aor string) bool { return a.v.Knows(aor) }

// ReplayStats reports how many nonces the replay memory holds and how many
// it dropped before they expired (each raising the floor under which
// nonces are refused as stale).
func (a *Authenticator) ReplayStats() (nonces int, evicted uint64) { return a.v.ReplayStats() }

// Result is the verdict of checking one request.
type Result struct {
	// OK is true when the request carries valid credentials for our realm.
	OK bool
	// User is the authenticated username when OK.
	User string
	// Status is the response code when !OK: 401 (REGISTER) or 407 (other
	// requests) with challenges, 403, or 400 for a malformed header.
	Status int
	// Reason is the reason phrase for Status.
	Reason string
	// Headers are the WWW-Authenticate or Proxy-Authenticate challenges to
	// add to a 401 or 407 response, one per algorithm; nil otherwise.
	Headers []sip.Header
}

// Check verifies req. With register=true it reads Authorization and
// challenges with WWW-Authenticate in a 401 (RFC 3261 §22.2); otherwise it
// reads Proxy-Authorization and challenges with Proxy-Authenticate in a 407
// (RFC 3261 §22.3). Credentials for other realms are left alone: they belong
// to servers further on. With several domains served, our realm is that of
// the claimed identity's domain (see Config.Domains).
//
// Verdicts:
//   - an identity in a domain not served (several served): 403;
//   - no credentials for our realm, a nonce we did not issue, or an
//     algorithm we do not offer: 401/407 with fresh challenges;
//   - right response with an expired or already used (nonce, nc): 401/407
//     with stale=true;
//   - unknown user, wrong response, or an identity other than the
//     authenticated user (To for REGISTER, From otherwise): 403, the same
//     for all so as not to reveal which users exist;
//   - unparseable header, missing fields, or a digest uri that is not the
//     Request-URI (RFC 2617 §3.2.2.5): 400.
func (a *Authenticator) Check(req *sip.Request, register bool) Result {
	hname := "Proxy-Authorization"
	if register {
		hname = "Authorization"
	}
	now := a.v.Now()
	domain, identity := claimedIdentity(req, register)
	rlm, served := a.v.RealmFor(domain)
	if !served {
		// Only users of a served domain are asked for credentials: the
		// registrar and the proxy check the domain first.
		return forbidden()
	}
	d, found, malformed := a.pick(req, hname, rlm.Name)
	if !found {
		if malformed {
			return badRequest("Bad " + hname + " Header")
		}
		return a.challenge(register, now, false, rlm)
	}
	verdict, c := a.v.Verify(&d, req.Method.String(), rlm, uriMatches(d.URI, &req.Recipient), identity, now)
	if verdict == digest.Valid && !a.v.Accept(c, now) {
		verdict = digest.Stale
	}
	switch verdict {
	case digest.Valid:
		return Result{OK: true, User: d.Username}
	case digest.Challenge:
		return a.challenge(register, now, false, rlm)
	case digest.Stale:
		return a.challenge(register, now, true, rlm)
	case digest.Incomplete:
		return badRequest("Incomplete " + hname + " Header")
	case digest.BadResponse:
		return badRequest("Bad " + hname + " Response")
	case digest.BadNC:
		return badRequest("Bad " + hname + " Nonce Count")
	case digest.BadQOP:
		return badRequest("Unsupported " + hname + " qop")
	case digest.URIMismatch:
		return badRequest(hname + " URI Mismatch")
	}
	return forbidden()
}

// pick returns the first Digest credentials for realm want among the headers
// called name. RFC 3261 §22.3: a request may carry credentials for several
// proxies; each takes the one with its realm. malformed reports an
// unparseable Digest value, whose realm we cannot know.
func (a *Authenticator) pick(req *sip.Request, name, want string) (d digest.Params, found, malformed bool) {
	// Not req.GetHeaders: it lower-cases every header name it meets, one
	// allocation each for names sipgo does not know.
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), name) {
			continue
		}
		c, err := digest.Parse(h.Value())
		switch {
		case err == digest.ErrNotDigest:
			continue
		case err != nil:
			malformed = true
			continue
		}
		if c.Realm == want {
			return c, true, malformed
		}
	}
	return d, false, malformed
}

// challenge answers 401 or 407 in realm rlm with one challenge per offered
// algorithm, most preferred first (RFC 8760 §2.3), all sharing one fresh
// nonce.
func (a *Authenticator) challenge(register bool, now time.Time, stale bool, rlm digest.Realm) Result {
	r := Result{Status: 407, Reason: "Proxy Authentication Required"}
	name := "Proxy-Authenticate"
	if register {
		r = Result{Status: 401, Reason: "Unauthorized"}
		name = "WWW-Authenticate"
	}
	var nb [digest.NonceLen]byte
	nonce := a.v.AppendNonce(nb[:0], now)
	algs := a.v.Algorithms()
	r.Headers = make([]sip.Header, 0, len(algs))
	var buf [160]byte
	for _, alg := range algs {
		v := digest.AppendChallenge(buf[:0], rlm, alg, nonce, stale)
		r.Headers = append(r.Headers, sip.NewHeader(name, string(v)))
	}
	return r
}

func badRequest(reason string) Result { return Result{Status: 400, Reason: reason} }

func forbidden() Result { return Result{Status: 403, Reason: "Forbidden"} }

// uriMatches checks the digest uri against the Request-URI (RFC 2617
// §3.2.2.5). Clients copy the Request-URI verbatim, so equal strings are the
// common case. Otherwise the two are compared as SIP URIs without their
// parameters and headers (scheme and host case-insensitively, user exactly,
// RFC 3261 §19.1.4), which tolerates clients that drop or reorder
// parameters but still ties the response to the resource.
func uriMatches(digestURI string, ruri *sip.Uri) bool {
	buf := uriBufs.Get().(*bytes.Buffer)
	buf.Reset()
	ruri.StringWrite(buf)
	same := string(buf.Bytes()) == digestURI // the conversion does not allocate
	uriBufs.Put(buf)
	if same {
		return true
	}
	var u sip.Uri
	if err := sip.ParseUri(digestURI, &u); err != nil {
		return false
	}
	return strings.EqualFold(schemeOf(&u), schemeOf(ruri)) &&
		u.User == ruri.User &&
		strings.EqualFold(u.Host, ruri.Host) &&
		u.Port == ruri.Port
}

var uriBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func schemeOf(u *sip.Uri) string {
	if u.Scheme == "" {
		return "sip" // sipgo's default, see sip.Uri.StringWrite
	}
	return u.Scheme
}
