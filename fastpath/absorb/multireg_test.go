package absorb

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

// phone is one registration of the user "pair": its own Call-ID, source
// port, Contact and q.
type phone struct {
	name    string
	q       string
	expires int
	remote  netip.AddrPort
	cseq    int
	last    []byte // the last request sent, for its retransmission
}

func (p *phone) flow() location.Flow {
	return location.Flow{Transport: location.TransportUDP, Remote: p.remote, Local: local}
}

// register is p's REGISTER with its current CSeq (branch from the CSeq).
func (p *phone) register(expires int) []byte {
	host := p.remote.String()
	return []byte("REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + host + ";branch=z9hG4bK-" + p.name + fmt.Sprint(p.cseq) + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:pair@example.com>;tag=" + p.name + "\r\nTo: <sip:pair@example.com>\r\n" +
		"Call-ID: " + p.name + "@pair\r\nCSeq: " + fmt.Sprint(p.cseq) + " REGISTER\r\n" +
		"Contact: <sip:" + p.name + "@" + host + ">;q=" + p.q + "\r\n" +
		"Expires: " + fmt.Sprint(expires) + "\r\nContent-Length: 0\r\n\r\n")
}

// pairPath is one pinhole: a store and a registrar (or mid-registrar,
// midreg_test.go) over it, with the fast path (cache and a loop) in
// front, or without (reference).
type pairPath struct {
	store *location.Memory
	// process is the slow path's answer to a REGISTER.
	process func(*sip.Request, location.Flow) *sip.Response
	cache   *Cache // nil: the slow path alone
	loop    *Loop
	// sent is the slow path's last answer per request (Call-ID, CSeq
	// and branch), as sipgo's transaction layer resends it.
	sent map[string][]byte
}

func newPairPath(tb testing.TB, clock func() time.Time, fast bool) *pairPath {
	tb.Helper()
	p := &pairPath{sent: map[string][]byte{}}
	var cache atomic.Pointer[Cache]
	store, err := location.Open(location.Options{Now: clock, OnChange: func(aor string) {
		if c := cache.Load(); c != nil {
			c.Invalidate(aor)
		}
	}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	cfg := registrar.Config{Domains: []string{"example.com"}, MinExpires: 2, MaxExpires: 3600, DefaultExpires: 600, MaxContacts: 5, Now: clock}
	if fast {
		c, err := New(Options{Store: store, MaxEntries: 1000, Now: clock})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(c.Close)
		cache.Store(c)
		p.cache, p.loop = c, c.NewLoop()
		cfg.Settle = c.Settle
	}
	reg, err := registrar.New(cfg, store, nil)
	if err != nil {
		tb.Fatal(err)
	}
	p.store, p.process = store, reg.Process
	return p
}

// send answers data from ph: the loop when it absorbs it, else the slow
// path (which then fills the cache). It reports whether the loop did.
func (p *pairPath) send(tb testing.TB, ph *phone, data []byte, now time.Time) (string, bool) {
	tb.Helper()
	if p.cache != nil {
		if reply, d := p.loop.Absorb(data, lim, local, ph.remote, now); d == Absorbed {
			return string(reply), true
		}
	}
	m, err := sip.NewParser().ParseSIP(data)
	if err != nil {
		tb.Fatal(err)
	}
	req := m.(*sip.Request)
	key := req.CallID().Value() + " " + req.CSeq().Value() + " " + req.Via().Params.GetOr("branch", "")
	if res, ok := p.sent[key]; ok {
		return string(res), false
	}
	req.SetSource(ph.remote.String())
	req.SetTransport("UDP")
	res := p.process(req, ph.flow())
	if p.cache != nil {
		p.cache.Fill(req, res, ph.flow())
		p.cache.Wait()
	}
	p.sent[key] = []byte(res.String())
	return res.String(), false
}

var anyTag = regexp.MustCompile(`(?m)^(To: .*;tag=)[0-9a-f-]{36}\r$`)

// TestSeveralRegistrations runs three phones of one user through pinhole
// with the fast path and without it, on one clock: registrations, refreshes
// interleaved (each phone's right after another's absorbed refresh, before
// any touch reaches the store), retransmissions after the other phones
// moved and after a third phone's registration replaced the entry, two phones with one q (listed by Contact), one lapsing, the cache
// forgetting everything (both phones absorbed again once each has had one
// slow-path answer), one de-registering. Every answer must equal the slow path's header for
// header (To tag aside), and the refreshes marked absorb must have been
// answered by the loop.
func TestSeveralRegistrations(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	tick := func(d time.Duration) { clock.Add(int64(d)) }
	ref, fast := newPairPath(t, now, false), newPairPath(t, now, true)
	phones := map[string]*phone{
		"a": {name: "a", q: "0.9", expires: 600, remote: netip.MustParseAddrPort("198.51.100.7:40001")},
		"b": {name: "b", q: "0.5", expires: 300, remote: netip.MustParseAddrPort("198.51.100.8:40002")},
		"c": {name: "c", q: "0.5", expires: 5, remote: netip.MustParseAddrPort("198.51.100.9:40003")},
	}
	steps := []struct {
		name    string
		phone   string
		wait    time.Duration // the clock moves this much first
		again   bool          // a retransmission of the phone's last request
		expires int           // 0: the phone's own
		absorb  bool
		flush   bool // the touch flusher runs after the step
		clear   bool // the cache forgets every entry and registration first (a reload, a restart)
	}{
		{name: "a registers", phone: "a"},
		{name: "a refreshes alone", phone: "a", wait: time.Second, absorb: true},
		{name: "b registers beside a's unflushed refresh", phone: "b", wait: 1500 * time.Millisecond},
		{name: "a refreshes beside b", phone: "a", wait: time.Second, absorb: true},
		{name: "b refreshes before a's touch is flushed", phone: "b", wait: 1200 * time.Millisecond, absorb: true},
		{name: "a refreshes before b's touch is flushed", phone: "a", wait: time.Second, absorb: true, flush: true},
		{name: "b's refresh again, a moved since", phone: "b", wait: 700 * time.Millisecond, again: true, absorb: true},
		{name: "c registers, same q as b", phone: "c", wait: time.Second},
		{name: "a's last refresh again, after c's registration replaced the entry", phone: "a", wait: 300 * time.Millisecond, again: true, absorb: true},
		{name: "b refreshes beside a and c", phone: "b", wait: 1300 * time.Millisecond, absorb: true},
		{name: "a refreshes beside b and c", phone: "a", wait: 900 * time.Millisecond, absorb: true},
		{name: "c has lapsed: a's refresh goes to the slow path", phone: "a", wait: 4 * time.Second, absorb: false, flush: true},
		{name: "b refreshes once c is gone", phone: "b", wait: time.Second, absorb: true},
		{name: "the cache forgets everything: a's refresh to the slow path", phone: "a", wait: time.Second, clear: true},
		{name: "b's refresh to the slow path finds a's registration", phone: "b", wait: time.Second},
		{name: "a refreshes beside b again", phone: "a", wait: time.Second, absorb: true},
		{name: "b refreshes beside a again", phone: "b", absorb: true},
		{name: "b de-registers", phone: "b", wait: time.Second, expires: -1},
		{name: "a refreshes alone again", phone: "a", wait: time.Second},
		{name: "a's next refresh is absorbed", phone: "a", wait: time.Second, absorb: true, flush: true},
	}
	for _, st := range steps {
		tick(st.wait)
		if st.clear {
			fast.cache.Flush()
			fast.cache.Clear()
			fast.cache.Wait()
		}
		ph := phones[st.phone]
		var data []byte
		if st.again {
			data = ph.last
		} else {
			ph.cseq++
			exp := ph.expires
			if st.expires < 0 {
				exp = 0
			}
			data = ph.register(exp)
			ph.last = data
		}
		at := now()
		want, _ := ref.send(t, ph, data, at)
		got, absorbed := fast.send(t, ph, data, at)
		if !strings.HasPrefix(want, "SIP/2.0 200 OK\r\n") {
			t.Fatalf("%s: the slow path answered\n%s", st.name, want)
		}
		norm := func(s string) []string { return strings.Split(anyTag.ReplaceAllString(s, "${1}TAG\r"), "\r\n") }
		if diff := cmp.Diff(norm(want), norm(got)); diff != "" {
			t.Fatalf("%s: answers differ (-slow path +fast path):\n%s", st.name, diff)
		}
		if absorbed != st.absorb {
			var m strings.Builder
			fast.cache.WriteMetrics(&m)
			t.Fatalf("%s: absorbed %v, want %v; counters:\n%s", st.name, absorbed, st.absorb, nonZeroLines(m.String()))
		}
		if st.flush {
			fast.cache.Flush()
		}
	}
	// Nothing is lost: after the last flush the fast path's store holds
	// what the slow path's does (the updated second aside: the flusher's).
	fast.cache.Flush()
	summary := func(bs []location.Binding) []string {
		var out []string
		for _, b := range bs {
			out = append(out, fmt.Sprintf("%s %s CSeq %d expires %s flow %v", b.Contact, b.CallID, b.CSeq, b.Expires.UTC().Format(time.TimeOnly), b.Flow.Remote))
		}
		return out
	}
	if diff := cmp.Diff(summary(ref.store.Lookup("pair@example.com")), summary(fast.store.Lookup("pair@example.com"))); diff != "" {
		t.Errorf("stores differ (-slow path +fast path):\n%s", diff)
	}
}

// nonZeroLines keeps the metric lines whose value is not 0.
func nonZeroLines(text string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if l != "" && !strings.HasSuffix(l, " 0") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// BenchmarkAbsorbTwoPhones is BenchmarkAbsorb for an AOR with two
// registrations: phone a's refreshes absorbed, each 200 listing phone b's
// binding with what is left of it.
func BenchmarkAbsorbTwoPhones(b *testing.B) {
	start := time.Now()
	now := func() time.Time { return start }
	fast := newPairPath(b, now, true)
	pa := &phone{name: "a", q: "0.9", expires: 600, remote: netip.MustParseAddrPort("198.51.100.7:40001")}
	pb := &phone{name: "b", q: "0.5", expires: 300, remote: netip.MustParseAddrPort("198.51.100.8:40002")}
	for _, p := range []*phone{pa, pb} {
		p.cseq = 1
		if r, _ := fast.send(b, p, p.register(p.expires), start); !strings.HasPrefix(r, "SIP/2.0 200 OK\r\n") {
			b.Fatalf("registration of %s: %s", p.name, r)
		}
	}
	// Fixed-width CSeq and branch, counted up in place.
	pa.cseq = 1000000000
	data := pa.register(pa.expires)
	at := strings.Index(string(data), "CSeq: ") + len("CSeq: ")
	br := strings.Index(string(data), "z9hG4bK-a") + len("z9hG4bK-a")
	l := fast.loop
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := uint64(1000000001 + i)
		for k := 9; k >= 0; k-- {
			data[at+k] = byte('0' + n%10)
			data[br+k] = data[at+k]
			n /= 10
		}
		reply, d := l.Absorb(data, lim, local, pa.remote, start)
		if d != Absorbed {
			b.Fatalf("refresh %d declined: %v", i, d)
		}
		if i == 0 && !strings.Contains(string(reply), "\r\nContact: <sip:b@198.51.100.8:40002>;expires=300;q=0.5\r\n") {
			b.Fatalf("the 200 does not list phone b:\n%s", reply)
		}
		if i%10000 == 9999 {
			fast.cache.Flush()
		}
	}
}

// FuzzSeveralRegistrations registers two phones of one user with fuzzed
// Contacts (URI, q and other parameters) and expiries, on one clock, then
// refreshes one, the other right after it, and the first again
// (retransmitted), through the fast path and through the slow path alone:
// every answer (the loop's, or the slow path's when the loop declined)
// must equal the slow path's alone header for header. It finds Contact forms the entry cuts into slots differently
// from how the registrar prints them.
func FuzzSeveralRegistrations(f *testing.F) {
	f.Add("<sip:a@198.51.100.7:40001>;q=0.9", "<sip:b@198.51.100.8:40002>;q=0.5", uint16(600), uint16(300), uint8(1))
	f.Add("<sip:a@198.51.100.7:40001>", "<sip:b@198.51.100.8:40002>", uint16(60), uint16(60), uint8(0))
	f.Add("<sip:x@198.51.100.7:40001;transport=udp>;q=0.5", "<sip:x@198.51.100.8>;q=0.5;+sip.instance=\"<urn:uuid:2>\";reg-id=1", uint16(120), uint16(3600), uint8(30))
	f.Add("<sips:a@[2001:db8::1]:5061;ob>;expires=30", "<sip:b@host.example;lr>;q=1.0", uint16(2), uint16(5), uint8(3))
	f.Fuzz(func(t *testing.T, ca, cb string, ea, eb uint16, dt uint8) {
		twoPhones(t, ca, cb, ea, eb, dt, func(now func() time.Time, fast bool) *pairPath { return newPairPath(t, now, fast) })
	})
}

// twoPhones is the body of FuzzSeveralRegistrations and
// FuzzMidRegistrarSeveralRegistrations: two phones with Contacts ca and cb
// and expiries ea and eb register, dt seconds later refresh in turn, and
// a's refresh is retransmitted, through a pinhole that newPath makes with
// the fast path and one without; every answer must be the same.
func twoPhones(t *testing.T, ca, cb string, ea, eb uint16, dt uint8, newPath func(now func() time.Time, fast bool) *pairPath) {
	if strings.ContainsAny(ca+cb, "\r\n") {
		return
	}
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	ref, fast := newPath(now, false), newPath(now, true)
	type dev struct {
		p       *phone
		contact string
		exp     uint16
	}
	ds := []dev{
		{&phone{name: "a", remote: netip.MustParseAddrPort("198.51.100.7:40001")}, ca, ea},
		{&phone{name: "b", remote: netip.MustParseAddrPort("198.51.100.8:40002")}, cb, eb},
	}
	msg := func(d dev, cseq int) []byte {
		return []byte("REGISTER sip:example.com SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + d.p.remote.String() + ";branch=z9hG4bK-" + d.p.name + fmt.Sprint(cseq) + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:pair@example.com>;tag=" + d.p.name + "\r\nTo: <sip:pair@example.com>\r\n" +
			"Call-ID: " + d.p.name + "@pair\r\nCSeq: " + fmt.Sprint(cseq) + " REGISTER\r\n" +
			"Contact: " + d.contact + "\r\nExpires: " + fmt.Sprint(d.exp) + "\r\nContent-Length: 0\r\n\r\n")
	}
	if _, err := sip.NewParser().ParseSIP(msg(ds[0], 1)); err != nil {
		return
	}
	if _, err := sip.NewParser().ParseSIP(msg(ds[1], 1)); err != nil {
		return
	}
	norm := func(s string) string { return anyTag.ReplaceAllString(s, "${1}TAG\r") }
	step := func(name string, d dev, data []byte, again bool) bool {
		at := now()
		want, _ := ref.send(t, d.p, data, at)
		got, absorbed := fast.send(t, d.p, data, at)
		if !absorbed && again {
			// The loop answered the original: sipgo never saw it.
			return true
		}
		if diff := cmp.Diff(strings.Split(norm(want), "\r\n"), strings.Split(norm(got), "\r\n")); diff != "" {
			t.Fatalf("%s: answers differ (-slow path +fast path):\n%s", name, diff)
		}
		return strings.HasPrefix(want, "SIP/2.0 200 OK\r\n")
	}
	for _, d := range ds {
		if !step(d.p.name+" registers", d, msg(d, 1), false) {
			return
		}
	}
	clock.Add(int64(dt) * int64(time.Second))
	refreshA := msg(ds[0], 2)
	if !step("a refreshes", ds[0], refreshA, false) || !step("b refreshes", ds[1], msg(ds[1], 2), false) {
		return
	}
	clock.Add(int64(time.Second))
	step("a's refresh again", ds[0], refreshA, true)
}

// TestSeveralRegistrationsTwoContacts: one phone registers two Contacts
// in one REGISTER beside a phone with one. The 200 interleaves their three
// bindings by q and Contact; every answer must still equal the slow
// path's, and both phones' refreshes be absorbed.
func TestSeveralRegistrationsTwoContacts(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	ref, fast := newPairPath(t, now, false), newPairPath(t, now, true)
	pa := &phone{name: "a", remote: netip.MustParseAddrPort("198.51.100.7:40001")}
	pb := &phone{name: "b", remote: netip.MustParseAddrPort("198.51.100.8:40002")}
	msg := func(p *phone, contacts string) []byte {
		p.cseq++
		return []byte("REGISTER sip:example.com SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + p.remote.String() + ";branch=z9hG4bK-" + p.name + fmt.Sprint(p.cseq) + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:pair@example.com>;tag=" + p.name + "\r\nTo: <sip:pair@example.com>\r\n" +
			"Call-ID: " + p.name + "@pair\r\nCSeq: " + fmt.Sprint(p.cseq) + " REGISTER\r\n" +
			contacts + "Expires: 600\r\nContent-Length: 0\r\n\r\n")
	}
	twoA := "Contact: <sip:a1@198.51.100.7:40001>;q=0.5\r\nContact: <sip:a2@198.51.100.7:40001>;q=0.9\r\n"
	oneB := "Contact: <sip:a15@198.51.100.8:40002>;q=0.5\r\n" // between a1 and a2 by Contact, same q as a1
	steps := []struct {
		name   string
		p      *phone
		c      string
		absorb bool
	}{
		{"a registers two Contacts", pa, twoA, false},
		{"b registers one", pb, oneB, false},
		{"a refreshes both", pa, twoA, true},
		{"b refreshes right after", pb, oneB, true},
		{"a again", pa, twoA, true},
	}
	for _, st := range steps {
		clock.Add(int64(time.Second))
		data := msg(st.p, st.c)
		at := now()
		want, _ := ref.send(t, st.p, data, at)
		got, absorbed := fast.send(t, st.p, data, at)
		if strings.Count(want, "\r\nContact: ") != 3 && st.p == pb {
			t.Fatalf("%s: the slow path's 200 lists not three bindings:\n%s", st.name, want)
		}
		norm := func(s string) []string { return strings.Split(anyTag.ReplaceAllString(s, "${1}TAG\r"), "\r\n") }
		if diff := cmp.Diff(norm(want), norm(got)); diff != "" {
			t.Fatalf("%s: answers differ (-slow path +fast path):\n%s", st.name, diff)
		}
		if absorbed != st.absorb {
			var m strings.Builder
			fast.cache.WriteMetrics(&m)
			t.Fatalf("%s: absorbed %v, want %v; counters:\n%s", st.name, absorbed, st.absorb, nonZeroLines(m.String()))
		}
	}
}
