package absorb

import (
	"fmt"
	randv2 "math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

// twin is one registrar and store with two caches over it: viaSipgo
// filled by Fill from sipgo's request and 200, viaBytes by PrepareRaw
// from their bytes, each with a loop whose random tags are the same.
type twin struct {
	store              *location.Memory
	reg                *registrar.Registrar
	viaSipgo, viaBytes *Cache
	loopSipgo, loopRaw *Loop
	parser             *sip.Parser
}

func newTwin(tb testing.TB) *twin {
	tb.Helper()
	store, err := location.Open(location.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	reg, err := registrar.New(registrar.Config{Domains: []string{"example.com"}, MinExpires: 60, MaxExpires: 3600, DefaultExpires: 600, MaxContacts: 5}, store, nil)
	if err != nil {
		tb.Fatal(err)
	}
	w := &twin{store: store, reg: reg, parser: sip.NewParser()}
	for _, c := range []**Cache{&w.viaSipgo, &w.viaBytes} {
		if *c, err = New(Options{Store: store, MaxEntries: 1000}); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup((*c).Close)
	}
	w.loopSipgo, w.loopRaw = w.viaSipgo.NewLoop(), w.viaBytes.NewLoop()
	w.loopSipgo.rng = randv2.NewChaCha8([32]byte{1})
	w.loopRaw.rng = randv2.NewChaCha8([32]byte{1})
	return w
}

// register answers data from src as the registrar does and fills both
// caches from that one answer. It reports whether the registrar answered
// 200 and whether PrepareRaw vouched for the request.
func (w *twin) register(tb testing.TB, data []byte, src netip.AddrPort) (ok200, vouched bool) {
	tb.Helper()
	msg, err := w.parser.ParseSIP(data)
	if err != nil {
		return false, false
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return false, false
	}
	fl := location.Flow{Transport: location.TransportUDP, Remote: src, Local: local}
	req.SetSource(src.String())
	req.SetTransport("UDP")
	fill, vouched := w.viaBytes.PrepareRaw(data)
	res := w.reg.Process(req, fl)
	if res.StatusCode != 200 {
		return false, vouched
	}
	w.viaSipgo.Fill(req, res, fl)
	if vouched {
		// The raw 200 is byte for byte the 200 sipgo prints
		// (slowpath's raw 200 tests); the buffer is reused after, as
		// the slow path's is.
		buf := []byte(res.String())
		fill(buf, fl)
		for i := range buf {
			buf[i] = 'X'
		}
	}
	w.viaSipgo.Wait()
	w.viaBytes.Wait()
	return true, vouched
}

// describe prints everything an entry holds that a loop reads.
func describe(c *Cache, aor string) string {
	e, ok := c.rc.Get(c.key(aor))
	if !ok {
		return "no entry"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "realm %q user %q authOK %v\n", e.realm.Name, e.user, e.authOK)
	for _, m := range e.members {
		g := m.reg
		fmt.Fprintf(&b, "reg %q flow %v callID %q sentBy %q identity %x contacts %d cseq %d last %d answers %d\n",
			g.aor(), g.flow, g.callID(), g.sentBy(), g.ident, g.nContacts, g.cseq.Load(), g.last.Load(), len(m.ans.left))
		for i := range g.bindings {
			fmt.Fprintf(&b, "  binding %q exp %d until %d\n", g.bindings[i].contact, g.bindings[i].exp, g.bindings[i].until.Load())
		}
	}
	fmt.Fprintf(&b, "pre %q\n", e.form.pre)
	if c := e.form.cut; c != nil {
		fmt.Fprintf(&b, "post %q heads %q rests %q\n", c.post, c.heads, c.rests)
	}
	for _, s := range e.slots {
		fmt.Fprintf(&b, "slot %q %q\n", s.reg.callID(), s.b.contact)
	}
	return b.String()
}

// sameEntries fails when the two caches hold different entries for aor.
func (w *twin) sameEntries(tb testing.TB, aor string) {
	tb.Helper()
	if a, b := describe(w.viaSipgo, aor), describe(w.viaBytes, aor); a != b {
		tb.Fatalf("entries differ\nfrom sipgo:\n%s\nfrom bytes:\n%s", a, b)
	}
}

// sameAnswers offers both loops the refresh data and fails unless they
// decide the same and, when absorbed, answer byte for byte the same.
func (w *twin) sameAnswers(tb testing.TB, data []byte, src netip.AddrPort) bool {
	tb.Helper()
	now := time.Now()
	a, da := w.loopSipgo.Absorb(data, lim, local, src, now)
	b, db := w.loopRaw.Absorb(data, lim, local, src, now)
	if da != db || string(a) != string(b) {
		tb.Fatalf("the loops answer the refresh differently\nfrom sipgo (%v):\n%s\nfrom bytes (%v):\n%s", da, a, db, b)
	}
	return da == Absorbed
}

// corpusDevice fills a fast path corpus template (fastpath/testdata) as
// fastpath's tests do, for a device at src.
func corpusDevice(tmpl string, src netip.AddrPort, cseq int) []byte {
	return []byte(strings.NewReplacer("{{LOCAL}}", src.String(), "{{PORT}}", strconv.Itoa(int(src.Port())),
		"{{CALLID}}", "corpus-"+strconv.Itoa(int(src.Port())), "{{CSEQ}}", strconv.Itoa(cseq),
		"{{BRANCH}}", "b"+strconv.Itoa(cseq)).Replace(tmpl))
}

// TestRawFillCorpus: for every REGISTER format of the fast path's corpus
// the cache filled from bytes holds exactly what the one filled from
// sipgo's objects holds, and the loops answer the next refresh byte for
// byte alike; every format the fast path absorbs is one the raw reading
// vouches for, so the raw 200 never costs an absorbable device its fill.
func TestRawFillCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "corpus", "*.sip"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	for i, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		first, rest, _ := strings.Cut(string(raw), "\n")
		absorbable := strings.HasPrefix(first, "# absorb:")
		tmpl := strings.ReplaceAll(rest, "\n", "\r\n")
		t.Run(strings.TrimSuffix(filepath.Base(f), ".sip"), func(t *testing.T) {
			w := newTwin(t)
			src := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), uint16(40000+i))
			ok200, vouched := w.register(t, corpusDevice(tmpl, src, 1), src)
			if !ok200 {
				t.Skipf("the registrar does not answer it 200")
			}
			if !vouched {
				if absorbable {
					t.Fatal("an absorbable format the raw reading does not vouch for")
				}
				return
			}
			msg, _ := w.parser.ParseSIP(corpusDevice(tmpl, src, 1))
			aor, _ := canonicalAOR(&msg.(*sip.Request).To().Address)
			w.sameEntries(t, aor)
			absorbed := w.sameAnswers(t, corpusDevice(tmpl, src, 2), src)
			if absorbable && !absorbed {
				t.Fatal("an absorbable format's refresh was not absorbed")
			}
		})
	}
}

// TestRawFillSeveralPhones: AORs with two and three registrations, each
// phone filling in turn, hold the same entries from either fill, and each
// phone's next refresh is answered alike (the other phones' expiries
// listed).
func TestRawFillSeveralPhones(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			w := newTwin(t)
			var phones []*phone
			for i := 0; i < n; i++ {
				phones = append(phones, &phone{name: "p" + strconv.Itoa(i), q: []string{"1.0", "0.5", "0.7"}[i], expires: 600 + 60*i,
					remote: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), uint16(41000+i)), cseq: 1})
			}
			// Twice round: the second round's fills find the others.
			for round := 0; round < 2; round++ {
				for _, p := range phones {
					if ok200, vouched := w.register(t, p.register(p.expires), p.remote); !ok200 || !vouched {
						t.Fatalf("%s: 200 %v, vouched %v", p.name, ok200, vouched)
					}
					p.cseq++
					w.sameEntries(t, "pair@example.com")
				}
			}
			for _, p := range phones {
				if !w.sameAnswers(t, p.register(p.expires), p.remote) {
					t.Fatalf("%s: refresh not absorbed", p.name)
				}
				p.cseq++
			}
			w.sameEntries(t, "pair@example.com")
		})
	}
}

// FuzzRawFillVsSipgo: whenever the raw reading vouches for a REGISTER
// the registrar answers 200, the cache filled from bytes holds what the
// one filled from sipgo's objects holds, and the loops answer the next
// refresh alike.
func FuzzRawFillVsSipgo(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "corpus", "*.sip"))
	for _, fn := range files {
		raw, err := os.ReadFile(fn)
		if err != nil {
			f.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(raw), "\n")
		f.Add(corpusDevice(strings.ReplaceAll(rest, "\n", "\r\n"), remote, 1))
	}
	w := newTwin(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := w.parser.ParseSIP(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.To() == nil {
			return
		}
		aor, ok := canonicalAOR(&req.To().Address)
		if !ok {
			return
		}
		_, _ = w.store.Update(aor, func([]location.Binding) ([]location.Binding, error) { return nil, nil })
		w.viaSipgo.Invalidate(aor)
		w.viaBytes.Invalidate(aor)
		if ok200, vouched := w.register(t, data, remote); !ok200 || !vouched {
			return
		}
		w.sameEntries(t, aor)
		e, ok := w.viaSipgo.rc.Get(w.viaSipgo.key(aor))
		if !ok {
			return
		}
		// The same bytes again as the next refresh.
		e.members[0].reg.cseq.Store(0)
		if e2, ok := w.viaBytes.rc.Get(w.viaBytes.key(aor)); ok {
			e2.members[0].reg.cseq.Store(0)
		}
		w.sameAnswers(t, data, remote)
	})
}

// BenchmarkFill measures a fill alone, after the registrar's answer:
// "sipgo" as Fill reads sipgo's request and 200 (their parse and
// printing not counted, though a fill through sipgo needs them), "bytes"
// as PrepareRaw and its fill read the datagram and the 200's bytes.
func BenchmarkFill(b *testing.B) {
	for _, mode := range []string{"sipgo", "bytes"} {
		b.Run(mode, func(b *testing.B) {
			w := newTwin(b)
			data := refresh(1)
			msg, err := w.parser.ParseSIP(data)
			if err != nil {
				b.Fatal(err)
			}
			req := msg.(*sip.Request)
			req.SetSource(remote.String())
			req.SetTransport("UDP")
			res := w.reg.Process(req, flow)
			if res.StatusCode != 200 {
				b.Fatal(res.StatusCode)
			}
			text := []byte(res.String())
			before := w.viaSipgo.m.fills[fillStored].Load() + w.viaBytes.m.fills[fillStored].Load()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if mode == "sipgo" {
					w.viaSipgo.Fill(req, res, flow)
					continue
				}
				fill, ok := w.viaBytes.PrepareRaw(data)
				if !ok {
					b.Fatal("not vouched for")
				}
				fill(text, flow)
			}
			b.StopTimer()
			if got := w.viaSipgo.m.fills[fillStored].Load() + w.viaBytes.m.fills[fillStored].Load() - before; got != uint64(b.N) {
				b.Fatalf("%d of %d fills stored", got, b.N)
			}
		})
	}
}
