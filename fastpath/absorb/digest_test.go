package absorb

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/slowpath/auth"
)

// newAuthFixture is a fixture whose loops check digest credentials with
// the Authenticator the slow path would use (users alice and bob,
// password "<user>-pw", realm pinhole, SHA-256 then MD5 offered).
func newAuthFixture(tb testing.TB, clock func() time.Time) (*fixture, *auth.Authenticator) {
	tb.Helper()
	var lines strings.Builder
	for _, u := range []string{"alice", "bob"} {
		fmt.Fprintf(&lines, "%s pinhole %s %s\n", u, digest.HA1(digest.MD5, u, "pinhole", u+"-pw"), digest.HA1(digest.SHA256, u, "pinhole", u+"-pw"))
	}
	creds, err := auth.ParseCredentials(strings.NewReader(lines.String()))
	if err != nil {
		tb.Fatal(err)
	}
	a, err := auth.New(auth.Config{Creds: creds, Domains: []string{"example.com"}, Now: clock})
	if err != nil {
		tb.Fatal(err)
	}
	return newFixture(tb, Options{Digest: a.Verifier}), a
}

// authorized is refresh(cseq) with credentials for alice.
func authorized(cseq int, alg digest.Algorithm, nonce string, nc uint32, password string) []byte {
	p := digest.Params{Username: "alice", Realm: "pinhole", Nonce: nonce, URI: "sip:example.com",
		Algorithm: alg.String(), CNonce: "0a4f113b", QOP: "auth", NC: fmt.Sprintf("%08x", nc)}
	p.Response = string(digest.AppendResponse(nil, alg, digest.HA1(alg, "alice", "pinhole", password), "REGISTER", &p))
	h := fmt.Sprintf("Authorization: Digest username=%q, realm=%q, nonce=%q, uri=%q, response=%q, algorithm=%s, cnonce=%q, qop=auth, nc=%s\r\n",
		p.Username, p.Realm, p.Nonce, p.URI, p.Response, p.Algorithm, p.CNonce, p.NC)
	s := string(refresh(cseq))
	i := strings.Index(s, "Content-Length:")
	return []byte(s[:i] + h + s[i:])
}

// slowCheck is the slow path's verdict on data.
func slowCheck(tb testing.TB, a *auth.Authenticator, data []byte) auth.Result {
	tb.Helper()
	m, err := sip.NewParser().ParseSIP(data)
	if err != nil {
		tb.Fatal(err)
	}
	return a.Check(m.(*sip.Request), true)
}

// TestDigestAbsorb walks one registration through what the loop must
// absorb and what it must leave to the slow path, and checks that the two
// paths share one replay memory: a (nonce, nc) either accepted is a
// replay for the other.
func TestDigestAbsorb(t *testing.T) {
	now := time.Now()
	f, a := newAuthFixture(t, func() time.Time { return now })
	v := a.Verifier()
	nonce := v.Nonces().Mint(now)
	// The slow path checks the first registration (nc 1) and fills.
	if r := slowCheck(t, a, authorized(1, digest.SHA256, nonce, 1, "alice-pw")); !r.OK {
		t.Fatalf("slow path refuses the first registration: %+v", r)
	}
	if res := f.slow(t, authorized(1, digest.SHA256, nonce, 1, "alice-pw")); res.StatusCode != 200 {
		t.Fatalf("first registration: %d", res.StatusCode)
	}
	l := f.cache.NewLoop()
	steps := []struct {
		name string
		data []byte
		want Decline
		why  authWhy
	}{
		{"next nc, SHA-256", authorized(2, digest.SHA256, nonce, 2, "alice-pw"), Absorbed, authOK},
		{"next nc, MD5", authorized(3, digest.MD5, nonce, 3, "alice-pw"), Absorbed, authOK},
		{"retransmission", authorized(3, digest.MD5, nonce, 3, "alice-pw"), Absorbed, authOK},
		{"replayed nc", authorized(4, digest.MD5, nonce, 3, "alice-pw"), Auth, authReplay},
		{"nc the slow path used", authorized(5, digest.MD5, nonce, 1, "alice-pw"), Auth, authReplay},
		{"wrong password", authorized(6, digest.SHA256, nonce, 9, "guess"), Auth, authVerdict + authWhy(digest.Forbidden)},
		{"nonce of another secret", authorized(7, digest.SHA256, strings.Repeat("A", digest.NonceLen), 1, "alice-pw"), Auth, authVerdict + authWhy(digest.Challenge)},
		{"no credentials", refresh(8), Challenged, authOK},
		{"no qop", []byte(strings.Replace(string(authorized(9, digest.MD5, nonce, 10, "alice-pw")), ", qop=auth", "", 1)), Auth, authNoQOP},
		{"older CSeq", authorized(1, digest.SHA256, nonce, 11, "alice-pw"), Order, authOK},
	}
	for _, s := range steps {
		before := l.cnt.auth[s.why].Load()
		reply, d := l.Absorb(s.data, lim, local, remote, now)
		if d != s.want {
			t.Fatalf("%s: %v, want %v", s.name, d, s.want)
		}
		if s.why != authOK && l.cnt.auth[s.why].Load() != before+1 {
			t.Errorf("%s: reason %v not counted", s.name, s.why)
		}
		if d == Absorbed && !strings.HasPrefix(string(reply), "SIP/2.0 200 OK\r\n") ||
			d == Challenged && !strings.HasPrefix(string(reply), "SIP/2.0 401 Unauthorized\r\n") {
			t.Errorf("%s: reply\n%s", s.name, reply)
		}
	}
	// The slow path sees what the loop accepted as used: nc 2 was the loop's.
	if r := slowCheck(t, a, authorized(20, digest.SHA256, nonce, 2, "alice-pw")); r.Status != 401 || !strings.Contains(r.Headers[0].Value(), "stale=true") {
		t.Errorf("slow path on an nc the loop accepted: %+v, want 401 stale", r)
	}
	// An expired nonce goes to the slow path (which answers stale).
	later := now.Add(digest.DefaultNonceTTL + time.Second)
	if _, d := l.Absorb(authorized(21, digest.SHA256, nonce, 30, "alice-pw"), lim, local, remote, later); d != Auth {
		t.Errorf("expired nonce: %v, want auth", d)
	}
}

// TestDigestChallengeNonce: the loop's challenge carries a nonce the slow
// path accepts, in the slow path's format.
func TestDigestChallengeNonce(t *testing.T) {
	now := time.Now()
	f, a := newAuthFixture(t, func() time.Time { return now })
	if res := f.slow(t, authorized(1, digest.SHA256, a.Verifier().Nonces().Mint(now), 1, "alice-pw")); res.StatusCode != 200 {
		t.Fatalf("first registration: %d", res.StatusCode)
	}
	l := f.cache.NewLoop()
	reply, d := l.Absorb(refresh(2), lim, local, remote, now)
	if d != Challenged {
		t.Fatalf("%v, want challenged", d)
	}
	i := strings.Index(string(reply), `nonce="`) + len(`nonce="`)
	nonce := string(reply[i : i+digest.NonceLen])
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.MD5} {
		want := fmt.Sprintf("WWW-Authenticate: Digest realm=\"pinhole\", nonce=%q, algorithm=%s, qop=\"auth\"\r\n", nonce, alg)
		if !strings.Contains(string(reply), want) {
			t.Errorf("challenge lacks %q:\n%s", want, reply)
		}
	}
	if r := slowCheck(t, a, authorized(3, digest.MD5, nonce, 1, "alice-pw")); !r.OK {
		t.Errorf("slow path refuses the loop's nonce: %+v", r)
	}
}

// BenchmarkAbsorbDigest is one absorbed authenticated refresh: scan, the
// digest check (nonce HMAC, HA1 look-up, response hash, replay memory),
// reply and expiry hand-off. The requests are rendered beforehand, a
// fresh nonce every 4096 of them, outside the timer.
func BenchmarkAbsorbDigest(b *testing.B) {
	for _, alg := range []digest.Algorithm{digest.MD5, digest.SHA256} {
		b.Run(alg.String(), func(b *testing.B) {
			now := time.Now()
			f, a := newAuthFixture(b, func() time.Time { return now })
			f.slow(b, refresh(1))
			l := f.cache.NewLoop()
			const batch = 4096
			msgs := make([][]byte, batch)
			cseq := 1
			render := func() {
				nonce := a.Verifier().Nonces().Mint(now)
				for i := range msgs {
					cseq++
					msgs[i] = authorized(cseq, alg, nonce, uint32(i+1), "alice-pw")
				}
			}
			render()
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPUTimer(b)
			for i := 0; i < b.N; i++ {
				if i%batch == 0 && i > 0 {
					cpu.stop()
					render()
					f.cache.Flush()
					cpu.start()
				}
				if _, d := l.Absorb(msgs[i%batch], lim, local, remote, now); d != Absorbed {
					b.Fatalf("refresh %d: %v", i, d)
				}
			}
			cpu.report()
		})
	}
}

// BenchmarkChallenge is one REGISTER without credentials for a known AOR
// answered with its 401 from the loop.
func BenchmarkChallenge(b *testing.B) {
	now := time.Now()
	f, _ := newAuthFixture(b, func() time.Time { return now })
	f.slow(b, refresh(1))
	l := f.cache.NewLoop()
	data := refresh(2)
	at := strings.Index(string(data), "CSeq: ") + len("CSeq: ")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := uint64(i + 2)
		for k := 9; k >= 0; k-- {
			data[at+k] = byte('0' + n%10)
			n /= 10
		}
		if _, d := l.Absorb(data, lim, local, remote, now); d != Challenged {
			b.Fatalf("request %d: %v", i, d)
		}
	}
}
