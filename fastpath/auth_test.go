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
			for _, s := range authLife {
				a, fl := c.Absorbed(), c.Fills()
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
					fast.settle(t, a, fl)
				}
			}
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
