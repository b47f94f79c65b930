package absorb

import (
	"strings"
	"testing"
	"time"
)

// TestChangedIdentityDeclines: a refresh that differs from the
// registration in any identity field the loop keeps only as a hash
// (Reg.ident), by as little as one byte, a header added or dropped, is
// declined as changed, whichever way the cache was filled; the same
// refresh unchanged is absorbed.
func TestChangedIdentityDeclines(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new string
	}{
		{"request-uri", "REGISTER sip:example.com ", "REGISTER sip:example.coM "},
		{"from tag", ";tag=a1\r\n", ";tag=a2\r\n"},
		{"from display name", "From: <sip:alice", "From: \"A\" <sip:alice"},
		{"to parameter", "To: <sip:alice@example.com>", "To: <sip:alice@example.com;x=1>"},
		{"contact", "10.0.0.2:5060;ob>", "10.0.0.2:5061;ob>"},
		{"contact parameter", "uuid:1>\"", "uuid:2>\""},
		{"second contact", "Expires: 600\r\n", "Contact: <sip:alice@10.0.0.3>\r\nExpires: 600\r\n"},
		{"expires", "Expires: 600\r\n", "Expires: 601\r\n"},
		{"expires dropped", "Expires: 600\r\n", ""},
		{"user-agent", "User-Agent: test\r\n", "User-Agent: tesT\r\n"},
		{"user-agent empty", "User-Agent: test\r\n", "User-Agent: \r\n"},
		{"user-agent dropped", "User-Agent: test\r\n", ""},
		{"supported added", "User-Agent: test\r\n", "User-Agent: test\r\nSupported: path\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newTwin(t)
			if ok200, vouched := w.register(t, refresh(1), remote); !ok200 || !vouched {
				t.Fatalf("first registration: 200 %v, vouched %v", ok200, vouched)
			}
			changed := []byte(strings.Replace(string(refresh(2)), tc.old, tc.new, 1))
			if string(changed) == string(refresh(2)) {
				t.Fatalf("%q is not in the refresh", tc.old)
			}
			now := time.Now()
			for name, l := range map[string]*Loop{"sipgo": w.loopSipgo, "bytes": w.loopRaw} {
				if _, d := l.Absorb(changed, lim, local, remote, now); d != Changed {
					t.Errorf("filled from %s: %v, want changed", name, d)
				}
				if _, d := l.Absorb(refresh(2), lim, local, remote, now); d != Absorbed {
					t.Errorf("filled from %s, unchanged: %v, want absorbed", name, d)
				}
			}
		})
	}
}

// BenchmarkIdentity is what comparing a refresh's identity fields with
// its registration's costs the loop: one hash of them (Loop.same).
func BenchmarkIdentity(b *testing.B) {
	w := newTwin(b)
	if ok200, _ := w.register(b, refresh(1), remote); !ok200 {
		b.Fatal("first registration not answered 200")
	}
	l := w.loopSipgo
	if _, d := l.Absorb(refresh(2), lim, local, remote, time.Now()); d != Absorbed {
		b.Fatalf("refresh declined: %v", d)
	}
	e, _ := w.viaSipgo.rc.Get(w.viaSipgo.key("alice@example.com"))
	g := e.members[0].reg
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if !l.same(g) {
			b.Fatal("not the same")
		}
	}
}
