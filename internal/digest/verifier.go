package digest

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Defaults for [Config].
const (
	DefaultRealm    = "pinhole"
	DefaultNonceTTL = 30 * time.Second
	// DefaultReplayEntries bounds the nonces whose used nonce-counts are
	// remembered (about 90 bytes each, so ~12 MB at most): 4 369 newly
	// authenticated nonces a second for the default 30 s TTL. Past that
	// the oldest nonce is refused as stale rather than forgotten.
	DefaultReplayEntries = 1 << 17
	// minSecretLen is the shortest HMAC key accepted: 128 bits.
	minSecretLen = 16
)

// Config configures a [Verifier].
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
	// ReplayEntries bounds the replay memory (see docs/auth.md). Default
	// DefaultReplayEntries.
	ReplayEntries int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Verifier is the digest check both of pinhole's paths run: nonces, the
// replay memory, realms and HA1 values, and the response computation. The
// slow path (slowpath/auth) reads the request through sipgo and the event
// loops (fastpath/absorb) from the datagram's bytes; both hand the
// parameters they found to [Verifier.Verify] and [Verifier.Accept], so the
// rules are one. It is safe for concurrent use.
type Verifier struct {
	realm    Realm
	realms   map[string]Realm // by served domain; nil: realm for all
	ttl      time.Duration
	algs     []Algorithm
	creds    *Credentials
	anyID    bool
	now      func() time.Time
	nonces   *Nonces
	replays  *Replay
	dummyHA1 [SHA256 + 1]string
}

// Realm is one protection domain: its name and its quoted form for
// challenges.
type Realm struct{ Name, Quoted string }

// New validates cfg, fills in defaults and returns a Verifier.
func New(cfg Config) (*Verifier, error) {
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
	var realms map[string]Realm
	if len(cfg.Domains) > 1 {
		realms = make(map[string]Realm, len(cfg.Domains))
		for i, d := range cfg.Domains {
			d = strings.ToLower(d)
			r := Realm{Name: d, Quoted: Quote(d)}
			if i == 0 {
				r = Realm{Name: cfg.Realm, Quoted: Quote(cfg.Realm)}
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
	v := &Verifier{
		realm:   Realm{Name: cfg.Realm, Quoted: Quote(cfg.Realm)},
		realms:  realms,
		ttl:     cfg.NonceTTL,
		algs:    append([]Algorithm(nil), cfg.Algorithms...),
		creds:   cfg.Creds,
		anyID:   cfg.AllowIdentityMismatch,
		now:     cfg.Now,
		nonces:  NewNonces(cfg.Secret),
		replays: NewReplay(cfg.NonceTTL, cfg.ReplayEntries),
	}
	// Unknown users are checked against a dummy HA1 so that they cost the
	// same as known users with a wrong password.
	v.dummyHA1[MD5] = strings.Repeat("0", MD5.HexLen())
	v.dummyHA1[SHA256] = strings.Repeat("0", SHA256.HexLen())
	return v, nil
}

// WithCredentials returns a Verifier like v but over creds: the same
// realms, algorithms, nonce secret and replay memory. A reload of the
// credentials file uses it, so that outstanding nonces stay valid and a
// (nonce, nc) accepted before the reload cannot be replayed after it.
func (v *Verifier) WithCredentials(creds *Credentials) (*Verifier, error) {
	if creds == nil {
		return nil, errors.New("auth: no credentials")
	}
	for _, r := range realmNames(v.realm.Name, v.realms) {
		if err := checkComplete(creds, r, v.algs); err != nil {
			return nil, err
		}
	}
	w := *v
	w.creds = creds
	return &w, nil
}

// realmNames lists every realm in use, in a stable order.
func realmNames(first string, realms map[string]Realm) []string {
	out := []string{first}
	for _, r := range realms {
		if r.Name != first {
			out = append(out, r.Name)
		}
	}
	slices.Sort(out[1:])
	return out
}

// checkComplete refuses credentials where a user of realm lacks the HA1 of
// an offered algorithm: that user could never authenticate.
func checkComplete(creds *Credentials, realm string, algs []Algorithm) error {
	for _, alg := range algs {
		if user, ok := creds.Missing(realm, alg); ok {
			return fmt.Errorf("auth: user %q in realm %q has no %v HA1, but %v is offered", user, realm, alg, alg)
		}
	}
	return nil
}

// RealmFor returns the realm that serves domain; ok is false when several
// domains are served and domain is none of them. It allocates nothing for
// a lowercase domain.
func (v *Verifier) RealmFor(domain string) (Realm, bool) {
	if v.realms == nil {
		return v.realm, true
	}
	r, ok := v.realms[domain]
	if !ok {
		r, ok = v.realms[strings.ToLower(domain)]
	}
	return r, ok
}

// Knows reports whether aor ("user@domain") has credentials in its
// domain's realm, for any algorithm: the proxy tells 404 from 480 by it.
func (v *Verifier) Knows(aor string) bool {
	i := strings.LastIndexByte(aor, '@')
	if i < 0 {
		return false
	}
	r, ok := v.RealmFor(aor[i+1:])
	if !ok {
		return false
	}
	for _, alg := range [...]Algorithm{MD5, SHA256} {
		if _, ok := v.creds.HA1(aor[:i], r.Name, alg); ok {
			return true
		}
	}
	return false
}

// Nonces are the Verifier's nonces (tests and clients of the benchmarks
// mint with them).
func (v *Verifier) Nonces() *Nonces { return v.nonces }

// Now is the Verifier's clock.
func (v *Verifier) Now() time.Time { return v.now() }

// Algorithms are the algorithms offered, most preferred first.
func (v *Verifier) Algorithms() []Algorithm { return v.algs }

// ReplayStats reports how many nonces the replay memory holds and how many
// it dropped before they expired (each raising the floor under which
// nonces are refused as stale).
func (v *Verifier) ReplayStats() (nonces int, evicted uint64) { return v.replays.Stats() }

// Verdict is what Verify made of one set of credentials.
type Verdict uint8

// Verdicts, in the order Verify tests them: the first that applies wins.
const (
	Valid       Verdict = iota // correct so far: Accept decides on the replay
	Challenge                  // an algorithm not offered, a nonce not ours: a fresh challenge
	Incomplete                 // username, nonce, uri or response missing: 400
	BadResponse                // a response that is not hex of the algorithm's length: 400
	BadNC                      // qop=auth without a valid nc or a cnonce: 400
	BadQOP                     // a qop other than auth: 400
	URIMismatch                // the digest uri is not the Request-URI: 400
	Forbidden                  // unknown user, wrong response, another identity: 403
	Stale                      // right response, expired nonce or a replay: stale=true
	NumVerdicts
)

var verdictNames = [NumVerdicts]string{"valid", "challenge", "incomplete", "bad_response", "bad_nc", "bad_qop", "uri_mismatch", "forbidden", "stale"}

func (d Verdict) String() string {
	if d < NumVerdicts {
		return verdictNames[d]
	}
	return "unknown"
}

// Checked is a Valid verdict's nonce, to be accepted or refused as a replay.
type Checked struct {
	key    NonceKey
	nc     uint32
	issued time.Time
}

// Verify checks credentials p for a request with method, in realm rlm.
// uriOK says whether the digest uri names the Request-URI (RFC 2617
// §3.2.2.5; the caller compares, it knows how the URI was read), identity
// is the user the request claims (To for REGISTER, From otherwise). It
// allocates nothing. A Valid verdict still needs Accept, the replay check,
// which records the (nonce, nc) as used: a caller that may yet decline the
// request calls it last.
//
// The order of the checks is the order of the answers a client sees
// (docs/auth.md, "Responses"): what is malformed before what is wrong,
// the response before the nonce's age, so an expired nonce with the right
// password gets stale=true and a wrong password never learns about age.
func (v *Verifier) Verify(p *Params, method string, rlm Realm, uriOK bool, identity string, now time.Time) (Verdict, Checked) {
	return v.VerifyWith(p, method, rlm, uriOK, identity, now, nil)
}

// VerifyWith is Verify with a memo of H(method ":" uri) (see [HA2Memo]),
// which one caller at a time may keep between calls; nil is none. The
// checks and verdicts are Verify's.
func (v *Verifier) VerifyWith(p *Params, method string, rlm Realm, uriOK bool, identity string, now time.Time, m *HA2Memo) (Verdict, Checked) {
	alg := MD5 // RFC 7616 §3.4: absent means MD5
	if p.Algorithm != "" {
		var ok bool
		if alg, ok = parseAlgorithm(p.Algorithm); !ok || !v.offers(alg) {
			return Challenge, Checked{}
		}
	} else if !v.offers(MD5) {
		return Challenge, Checked{}
	}
	if p.Username == "" || p.Nonce == "" || p.URI == "" || p.Response == "" {
		return Incomplete, Checked{}
	}
	var respBuf [64]byte
	resp, ok := lowerHex(respBuf[:0], p.Response, alg.HexLen())
	if !ok {
		return BadResponse, Checked{}
	}
	var nc uint32
	switch {
	case p.QOP == "":
		// RFC 2069 compatibility (RFC 2617 §3.2.2.1): no nc, no cnonce.
	case strings.EqualFold(p.QOP, "auth"):
		var ok bool
		if nc, ok = parseNC(p.NC); !ok || p.CNonce == "" {
			return BadNC, Checked{}
		}
	default:
		// We offer qop="auth" only; auth-int would hash bodies we never offered to.
		return BadQOP, Checked{}
	}
	if !uriOK {
		return URIMismatch, Checked{}
	}
	issued, key, ok := v.nonces.Verify(p.Nonce)
	if !ok {
		// Tampered, truncated or from a worker with another secret: the
		// client did nothing wrong that a fresh nonce would not fix.
		return Challenge, Checked{}
	}
	ha1, known := v.creds.HA1(p.Username, rlm.Name, alg)
	if !known {
		ha1 = v.dummyHA1[alg]
	}
	var wantBuf [64]byte
	want := appendResponse(wantBuf[:0], alg, ha1, method, p, m)
	if subtle.ConstantTimeCompare(want, resp) != 1 || !known {
		return Forbidden, Checked{}
	}
	if age := now.Sub(issued); age > v.ttl || age < -v.ttl {
		return Stale, Checked{}
	}
	if !v.anyID && p.Username != identity {
		return Forbidden, Checked{}
	}
	return Valid, Checked{key: key, nc: nc, issued: issued}
}

// Accept records c's (nonce, nc) as used and reports whether it was new.
// A replayed pair is answered stale=true, not 403: an honest client that
// lost count recovers with the new nonce, and a replayer gains nothing.
func (v *Verifier) Accept(c Checked, now time.Time) bool {
	return !v.replays.Seen(c.key, c.nc, c.issued, now)
}

func (v *Verifier) offers(alg Algorithm) bool {
	for _, x := range v.algs {
		if x == alg {
			return true
		}
	}
	return false
}

// parseAlgorithm is ParseAlgorithm without the error, which allocates.
func parseAlgorithm(s string) (Algorithm, bool) {
	switch {
	case strings.EqualFold(s, "MD5"):
		return MD5, true
	case strings.EqualFold(s, "SHA-256"):
		return SHA256, true
	}
	return 0, false
}

// AppendResponse computes the request-digest of RFC 7616 §3.4.1 (RFC 2617
// §3.2.2.1) and appends it to dst in lowercase hex:
//
//	qop=auth: H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(method ":" uri))
//	no qop:   H(HA1 ":" nonce ":" H(method ":" uri))
//
// The digest-uri is the one the client hashed, which the caller has tied
// to the Request-URI.
func AppendResponse(dst []byte, alg Algorithm, ha1, method string, p *Params) []byte {
	return appendResponse(dst, alg, ha1, method, p, nil)
}

func appendResponse(dst []byte, alg Algorithm, ha1, method string, p *Params, m *HA2Memo) []byte {
	var buf [512]byte
	var ha2Buf [64]byte
	ha2, ok := m.lookup(alg, method, p.URI)
	if !ok {
		b := append(buf[:0], method...)
		b = append(b, ':')
		b = append(b, p.URI...)
		ha2 = alg.AppendSum(ha2Buf[:0], b)
		m.store(alg, method, p.URI, ha2)
	}

	b := append(buf[:0], ha1...)
	b = append(b, ':')
	b = append(b, p.Nonce...)
	b = append(b, ':')
	if p.QOP != "" {
		b = append(b, p.NC...)
		b = append(b, ':')
		b = append(b, p.CNonce...)
		b = append(b, ':')
		b = append(b, p.QOP...)
		b = append(b, ':')
	}
	b = append(b, ha2...)
	return alg.AppendSum(dst, b)
}

// AppendNonce appends a fresh nonce issued at now.
func (v *Verifier) AppendNonce(dst []byte, now time.Time) []byte { return v.nonces.Append(dst, now) }

// AppendChallenge appends the value of one WWW-Authenticate or
// Proxy-Authenticate challenge in rlm for alg with nonce, as both paths
// send it: one per offered algorithm, most preferred first (RFC 8760
// §2.3), all sharing one nonce.
func AppendChallenge(dst []byte, rlm Realm, alg Algorithm, nonce []byte, stale bool) []byte {
	dst = append(dst, "Digest realm="...)
	dst = append(dst, rlm.Quoted...)
	dst = append(dst, `, nonce="`...)
	dst = append(dst, nonce...)
	dst = append(dst, `", algorithm=`...)
	dst = append(dst, alg.String()...)
	dst = append(dst, `, qop="auth"`...)
	if stale {
		dst = append(dst, ", stale=true"...)
	}
	return dst
}

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
