package fastpath_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/fastpath"
	"github.com/pinhole-sip/pinhole/internal/digest"
)

var (
	corpusUser = regexp.MustCompile(`(?mi)^(?:to|t): [^\r\n]*?sips?:([a-z]+)@`)
	nonceParam = regexp.MustCompile(`nonce="([^"]+)"`)
)

// authServers starts pinhole with digest authentication for every user of
// the corpus (password = user name), the fast path off and on.
func authServers(t *testing.T, corpus []corpusEntry, ttl time.Duration) (slow, fast *server) {
	t.Helper()
	var lines strings.Builder
	seen := map[string]bool{}
	for _, e := range corpus {
		u := corpusUser.FindStringSubmatch(e.tmpl)
		if u == nil {
			t.Fatalf("%s: no To user", e.name)
		}
		if !seen[u[1]] {
			seen[u[1]] = true
			fmt.Fprintf(&lines, "%s pinhole %s %s\n", u[1], digest.HA1(digest.MD5, u[1], "pinhole", u[1]), digest.HA1(digest.SHA256, u[1], "pinhole", u[1]))
		}
	}
	f := filepath.Join(t.TempDir(), "users.conf")
	if err := os.WriteFile(f, []byte(lines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf("auth:\n  credentials: %q\n  nonce_ttl: %s\n", f, ttl)
	return start(t, "127.0.0.1", false, extra, fastpath.Options{}), start(t, "127.0.0.1", true, extra, fastpath.Options{})
}

// authorize adds credentials to a rendered REGISTER: nonce and nc as the
// device counts, password the user's own unless wrong.
func authorize(msg string, alg digest.Algorithm, nonce string, nc uint32, wrong bool) string {
	user := corpusUser.FindStringSubmatch(msg)[1]
	ruri := strings.Fields(msg[:strings.Index(msg, "\r\n")])[1]
	pw := user
	if wrong {
		pw = "guess"
	}
	p := digest.Params{Username: user, Realm: "pinhole", Nonce: nonce, URI: ruri, Algorithm: alg.String(),
		CNonce: "c0ffee", QOP: "auth", NC: fmt.Sprintf("%08x", nc)}
	p.Response = string(digest.AppendResponse(nil, alg, digest.HA1(alg, user, "pinhole", pw), "REGISTER", &p))
	h := fmt.Sprintf("Authorization: Digest username=%q, realm=\"pinhole\", nonce=%q, uri=%q, response=%q, algorithm=%s, cnonce=\"c0ffee\", qop=auth, nc=%s\r\n",
		user, nonce, ruri, p.Response, alg, p.NC)
	i := strings.Index(msg, "\r\n") + 2
	return msg[:i] + h + msg[i:]
}

// authStep is one REGISTER of a device's life with authentication on.
type authStep struct {
	name   string
	auth   bool // carries credentials
	fresh  bool // with the nonce of the last challenge, nc from 1
	again  bool // a retransmission: same CSeq and branch as the last step
	reuse  bool // the nc of the last accepted request again
	alg    digest.Algorithm
	wrong  bool
	status string
}

var authLife = []authStep{
	{name: "first, no credentials", status: "401"},
	{name: "answer, SHA-256", auth: true, fresh: true, alg: digest.SHA256, status: "200"},
	{name: "refresh, next nc", auth: true, alg: digest.SHA256, status: "200"},
	{name: "its retransmission", auth: true, again: true, alg: digest.SHA256, status: "200"},
	{name: "refresh, MD5, next nc", auth: true, alg: digest.MD5, status: "200"},
	{name: "replayed nc", auth: true, reuse: true, alg: digest.MD5, status: "401"},
	{name: "wrong password", auth: true, alg: digest.SHA256, wrong: true, status: "403"},
	{name: "fresh challenge", status: "401"},
	{name: "its answer, MD5", auth: true, fresh: true, alg: digest.MD5, status: "200"},
	{name: "fresh challenge again", status: "401"},
	{name: "its answer, SHA-256", auth: true, fresh: true, alg: digest.SHA256, status: "200"},
}

// device's state through authLife.
type authDevice struct {
	d      *device
	nonce  string // the last challenge's
	nc     uint32
	lastNC uint32
	cseq   int
	branch string
	last   string
}

func (a *authDevice) send(t *testing.T, e corpusEntry, callID string, s authStep) string {
	t.Helper()
	if !s.again {
		a.cseq++
		a.branch = fmt.Sprintf("%s-%d", e.name, a.cseq)
	}
	msg := e.render(a.d, callID, a.cseq, a.branch)
	if s.auth {
		switch {
		case s.again:
		case s.fresh:
			a.nc = 1
		case s.reuse:
			a.nc = a.lastNC
		default:
			a.nc = a.lastNC + 1
		}
		msg = authorize(msg, s.alg, a.nonce, a.nc, s.wrong)
		if !s.wrong && !s.reuse {
			a.lastNC = a.nc
		}
	}
	r := a.d.send(msg, 2*time.Second)
	if m := nonceParam.FindStringSubmatch(r); m != nil {
		a.nonce = m[1]
	}
	a.last = r
	return r
}

// normalizeAuth is normalize with the nonce (random) replaced.
func normalizeAuth(t *testing.T, reply string, d *device) []string {
	return normalize(t, nonceParam.ReplaceAllString(reply, `nonce="NONCE"`), d)
}

// liveAuthLife takes a device format through authLife against the slow
// path (ds) and the fast path (df): every answer must have the step's
// status and be the same header for header. mark is called before each
// step; what it returns runs after a new 200, to wait for the fill that
// follows it.
func liveAuthLife(t *testing.T, e corpusEntry, callID string, ds, df *authDevice, mark func() (settle func())) {
	t.Helper()
	for _, s := range authLife {
		settle := mark()
		rs, rf := ds.send(t, e, callID, s), df.send(t, e, callID, s)
		if rs == "" || rf == "" {
			t.Fatalf("%s: no reply (slow %q, fast %q)", s.name, rs, rf)
		}
		if !strings.HasPrefix(rs, "SIP/2.0 "+s.status+" ") {
			t.Fatalf("%s: slow path answered %q, want %s", s.name, rs[:strings.Index(rs, "\r\n")], s.status)
		}
		if diff := cmp.Diff(normalizeAuth(t, rs, ds.d), normalizeAuth(t, rf, df.d)); diff != "" {
			t.Fatalf("%s: replies differ (-slow +fast):\n%s", s.name, diff)
		}
		if s.status == "200" && !s.again {
			settle()
		}
	}
}

// TestAuthCorpus runs every device format of the corpus through a life
// with digest authentication on — a challenge, answers in SHA-256 and MD5,
// refreshes with the next nc, a retransmission, a replayed nc, a wrong
// password, fresh challenges each time, and at the end a nonce past its
// TTL — against pinhole with the fast path off and on. Every answer must
// be the same header for header (To tag, Date, nonce and the device's port
// aside); the formats marked absorb must have had their refreshes absorbed
// and their challenges answered by the loop, the others none.
func TestAuthCorpus(t *testing.T) {
	corpus := loadCorpus(t)
	const ttl = 2 * time.Second
	slow, fast := authServers(t, corpus, ttl)
	type pair struct{ s, f *authDevice }
	devs := map[string]pair{}
	var lastNonce time.Time // when the last device got its last nonce
	for i, e := range corpus {
		// Dialled for the whole test: the stale step comes back to them.
		ds, df := &authDevice{d: dial(t, slow.addr)}, &authDevice{d: dial(t, fast.addr)}
		t.Run(e.name, func(t *testing.T) {
			ds.d.t, df.d.t = t, t
			devs[e.name] = pair{ds, df}
			callID := fmt.Sprintf("auth-%d-%s@device", i, e.name)
			c := fast.fp.Cache()
			absorbed, challenged := c.Absorbed(), challenges(c)
			liveAuthLife(t, e, callID, ds, df, func() func() {
				a, fl := c.Absorbed(), c.Fills()
				return func() { fast.settle(t, a, fl) }
			})
			lastNonce = time.Now()
			gotA, gotC := c.Absorbed()-absorbed, challenges(c)-challenged
			// Absorbed: the refresh, its retransmission, the MD5 refresh
			// and the two answers to fresh challenges; challenged: the two
			// fresh challenges.
			if e.absorb && (gotA != 5 || gotC != 2) {
				var m strings.Builder
				c.WriteMetrics(&m)
				t.Errorf("absorbed %d of 5, challenged %d of 2 (%s); counters:\n%s", gotA, gotC, e.why, nonZero(m.String()))
			}
			if !e.absorb && gotA+gotC != 0 {
				t.Errorf("absorbed %d, challenged %d, want none (%s)", gotA, gotC, e.why)
			}
		})
	}
	// The last nonce of each device has outlived its TTL: the right
	// password gets a new challenge with stale=true from the slow path,
	// whichever path the device talks to.
	time.Sleep(time.Until(lastNonce.Add(ttl + 500*time.Millisecond)))
	for i, e := range corpus {
		p, ok := devs[e.name]
		if !ok {
			continue
		}
		t.Run(e.name+"/stale", func(t *testing.T) {
			p.s.d.t, p.f.d.t = t, t
			callID := fmt.Sprintf("auth-%d-%s@device", i, e.name)
			s := authStep{name: "stale nonce", auth: true, alg: digest.SHA256, status: "401"}
			rs, rf := p.s.send(t, e, callID, s), p.f.send(t, e, callID, s)
			if !strings.Contains(rs, "stale=true") {
				t.Fatalf("slow path: %q, want 401 stale", rs)
			}
			if diff := cmp.Diff(normalizeAuth(t, rs, p.s.d), normalizeAuth(t, rf, p.f.d)); diff != "" {
				t.Fatalf("stale nonce: replies differ (-slow +fast):\n%s", diff)
			}
		})
	}
}

// challenges reads pinhole_fastpath_challenges_total.
func challenges(c interface{ WriteMetrics(w io.Writer) }) uint64 {
	var b strings.Builder
	c.WriteMetrics(&b)
	var n uint64
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "pinhole_fastpath_challenges_total ") {
			fmt.Sscan(strings.TrimPrefix(l, "pinhole_fastpath_challenges_total "), &n)
		}
	}
	return n
}

// phoneTmpl is one phone registered to the one user "pair": each its own
// Call-ID, socket, Contact and q.
func phoneTmpl(name, q string) corpusEntry {
	return corpusEntry{name: name, tmpl: "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP {{LOCAL}};branch=z9hG4bK-{{BRANCH}};rport\r\n" +
		"From: <sip:pair@example.com>;tag=" + name + "\r\n" +
		"To: <sip:pair@example.com>\r\n" +
		"Call-ID: {{CALLID}}\r\n" +
		"CSeq: {{CSEQ}} REGISTER\r\n" +
		"Contact: <sip:" + name + "@{{LOCAL}}>;q=" + q + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"Expires: {{EXPIRES}}\r\n" +
		"Content-Length: 0\r\n\r\n"}
}

// phone is one device of the user "pair" talking to both servers.
type phone struct {
	e      corpusEntry
	s, f   *authDevice
	callID string
}

func newPhone(t *testing.T, slow, fast *server, name, q string) *phone {
	return &phone{e: phoneTmpl(name, q), s: &authDevice{d: dial(t, slow.addr)}, f: &authDevice{d: dial(t, fast.addr)}, callID: name + "@pair"}
}

// phoneStep is one REGISTER of one phone, sent to both servers.
type phoneStep struct {
	p       *phone
	s       authStep
	expires string
	absorb  bool          // the fast path must answer it from the loop
	wait    time.Duration // before it
}

// runPhones sends each step to the slow and the fast server and requires
// the same answer header for header (To tag, Date, nonce and the phones'
// ports aside) and the step absorbed exactly when marked. An absorbed
// refresh is followed at once by the next step: another phone's answer
// then lists it before its touch has reached the store.
func runPhones(t *testing.T, fast *server, steps []phoneStep, phones ...*phone) {
	t.Helper()
	c := fast.fp.Cache()
	shared := fillsOf(c, "shared_aor")
	for _, st := range steps {
		time.Sleep(st.wait)
		// Each pair of requests (slow, fast) in one second: the other
		// bindings' remaining expiries are counted in whole seconds.
		if ms := time.Now().Nanosecond() / 1e6; ms > 700 {
			time.Sleep(time.Duration(1000-ms) * time.Millisecond)
		}
		absorbed, fills := c.Absorbed(), c.Fills()
		p := st.p
		e := p.e
		e.tmpl = strings.ReplaceAll(e.tmpl, "{{EXPIRES}}", st.expires)
		began := time.Now()
		rs, rf := p.s.send(t, e, p.callID, st.s), p.f.send(t, e, p.callID, st.s)
		if rs == "" || rf == "" {
			t.Fatalf("%s: no reply (slow %q, fast %q)", st.s.name, rs, rf)
		}
		if !strings.HasPrefix(rs, "SIP/2.0 "+st.s.status+" ") {
			t.Fatalf("%s: slow path answered %q, want %s", st.s.name, rs[:strings.Index(rs, "\r\n")], st.s.status)
		}
		if time.Now().Unix() != began.Unix() && !st.s.again {
			// The two servers answered in different seconds (a loaded
			// machine): what is left of the other phones' bindings may
			// differ by one. The Contacts' expiries are masked for this
			// step; everything else must still be equal.
			t.Logf("%s: the pair of answers crossed a second; the Contacts' expiries are not compared", st.s.name)
			rs, rf = otherExpiry.ReplaceAllString(rs, "${1}N"), otherExpiry.ReplaceAllString(rf, "${1}N")
		}
		ns, nf := normalizePhones(t, rs, p, phones, false), normalizePhones(t, rf, p, phones, true)
		if diff := cmp.Diff(ns, nf); diff != "" {
			t.Fatalf("%s: replies differ (-slow +fast):\n%s", st.s.name, diff)
		}
		if got := c.Absorbed() - absorbed; got != uint64(boolToInt(st.absorb)) {
			var m strings.Builder
			c.WriteMetrics(&m)
			t.Fatalf("%s: absorbed %d, want absorbed=%v; counters:\n%s", st.s.name, got, st.absorb, nonZero(m.String()))
		}
		if st.s.status == "200" && !st.s.again {
			fast.settle(t, absorbed, fills)
		}
	}
	if got := fillsOf(c, "shared_aor") - shared; got != 0 {
		t.Errorf("%d fills declined as shared_aor: every registration of the AOR was the cache's", got)
	}
}

// otherExpiry matches the expiry of a Contact line, masked only in a pair
// of answers that crossed a second (runPhones).
var otherExpiry = regexp.MustCompile(`(?m)^(Contact: <[^>]*>;expires=)\d+`)

// TestAuthCorpusTwoPhones registers two phones of one user, each with
// its own Call-ID and Contact, through pinhole with digest authentication
// and the fast path off and on, and refreshes them in turn: every answer
// (which lists both bindings with their remaining expiries) must be the
// same header for header, and every refresh of a registered phone is
// absorbed — beside the other phone, right after the other's absorbed
// refresh, and alone again once the other has de-registered (the
// de-registration itself and the refresh after it go to the slow path).
func TestAuthCorpusTwoPhones(t *testing.T) {
	slow, fast := authServers(t, []corpusEntry{phoneTmpl("phone-a", "0.9")}, time.Minute)
	pa, pb := newPhone(t, slow, fast, "phone-a", "0.9"), newPhone(t, slow, fast, "phone-b", "0.5")
	runPhones(t, fast, []phoneStep{
		{p: pa, s: authStep{name: "a: first", status: "401"}, expires: "600"},
		{p: pa, s: authStep{name: "a: answer", auth: true, fresh: true, alg: digest.SHA256, status: "200"}, expires: "600"},
		{p: pa, s: authStep{name: "a: refresh, alone in the AOR", auth: true, alg: digest.SHA256, status: "200"}, expires: "600", absorb: true},
		{p: pb, s: authStep{name: "b: first", status: "401"}, expires: "300"},
		{p: pb, s: authStep{name: "b: answer", auth: true, fresh: true, alg: digest.MD5, status: "200"}, expires: "300"},
		{p: pa, s: authStep{name: "a: refresh beside b", auth: true, alg: digest.SHA256, status: "200"}, expires: "600", absorb: true, wait: time.Second},
		{p: pb, s: authStep{name: "b: refresh right after a's", auth: true, alg: digest.MD5, status: "200"}, expires: "300", absorb: true},
		{p: pb, s: authStep{name: "b: its retransmission", auth: true, again: true, alg: digest.MD5, status: "200"}, expires: "300", absorb: true},
		{p: pa, s: authStep{name: "a: refresh again", auth: true, alg: digest.SHA256, status: "200"}, expires: "600", absorb: true, wait: time.Second},
		{p: pb, s: authStep{name: "b: fresh challenge", status: "401"}, expires: "300"},
		{p: pb, s: authStep{name: "b: its answer", auth: true, fresh: true, alg: digest.MD5, status: "200"}, expires: "300", absorb: true},
		{p: pb, s: authStep{name: "b: de-registers", auth: true, alg: digest.MD5, status: "200"}, expires: "0"},
		{p: pa, s: authStep{name: "a: refresh, alone again", auth: true, alg: digest.SHA256, status: "200"}, expires: "600"},
		{p: pa, s: authStep{name: "a: refresh, absorbed again", auth: true, alg: digest.SHA256, status: "200"}, expires: "600", absorb: true},
	}, pa, pb)
}

// TestCorpusThreePhones is TestAuthCorpusTwoPhones without
// authentication and with a third phone: two phones with one q (listed by
// Contact), a retransmission answered after the other phones refreshed,
// and the third phone lapsing: the refresh after its lapse goes to the
// slow path, the next is absorbed again.
func TestCorpusThreePhones(t *testing.T) {
	extra := "registrar:\n  min_expires: 2\n"
	slow, fast := start(t, "127.0.0.1", false, extra, fastpath.Options{}), start(t, "127.0.0.1", true, extra, fastpath.Options{})
	pa, pb, pc := newPhone(t, slow, fast, "phone-a", "0.9"), newPhone(t, slow, fast, "phone-b", "0.5"), newPhone(t, slow, fast, "phone-c", "0.5")
	ok := func(name string) authStep { return authStep{name: name, status: "200"} }
	again := func(name string) authStep { return authStep{name: name, again: true, status: "200"} }
	runPhones(t, fast, []phoneStep{
		{p: pa, s: ok("a: registers"), expires: "600"},
		{p: pa, s: ok("a: refresh alone"), expires: "600", absorb: true},
		{p: pb, s: ok("b: registers right after a's refresh"), expires: "300"},
		{p: pc, s: ok("c: registers, q as b's"), expires: "2"},
		{p: pa, s: ok("a: refresh beside b and c"), expires: "600", absorb: true, wait: time.Second},
		{p: pb, s: ok("b: refresh right after a's"), expires: "300", absorb: true},
		{p: pa, s: ok("a: refresh right after b's"), expires: "600", absorb: true},
		{p: pb, s: again("b: its last refresh again, a moved since"), expires: "300", absorb: true},
		{p: pa, s: ok("a: refresh once c has lapsed"), expires: "600", wait: 2 * time.Second},
		{p: pb, s: ok("b: refresh beside a alone"), expires: "300", absorb: true},
		{p: pa, s: ok("a: refresh beside b alone"), expires: "600", absorb: true},
	}, pa, pb, pc)
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// normalizePhones is normalize for a reply that may name every phone:
// each other phone's address is replaced by its name.
func normalizePhones(t *testing.T, reply string, p *phone, phones []*phone, fast bool) []string {
	t.Helper()
	reply = nonceParam.ReplaceAllString(reply, `nonce="NONCE"`)
	dev := func(o *phone) *device {
		if fast {
			return o.f.d
		}
		return o.s.d
	}
	for _, o := range phones {
		if o != p {
			reply = strings.ReplaceAll(reply, dev(o).local(), strings.ToUpper(o.e.name))
		}
	}
	return normalize(t, reply, dev(p))
}

// fillsOf reads pinhole_fastpath_fills_total{result}.
func fillsOf(c interface{ WriteMetrics(w io.Writer) }, result string) uint64 {
	var b strings.Builder
	c.WriteMetrics(&b)
	prefix := `pinhole_fastpath_fills_total{result="` + result + `"} `
	var n uint64
	for _, l := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			fmt.Sscan(v, &n)
		}
	}
	return n
}

// TestFirstChallengeInLoop sends, for every device format of the corpus,
// a REGISTER without credentials from a new Call-ID (a first
// registration) to pinhole with the fast path off and on. The loop has no
// entry for it, so it asks the slow path's raw challenge: where that
// vouches for the 401 (every format but the few the read filter leaves to
// sipgo) the loop sends it without a hand-off, and every answer must be
// the same header for header as the slow path's.
func TestFirstChallengeInLoop(t *testing.T) {
	corpus := loadCorpus(t)
	slow, fast := authServers(t, corpus, time.Minute)
	answered := 0
	for i, e := range corpus {
		t.Run(e.name, func(t *testing.T) {
			ds, df := &authDevice{d: dial(t, slow.addr)}, &authDevice{d: dial(t, fast.addr)}
			callID := fmt.Sprintf("first-%d-%s@device", i, e.name)
			handed, challenged := fast.fp.Loops()
			s := authStep{name: "first", status: "401"}
			rs, rf := ds.send(t, e, callID, s), df.send(t, e, callID, s)
			if !strings.HasPrefix(rs, "SIP/2.0 401 ") {
				t.Fatalf("slow path answered %q, want 401", rs)
			}
			if diff := cmp.Diff(normalizeAuth(t, rs, ds.d), normalizeAuth(t, rf, df.d)); diff != "" {
				t.Fatalf("replies differ (-slow +fast):\n%s", diff)
			}
			h, c := fast.fp.Loops()
			switch {
			case c == challenged+1 && h == handed:
				answered++
			case c == challenged && h == handed+1:
				t.Logf("handed off: the slow path's raw challenge does not vouch for %s", e.name)
			default:
				t.Errorf("loop challenged %d and handed off %d for one REGISTER", c-challenged, h-handed)
			}
		})
	}
	// The formats the loop absorbs are all ones the raw challenge vouches
	// for; if none was answered in the loop, the hook is not wired.
	if answered == 0 {
		t.Fatal("no first challenge was answered in the loop")
	}
	t.Logf("%d of %d formats challenged in the loop", answered, len(corpus))
}
