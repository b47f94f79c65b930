package absorb

import (
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/midreg"
)

// forgetters are the ways the AOR's entry goes between an absorbed
// refresh and its retransmission.
var forgetters = []struct {
	name   string
	forget func(c *Cache, aor string)
}{
	// The store's change hook: another phone of the user changed its
	// binding, or one lapsed.
	{"invalidated", func(c *Cache, aor string) { c.Invalidate(aor) }},
	// ristretto evicted the entry, as it may at any time.
	{"evicted", func(c *Cache, aor string) { c.rc.Del(c.key(aor)); c.rc.Wait() }},
}

// TestRetransmissionAfterEntryGone: a phone's refresh is absorbed, its
// 200 is lost, and the AOR's entry goes before the phone retransmits.
// The retransmission must get the 200 the phone was given (same To tag
// and Date, byte for byte), as the slow path's transaction would resend
// it, and change nothing in the store; before, it went to the slow path,
// whose registrar saw the same Call-ID with a CSeq not above the stored
// one and answered 400 (RFC 3261 §10.3 step 7). A new request that reuses
// the CSeq with another branch still gets that 400 from both pinholes.
func TestRetransmissionAfterEntryGone(t *testing.T) {
	paths := []struct {
		name string
		new  func(tb testing.TB, clock func() time.Time, fast bool) *pairPath
	}{
		{"registrar", newPairPath},
		{"mid-registrar contact", func(tb testing.TB, clock func() time.Time, fast bool) *pairPath {
			return newMidPath(tb, clock, midreg.ModeContact, &mainRegistrar{devices: map[string]bool{}}, fast)
		}},
		{"mid-registrar aor", func(tb testing.TB, clock func() time.Time, fast bool) *pairPath {
			return newMidPath(tb, clock, midreg.ModeAOR, &mainRegistrar{devices: map[string]bool{}}, fast)
		}},
	}
	for _, p := range paths {
		for _, fg := range forgetters {
			t.Run(p.name+"/"+fg.name, func(t *testing.T) {
				var clock atomic.Int64
				clock.Store(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC).UnixNano())
				now := func() time.Time { return time.Unix(0, clock.Load()) }
				ref, fast := p.new(t, now, false), p.new(t, now, true)
				a := &phone{name: "a", q: "0.9", expires: 20, remote: netip.MustParseAddrPort("198.51.100.7:40001")}
				norm := func(s string) []string { return strings.Split(anyTag.ReplaceAllString(s, "${1}TAG\r"), "\r\n") }
				both := func(step string, data []byte) (want, got string, byLoop bool) {
					t.Helper()
					at := now()
					want, _ = ref.send(t, a, data, at)
					got, byLoop = fast.send(t, a, data, at)
					if diff := cmp.Diff(norm(want), norm(got)); diff != "" {
						t.Fatalf("%s: answers differ (-slow path +fast path):\n%s", step, diff)
					}
					return want, got, byLoop
				}

				a.cseq = 1
				if want, _, _ := both("a registers", a.register(a.expires)); !strings.HasPrefix(want, "SIP/2.0 200 OK\r\n") {
					t.Fatalf("a registers: answered\n%s", want)
				}
				clock.Add(int64(time.Second))
				a.cseq = 2
				refresh := a.register(a.expires)
				_, first, byLoop := both("a refreshes", refresh)
				if !byLoop {
					t.Fatal("a's refresh was not absorbed: the scenario proves nothing")
				}
				fast.cache.Flush() // the flusher runs every 100 ms; the phone retransmits after 500
				stored := summary(fast.store.Lookup("pair@example.com"))

				fg.forget(fast.cache, "pair@example.com")
				clock.Add(int64(500 * time.Millisecond))
				want, got, byLoop := both("its retransmission", refresh)
				if !strings.HasPrefix(want, "SIP/2.0 200 OK\r\n") {
					t.Fatalf("its retransmission: the slow path alone answered\n%s", want)
				}
				if got != first {
					t.Errorf("its retransmission: not the answer first sent\nfirst:\n%s\nagain:\n%s", first, got)
				}
				if !byLoop {
					t.Errorf("its retransmission was not answered by the loop")
				}
				fast.cache.Flush()
				if diff := cmp.Diff(stored, summary(fast.store.Lookup("pair@example.com"))); diff != "" {
					t.Errorf("its retransmission changed the store (-before +after):\n%s", diff)
				}

				// The same CSeq under another branch is a new request: the
				// registrar's error, from both pinholes, and no change.
				reused := []byte(strings.Replace(string(refresh), "branch=z9hG4bK-a2", "branch=z9hG4bK-a2-reused", 1))
				want, _, byLoop = both("the CSeq reused", reused)
				if !strings.HasPrefix(want, "SIP/2.0 400 ") || byLoop {
					t.Errorf("the CSeq reused under another branch: absorbed %v, slow path answered\n%s", byLoop, want)
				}
				if diff := cmp.Diff(stored, summary(fast.store.Lookup("pair@example.com"))); diff != "" {
					t.Errorf("the CSeq reused changed the store (-before +after):\n%s", diff)
				}
			})
		}
	}
}

// summary is what a store holds of each binding, the written second
// aside.
func summary(bs []location.Binding) []string {
	var out []string
	for _, b := range bs {
		out = append(out, fmt.Sprintf("%s %s CSeq %d expires %s upstream %s", b.Contact, b.CallID, b.CSeq,
			b.Expires.UTC().Format(time.TimeOnly), b.UpExpires.UTC().Format(time.TimeOnly)))
	}
	return out
}

// TestDigestRetransmissionAfterEntryGone: with digest authentication on,
// the retransmission of an absorbed refresh is answered again once its
// entry is gone, and also once its nonce has expired (the slow path's
// response memory answers a retransmission before it looks at
// credentials); a new request with its CSeq and another branch is not.
func TestDigestRetransmissionAfterEntryGone(t *testing.T) {
	for _, fg := range forgetters {
		t.Run(fg.name, func(t *testing.T) {
			now := time.Now()
			f, a := newAuthFixture(t, func() time.Time { return now })
			nonce := a.Verifier().Nonces().Mint(now)
			if res := f.slow(t, authorized(1, digest.SHA256, nonce, 1, "alice-pw")); res.StatusCode != 200 {
				t.Fatalf("first registration: %d", res.StatusCode)
			}
			l := f.cache.NewLoop()
			refresh := authorized(2, digest.SHA256, nonce, 2, "alice-pw")
			reply, d := l.Absorb(refresh, lim, local, remote, now)
			if d != Absorbed {
				t.Fatalf("refresh: %v", d)
			}
			first := string(reply)
			f.cache.Flush()
			stored := summary(f.store.Lookup("alice@example.com"))

			fg.forget(f.cache, "alice@example.com")
			for _, at := range []time.Time{now.Add(500 * time.Millisecond), now.Add(digest.DefaultNonceTTL + time.Second)} {
				reply, d = l.Absorb(refresh, lim, local, remote, at)
				if d != Absorbed || string(reply) != first {
					t.Errorf("retransmission %v later: %v, reply\n%s\nwant\n%s", at.Sub(now), d, reply, first)
				}
			}
			reused := []byte(strings.Replace(string(refresh), "branch=z9hG4bK-", "branch=z9hG4bK-x", 1))
			if _, d := l.Absorb(reused, lim, local, remote, now); d == Absorbed {
				t.Error("the CSeq reused under another branch was answered")
			}
			f.cache.Flush()
			if diff := cmp.Diff(stored, summary(f.store.Lookup("alice@example.com"))); diff != "" {
				t.Errorf("the store changed (-before +after):\n%s", diff)
			}
		})
	}
}

// BenchmarkRetransmissionWithoutEntry answers the retransmission of an
// absorbed refresh whose AOR's entry is gone: from the cache of
// registrations, without allocating.
func BenchmarkRetransmissionWithoutEntry(b *testing.B) {
	f := newFixture(b, Options{})
	if res := f.slow(b, refresh(1)); res.StatusCode != 200 {
		b.Fatalf("slow path answered %d", res.StatusCode)
	}
	l := f.cache.NewLoop()
	now := time.Now()
	data := refresh(2)
	if _, d := l.Absorb(data, lim, local, remote, now); d != Absorbed {
		b.Fatalf("refresh: %v", d)
	}
	f.cache.Invalidate("alice@example.com")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, d := l.Absorb(data, lim, local, remote, now); d != Absorbed {
			b.Fatalf("retransmission: %v", d)
		}
	}
}

// TestRetransmissionAfterTimerJ: the loop answers a retransmission for as
// long as a server transaction would (Timer J, 32 s), entry held or gone;
// later the copy goes to the slow path like any request it has no
// transaction for.
func TestRetransmissionAfterTimerJ(t *testing.T) {
	f := newFixture(t, Options{})
	if res := f.slow(t, refresh(1)); res.StatusCode != 200 {
		t.Fatalf("slow path answered %d", res.StatusCode)
	}
	l := f.cache.NewLoop()
	now := time.Now()
	if _, d := l.Absorb(refresh(2), lim, local, remote, now); d != Absorbed {
		t.Fatalf("refresh: %v", d)
	}
	steps := []struct {
		name  string
		after time.Duration
		drop  bool // the entry is dropped first
		want  Decline
	}{
		{"held, 32 s later", 32 * time.Second, false, Absorbed},
		{"held, 33 s later", 33 * time.Second, false, Order},
		{"gone, 32 s later", 32 * time.Second, true, Absorbed},
		{"gone, 33 s later", 33 * time.Second, true, Miss},
	}
	for _, s := range steps {
		if s.drop {
			f.cache.Invalidate("alice@example.com")
		}
		if _, d := l.Absorb(refresh(2), lim, local, remote, now.Add(s.after)); d != s.want {
			t.Errorf("%s: %v, want %v", s.name, d, s.want)
		}
	}
}
