package absorb

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/scan"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

var toTagRe = regexp.MustCompile(`(?m)^(To: .*;tag=)[^\r]*\r$`)

// absorbVsSipgo fills the cache from the slow path's answer to data and
// offers the fast path the same bytes (as if their CSeq were new). It
// reports whether they were absorbed; then the reply's head (status line,
// Vias with received/rport, From, To, Call-ID, CSeq) must be the one
// sipgo and the registrar build for that request, To tag aside. The tail
// and Date are copied and formatted by construction.
func absorbVsSipgo(t *testing.T, fx *fixture, l *Loop, parser *sip.Parser, data []byte) bool {
	msg, err := parser.ParseSIP(data)
	if err != nil {
		return false
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.To() == nil {
		return false
	}
	aor, ok := canonicalAOR(&req.To().Address)
	if !ok {
		return false
	}
	_, _ = fx.store.Update(aor, func([]location.Binding) ([]location.Binding, error) { return nil, nil })
	fx.cache.Invalidate(aor)
	req.SetSource(remote.String())
	req.SetTransport("UDP")
	res := fx.reg.Process(req, flow)
	if res.StatusCode != 200 {
		return false
	}
	fx.cache.Fill(req, res, flow)
	fx.cache.Wait()
	e, ok := fx.cache.rc.Get(fx.cache.key(aor))
	if !ok {
		return false
	}
	e.members[0].reg.cseq.Store(0)
	reply, d := l.Absorb(data, lim, local, remote, time.Now())
	if d != Absorbed {
		return false
	}
	head := func(s string) string {
		s = toTagRe.ReplaceAllString(s, "${1}TAG\r")
		i := strings.Index(s, "\r\nContent-Length: ")
		if i < 0 {
			t.Fatalf("no Content-Length in\n%s", s)
		}
		return s[:i]
	}
	got, want := head(string(reply)), head(registrar.Reply(req, 200, "OK").String())
	if got != want {
		t.Fatalf("absorbed reply head differs\nfast:\n%s\nsipgo:\n%s", got, want)
	}
	return true
}

var fuzzSeeds = []string{
	string(refresh(1)),
	strings.Replace(string(refresh(1)), ";rport", "", 1),
	strings.Replace(string(refresh(1)), "10.0.0.2:5060;branch", "phone.example.net;branch", 1),
	strings.Replace(string(refresh(1)), "Via: ", "Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK-x\r\nVia: ", 1),
	strings.Replace(string(refresh(1)), "To: <sip:alice@example.com>", "To: \"Alice\" <sip:alice@EXAMPLE.com>;x=y", 1),
}

// FuzzAbsorbVsSipgo: see absorbVsSipgo.
func FuzzAbsorbVsSipgo(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	fx := newFixture(f, Options{})
	l := fx.cache.NewLoop()
	parser := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) { absorbVsSipgo(t, fx, l, parser, data) })
}

// The seeds must reach the comparison, else the fuzz target would only
// ever see declines.
func TestFuzzSeedsAreAbsorbed(t *testing.T) {
	fx := newFixture(t, Options{})
	l := fx.cache.NewLoop()
	parser := sip.NewParser()
	for i, s := range fuzzSeeds {
		if !absorbVsSipgo(t, fx, l, parser, []byte(s)) {
			t.Errorf("seed %d was not absorbed", i)
		}
	}
}

// FuzzDigestVsSlowPath offers the loop's digest check and the slow path's
// (slowpath/auth, on what sipgo parsed) the same REGISTER with a fuzzed
// Authorization value, both on one Verifier. In the value {{NONCE}} is a
// nonce just minted and {{RESPONSE}} the right response for what the slow
// path parsed, so the fuzzer explores the forms of valid credentials too.
// When the loop vouches for the credentials the slow path must accept
// them for the same user; when the loop's check refuses them, the slow path
// must give the answer that refusal stands for (403, 401 stale, 400, a
// fresh challenge) — a digest uri the loop does not read byte for byte
// aside, which only the slow path compares as a URI.
func FuzzDigestVsSlowPath(f *testing.F) {
	for _, s := range []string{
		`Digest username="alice", realm="pinhole", nonce="{{NONCE}}", uri="sip:example.com", response="{{RESPONSE}}", algorithm=SHA-256, cnonce="0a4f113b", qop=auth, nc=00000001`,
		`Digest username="alice", realm="pinhole", nonce="{{NONCE}}", uri="sip:example.com", response="{{RESPONSE}}", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001`,
		`digest USERNAME=alice,REALM="pinhole",NONCE={{NONCE}},URI="sip:example.com",RESPONSE={{RESPONSE}},ALGORITHM=md5,CNONCE=x,QOP=AUTH,NC=0000000A`,
		`Digest username="bob", realm="pinhole", nonce="{{NONCE}}", uri="sip:example.com", response="{{RESPONSE}}", cnonce="c", qop=auth, nc=00000001`,
		`Digest username="alice", realm="other", nonce="{{NONCE}}", uri="sip:example.com", response="{{RESPONSE}}", qop=auth, nc=00000001, cnonce="c"`,
		`Digest username="alice", realm="pinhole", nonce="{{NONCE}}", uri="sip:example.com:5060", response="{{RESPONSE}}", qop=auth, nc=00000001, cnonce="c"`,
		`Digest username="alice", realm="pinhole", nonce="{{NONCE}}", uri="sip:example.com", response="{{RESPONSE}}"`,
		`Digest username="al\ice", realm="pinhole", nonce="{{NONCE}}", uri="sip:example.com", response="{{RESPONSE}}", qop=auth, nc=00000001, cnonce="c"`,
		`Basic YWxpY2U6cHc=`,
	} {
		f.Add(s)
	}
	clock := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { clock = clock.Add(time.Microsecond); return clock } // every nonce its own issue time
	fx, a := newAuthFixture(f, now)
	v := a.Verifier()
	if res := fx.slow(f, refresh(1)); res.StatusCode != 200 {
		f.Fatalf("registration: %d", res.StatusCode)
	}
	e, ok := fx.cache.rc.Get(mustKey(f, fx.cache, "alice@example.com"))
	if !ok {
		f.Fatal("no entry after the registration")
	}
	l := fx.cache.NewLoop()
	parser := sip.NewParser()
	f.Fuzz(func(t *testing.T, value string) {
		if strings.ContainsAny(value, "\r\n") {
			return // another header or a fold: the scanner's business (FuzzScanVsSipgo)
		}
		value = strings.ReplaceAll(value, "{{NONCE}}", v.Nonces().Mint(clock))
		msg := func(value string) []byte {
			s := string(refresh(2))
			i := strings.Index(s, "Content-Length:")
			return []byte(s[:i] + "Authorization: " + value + "\r\n" + s[i:])
		}
		data := msg(value)
		if strings.Contains(value, "{{RESPONSE}}") {
			m, err := parser.ParseSIP(msg(strings.ReplaceAll(value, "{{RESPONSE}}", "")))
			if err != nil {
				return
			}
			h := m.(*sip.Request).GetHeader("Authorization")
			p, err := digest.Parse(h.Value())
			alg, aerr := digest.ParseAlgorithm(p.Algorithm)
			if p.Algorithm == "" {
				alg, aerr = digest.MD5, nil
			}
			if err != nil || aerr != nil {
				return
			}
			ha1 := digest.HA1(alg, p.Username, "pinhole", p.Username+"-pw")
			resp := string(digest.AppendResponse(nil, alg, ha1, "REGISTER", &p))
			data = msg(strings.ReplaceAll(value, "{{RESPONSE}}", resp))
		}
		m, err := parser.ParseSIP(data)
		if err != nil {
			return
		}
		req := m.(*sip.Request)
		if scan.Scan(data, lim, &l.reg) != scan.OK {
			return
		}
		at := clock
		_, why := l.verify(v, e, at)
		got := a.Check(req, true) // records the (nonce, nc) when it accepts
		switch {
		case why == authOK:
			if !got.OK || got.User != "alice" {
				t.Fatalf("the loop vouches for %q, the slow path answers %d %s", value, got.Status, got.Reason)
			}
		case why < authVerdict:
			// Left to the slow path for a reason of the loop's own.
		default:
			want := map[digest.Verdict]int{digest.Challenge: 401, digest.Stale: 401, digest.Forbidden: 403,
				digest.Incomplete: 400, digest.BadResponse: 400, digest.BadNC: 400, digest.BadQOP: 400}
			vd := digest.Verdict(why - authVerdict)
			if vd == digest.URIMismatch {
				return
			}
			if got.OK || got.Status != want[vd] {
				t.Fatalf("the loop refuses %q as %v, the slow path answers %+v", value, vd, got)
			}
		}
	})
}

// mustKey is the cache key of aor.
func mustKey(tb testing.TB, c *Cache, aor string) uint64 {
	tb.Helper()
	return c.key(aor)
}
