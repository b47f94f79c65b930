package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Defaults for [Config].
const (
	DefaultRealm    = "pinhole"
	DefaultNonceTTL = 30 * time.Second
	// DefaultReplayEntries bounds the nonces whose used nonce-counts are
	// remembered (about 120 bytes each, so ~16 MB at most): 4 369 newly
	// authenticated nonces a second for the default 30 s TTL. Past that
	// the oldest nonce is refused as stale rather than forgotten.
	DefaultReplayEntries = 1 << 17
	// minSecretLen is the shortest HMAC key accepted: 128 bits.
	minSecretLen = 16
)

// Config configures an [Authenticator].
type Config struct {
	// Realm is the protection domain in challenges (RFC 3261 §22.1); it is
	// configured, not taken from the request, so that every worker agrees.
	// Default "pinhole".
	Realm string
	// Domains are the served domains, lowercase. With more than one, each
	// domain is its own user namespace and realm: a request is checked in
	// the realm of the domain of the identity it claims (To for REGISTER,
	// From otherwise), so that alice of one domain cannot act as alice of
	// another. The first domain's realm is Realm, so a credentials file
	// written for one domain keeps serving that domain's users; every
	// other domain's realm is the domain name itself. With one domain or
	// none, Realm serves every request.
	Domains []string
	// Secret is the HMAC key for nonces; workers that must accept each
	// other's nonces share it. Random at start when empty; at least 16 bytes
	// when set.
	Secret []byte
	// NonceTTL is how long a nonce is accepted. A correct response with an
	// older nonce is answered with a new challenge carrying stale=true
	// (RFC 7616 §3.3), so the client retries without asking for a password.
	// Default 30s.
	NonceTTL time.Duration
	// Algorithms are offered in challenges, one challenge each, most
	// preferred first (RFC 8760 §2.3); responses with any other algorithm are
	// not accepted. Default SHA-256 then MD5.
	Algorithms []Algorithm
	// Creds holds the HA1 values; every user of Realm needs an HA1 for each
	// offered algorithm. Required.
	Creds *Credentials
	// AllowIdentityMismatch lets an authenticated user act for another
	// identity: register an AOR (To) other than its own, or send requests
	// with another From user. Off by default: RFC 3261 §10.3 step 6 answers
	// 403 when the user may not modify the AOR, and the edge must not let a
	// device spoof another's caller ID.
	AllowIdentityMismatch bool
	// ReplayEntries bounds the replay cache (see docs/auth.md). Default
	// DefaultReplayEntries.
	ReplayEntries int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Authenticator checks digest credentials on SIP requests. It is safe for
// concurrent use.
type Authenticator struct {
	realm       string
	quotedRealm string
	realms      map[string]realm // by served domain; nil: realm for all
	ttl         time.Duration
	algs        []Algorithm
	creds       *Credentials
	anyID       bool
	now         func() time.Time
	nonces      *noncer
	replays     *replayCache
	dummyHA1    [SHA256 + 1]string
}

// realm is one protection domain and its quoted form for challenges.
type realm struct{ name, quoted string }

// New validates cfg, fills in defaults and returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	for i := 0; i < len(cfg.Realm); i++ {
		if c := cfg.Realm[i]; c < 0x20 || c == 0x7f {
			return nil, fmt.Errorf("auth: realm %q: control character at position %d", cfg.Realm, i+1)
		}
	}
	if cfg.NonceTTL == 0 {
		cfg.NonceTTL = DefaultNonceTTL
	}
	if cfg.NonceTTL < 0 {
		return nil, fmt.Errorf("auth: nonce TTL %v: must be positive", cfg.NonceTTL)
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []Algorithm{SHA256, MD5}
	}
	for i, alg := range cfg.Algorithms {
		if alg != MD5 && alg != SHA256 {
			return nil, fmt.Errorf("auth: algorithms[%d]: unsupported %v", i, alg)
		}
		for _, prev := range cfg.Algorithms[:i] {
			if prev == alg {
				return nil, fmt.Errorf("auth: algorithms[%d]: %v listed twice", i, alg)
			}
		}
	}
	if cfg.Creds == nil {
		return nil, errors.New("auth: no credentials")
	}
	var realms map[string]realm
	if len(cfg.Domains) > 1 {
		realms = make(map[string]realm, len(cfg.Domains))
		for i, d := range cfg.Domains {
			d = strings.ToLower(d)
			r := realm{name: d, quoted: quote(d)}
			if i == 0 {
				r = realm{name: cfg.Realm, quoted: quote(cfg.Realm)}
			} else if d == cfg.Realm {
				return nil, fmt.Errorf("auth: realm %q is also the realm of served domain %q: its users and the first domain's would share one namespace", cfg.Realm, d)
			}
			realms[d] = r
		}
	}
	for _, r := range realmNames(cfg.Realm, realms) {
		if err := checkComplete(cfg.Creds, r, cfg.Algorithms); err != nil {
			return nil, err
		}
	}
	if len(cfg.Secret) == 0 {
		cfg.Secret = make([]byte, 32)
		rand.Read(cfg.Secret)
	}
	if len(cfg.Secret) < minSecretLen {
		return nil, fmt.Errorf("auth: secret of %d bytes: want at least %d", len(cfg.Secret), minSecretLen)
	}
	if cfg.ReplayEntries == 0 {
		cfg.ReplayEntries = DefaultReplayEntries
	}
	if cfg.ReplayEntries < 0 {
		return nil, fmt.Errorf("auth: replay entries %d: must be positive", cfg.ReplayEntries)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Authenticator{
		realm:       cfg.Realm,
		quotedRealm: quote(cfg.Realm),
		realms:      realms,
		ttl:         cfg.NonceTTL,
		algs:        append([]Algorithm(nil), cfg.Algorithms...),
		creds:       cfg.Creds,
		anyID:       cfg.AllowIdentityMismatch,
		now:         cfg.Now,
		nonces:      newNoncer(cfg.Secret),
		replays:     newReplayCache(cfg.NonceTTL, cfg.ReplayEntries),
	}
	// Unknown users are checked against a dummy HA1 so that they cost the
	// same as known users with a wrong password.
	a.dummyHA1[MD5] = strings.Repeat("0", MD5.hexLen())
	a.dummyHA1[SHA256] = strings.Repeat("0", SHA256.hexLen())
	return a, nil
}

// WithCredentials returns an Authenticator like a but over creds: the same
// realm, algorithms, nonce secret and replay memory. A reload of the
// credentials file uses it, so that outstanding nonces stay valid and a
// (nonce, nc) accepted before the reload cannot be replayed after it.
func (a *Authenticator) WithCredentials(creds *Credentials) (*Authenticator, error) {
	if creds == nil {
		return nil, errors.New("auth: no credentials")
	}
	for _, r := range realmNames(a.realm, a.realms) {
		if err := checkComplete(creds, r, a.algs); err != nil {
			return nil, err
		}
	}
	b := *a
	b.creds = creds
	return &b, nil
}

// realmNames lists every realm in use, in a stable order.
func realmNames(first string, realms map[string]realm) []string {
	out := []string{first}
	for _, r := range realms {
		if r.name != first {
			out = append(out, r.name)
		}
	}
	slices.Sort(out[1:])
	return out
}

// realmFor returns the realm that serves domain; ok is false when several
// domains are served and domain is none of them.
func (a *Authenticator) realmFor(domain string) (realm, bool) {
	if a.realms == nil {
		return realm{name: a.realm, quoted: a.quotedRealm}, true
	}
	r, ok := a.realms[strings.ToLower(domain)]
	return r, ok
}

// claimedDomain is the host of the identity req claims: To for REGISTER
// (the AOR, RFC 3261 §10.3 step 5), From otherwise.
func claimedDomain(req *sip.Request, register bool) string {
	if register {
		if to := req.To(); to != nil {
			return to.Address.Host
		}
		return ""
	}
	if from := req.From(); from != nil {
		return from.Address.Host
	}
	return ""
}

// Knows reports whether aor ("user@domain") has credentials in its
// domain's realm, for any algorithm: the proxy tells 404 from 480 by it.
func (a *Authenticator) Knows(aor string) bool {
	i := strings.LastIndexByte(aor, '@')
	if i < 0 {
		return false
	}
	r, ok := a.realmFor(aor[i+1:])
	if !ok {
		return false
	}
	for _, alg := range [...]Algorithm{MD5, SHA256} {
		if _, ok := a.creds.HA1(aor[:i], r.name, alg); ok {
			return true
		}
	}
	return false
}

// checkComplete refuses credentials where a user of realm lacks the HA1 of
// an offered algorithm: that user could never authenticate.
func checkComplete(creds *Credentials, realm string, algs []Algorithm) error {
	for _, alg := range algs {
		if user, ok := creds.missing(realm, alg); ok {
			return fmt.Errorf("auth: user %q in realm %q has no %v HA1, but %v is offered", user, realm, alg, alg)
		}
	}
	return nil
}

// ReplayStats reports how many nonces the replay memory holds and how many
// it dropped before they expired (each raising the floor under which
// nonces are refused as stale).
func (a *Authenticator) ReplayStats() (nonces int, evicted uint64) { return a.replays.stats() }

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
	now := a.now()
	rlm, served := a.realmFor(claimedDomain(req, register))
	if !served {
		// Only users of a served domain are asked for credentials: the
		// registrar and the proxy check the domain first.
		return forbidden()
	}
	d, found, malformed := a.pick(req, hname, rlm.name)
	if !found {
		if malformed {
			return badRequest("Bad " + hname + " Header")
		}
		return a.challenge(register, now, false, rlm)
	}
	alg := MD5 // RFC 7616 §3.4: absent means MD5
	if d.algorithm != "" {
		var err error
		if alg, err = ParseAlgorithm(d.algorithm); err != nil || !a.offers(alg) {
			return a.challenge(register, now, false, rlm)
		}
	} else if !a.offers(MD5) {
		return a.challenge(register, now, false, rlm)
	}
	if d.username == "" || d.nonce == "" || d.uri == "" || d.response == "" {
		return badRequest("Incomplete " + hname + " Header")
	}
	var respBuf [64]byte
	resp, ok := lowerHex(respBuf[:0], d.response, alg.hexLen())
	if !ok {
		return badRequest("Bad " + hname + " Response")
	}
	var nc uint32
	switch {
	case d.qop == "":
		// RFC 2069 compatibility (RFC 2617 §3.2.2.1): no nc, no cnonce.
	case strings.EqualFold(d.qop, "auth"):
		var ok bool
		if nc, ok = parseNC(d.nc); !ok || d.cnonce == "" {
			return badRequest("Bad " + hname + " Nonce Count")
		}
	default:
		// We offer qop="auth" only; auth-int would hash bodies we never offered to.
		return badRequest("Unsupported " + hname + " qop")
	}
	if !uriMatches(d.uri, &req.Recipient) {
		return badRequest(hname + " URI Mismatch")
	}
	issued, key, ok := a.nonces.verify(d.nonce)
	if !ok {
		// Tampered, truncated or from a worker with another secret: the
		// client did nothing wrong that a fresh nonce would not fix.
		return a.challenge(register, now, false, rlm)
	}
	ha1, known := a.creds.HA1(d.username, rlm.name, alg)
	if !known {
		ha1 = a.dummyHA1[alg]
	}
	var wantBuf [64]byte
	want := a.response(wantBuf[:0], alg, ha1, req.Method.String(), &d)
	if subtle.ConstantTimeCompare(want, resp) != 1 || !known {
		return forbidden()
	}
	if age := now.Sub(issued); age > a.ttl || age < -a.ttl {
		return a.challenge(register, now, true, rlm)
	}
	if !a.anyID && !identityMatches(req, register, d.username) {
		return forbidden()
	}
	// A replayed (nonce, nc) gets stale=true, not 403: an honest client that
	// lost count recovers with the new nonce, and a replayer gains nothing.
	if a.replays.seen(key, nc, issued, now) {
		return a.challenge(register, now, true, rlm)
	}
	return Result{OK: true, User: d.username}
}

// pick returns the first Digest credentials for realm want among the headers
// called name. RFC 3261 §22.3: a request may carry credentials for several
// proxies; each takes the one with its realm. malformed reports an
// unparseable Digest value, whose realm we cannot know.
func (a *Authenticator) pick(req *sip.Request, name, want string) (d digestResponse, found, malformed bool) {
	// Not req.GetHeaders: it lower-cases every header name it meets, one
	// allocation each for names sipgo does not know.
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), name) {
			continue
		}
		c, err := parseDigest(h.Value())
		switch {
		case err == errNotDigest:
			continue
		case err != nil:
			malformed = true
			continue
		}
		if c.realm == want {
			return c, true, malformed
		}
	}
	return d, false, malformed
}

func (a *Authenticator) offers(alg Algorithm) bool {
	for _, x := range a.algs {
		if x == alg {
			return true
		}
	}
	return false
}

// response computes the request-digest of RFC 7616 §3.4.1 (RFC 2617
// §3.2.2.1) and appends it to dst in lowercase hex:
//
//	qop=auth: H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(method ":" uri))
//	no qop:   H(HA1 ":" nonce ":" H(method ":" uri))
//
// The digest-uri is the one the client hashed, which uriMatches has tied to
// the Request-URI.
func (a *Authenticator) response(dst []byte, alg Algorithm, ha1, method string, d *digestResponse) []byte {
	var buf [512]byte
	b := append(buf[:0], method...)
	b = append(b, ':')
	b = append(b, d.uri...)
	var ha2Buf [64]byte
	ha2 := alg.sumHex(ha2Buf[:0], b)

	b = append(b[:0], ha1...)
	b = append(b, ':')
	b = append(b, d.nonce...)
	b = append(b, ':')
	if d.qop != "" {
		b = append(b, d.nc...)
		b = append(b, ':')
		b = append(b, d.cnonce...)
		b = append(b, ':')
		b = append(b, d.qop...)
		b = append(b, ':')
	}
	b = append(b, ha2...)
	return alg.sumHex(dst, b)
}

// challenge answers 401 or 407 in realm rlm with one challenge per offered
// algorithm, most preferred first (RFC 8760 §2.3), all sharing one fresh
// nonce.
func (a *Authenticator) challenge(register bool, now time.Time, stale bool, rlm realm) Result {
	r := Result{Status: 407, Reason: "Proxy Authentication Required"}
	name := "Proxy-Authenticate"
	if register {
		r = Result{Status: 401, Reason: "Unauthorized"}
		name = "WWW-Authenticate"
	}
	nonce := a.nonces.mint(now)
	r.Headers = make([]sip.Header, 0, len(a.algs))
	for _, alg := range a.algs {
		var b strings.Builder
		b.Grow(100 + len(rlm.quoted))
		b.WriteString("Digest realm=")
		b.WriteString(rlm.quoted)
		b.WriteString(`, nonce="`)
		b.WriteString(nonce)
		b.WriteString(`", algorithm=`)
		b.WriteString(alg.String())
		b.WriteString(`, qop="auth"`)
		if stale {
			b.WriteString(", stale=true")
		}
		r.Headers = append(r.Headers, sip.NewHeader(name, b.String()))
	}
	return r
}

func badRequest(reason string) Result { return Result{Status: 400, Reason: reason} }

func forbidden() Result { return Result{Status: 403, Reason: "Forbidden"} }

// lowerHex appends s in lower case to dst if it is n hex digits. Clients
// should send lowercase (RFC 7616 §3.4.1 LHEX), a few send upper case.
func lowerHex(dst []byte, s string, n int) ([]byte, bool) {
	if len(s) != n {
		return nil, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isHex(c) {
			return nil, false
		}
		if 'A' <= c && c <= 'F' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, true
}

// parseNC parses a nonce-count: exactly 8 hex digits (RFC 2617 §3.2.2),
// never zero, since counting starts at 1.
func parseNC(s string) (uint32, bool) {
	if len(s) != 8 {
		return 0, false
	}
	var n uint32
	for i := 0; i < 8; i++ {
		c := s[i]
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | uint32(v)
	}
	return n, n != 0
}

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

// identityMatches ties the authenticated user to the identity the request
// claims: the AOR in To for REGISTER (RFC 3261 §10.3 step 6), the From user
// otherwise.
func identityMatches(req *sip.Request, register bool, user string) bool {
	if register {
		to := req.To()
		return to != nil && to.Address.User == user
	}
	from := req.From()
	return from != nil && from.Address.User == user
}
