package absorb

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
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
	e.cseq.Store(0)
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
