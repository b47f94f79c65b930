package absorb

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/midreg"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

// mainRegistrar is a fake upstream of the mid-registrar: it accepts
// every REGISTER with what was asked and logs the device REGISTERs that
// reached it (their Call-ID and CSeq; pinhole's own de-registrations of
// lapsed bindings carry a fresh Call-ID and are left out).
type mainRegistrar struct {
	devices map[string]bool // the phones' Call-IDs
	mu      sync.Mutex
	got     []string
	// meanwhile, when set, runs once while the next REGISTER is here:
	// what pinhole does while a relay is on its way.
	meanwhile func()
}

func (u *mainRegistrar) Send(_ context.Context, req *sip.Request) (*sip.Response, error) {
	u.mu.Lock()
	if u.devices[req.CallID().Value()] {
		u.got = append(u.got, req.CallID().Value()+" "+req.CSeq().Value())
	}
	meanwhile := u.meanwhile
	u.meanwhile = nil
	u.mu.Unlock()
	if meanwhile != nil {
		meanwhile()
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	for _, h := range req.GetHeaders("Contact") {
		res.AppendHeader(h.(*sip.ContactHeader).Clone())
	}
	return res, nil
}

func (u *mainRegistrar) log() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.got...)
}

// newMidPath is newPairPath with the mid-registrar (mode, outgoing
// expiry 60 s, renewal margin 5 s) in front of up as the slow path, wired
// to the fast path as slowpath.Server wires them: Settle before it reads
// the store, Fill after each 200 it sent.
func newMidPath(tb testing.TB, clock func() time.Time, mode midreg.Mode, up *mainRegistrar, fast bool) *pairPath {
	tb.Helper()
	const margin = 5
	p := &pairPath{sent: map[string][]byte{}}
	cfg := midreg.Config{
		Upstreams:       []midreg.Upstream{{Addr: netip.MustParseAddrPort("10.0.0.3:5060"), Transport: "UDP"}},
		Mode:            mode,
		OutgoingExpires: 60,
		RenewalMargin:   margin,
		Timeout:         time.Second,
		RetryAfter:      30,
		Listeners:       []midreg.Listener{{Transport: "UDP", Local: local, Host: "edge.example.net", Port: 5060}},
		Registrar: registrar.Config{
			Domains: []string{"example.com"}, MinExpires: 2, MaxExpires: 3600, DefaultExpires: 600, MaxContacts: 5, Now: clock,
		},
	}
	var cache atomic.Pointer[Cache]
	if fast {
		cfg.Registrar.Settle = func(aor string) { cache.Load().Settle(aor) }
	}
	m, err := midreg.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	store, err := location.Open(location.Options{Now: clock, OnExpire: m.OnExpire, OnChange: func(aor string) {
		if c := cache.Load(); c != nil {
			c.Invalidate(aor)
		}
	}})
	if err != nil {
		tb.Fatal(err)
	}
	m.Start(store, up)
	tb.Cleanup(func() { m.Close(); store.Close() })
	p.store = store
	p.process = func(req *sip.Request, f location.Flow) *sip.Response {
		return m.Process(context.Background(), req, f)
	}
	if fast {
		c, err := New(Options{Store: store, MaxEntries: 1000, Now: clock, Mode: MidRegistrar, RenewalMargin: margin * time.Second})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(c.Close)
		cache.Store(c)
		p.cache, p.loop = c, c.NewLoop()
	}
	return p
}

// outcome is how pinhole answers a REGISTER of the scenario.
type outcome uint8

const (
	absorbed outcome = iota // by the loop (and, fast path off, by the mid-registrar alone)
	alone                   // by the mid-registrar alone: nothing upstream, the loop declined
	relayed                 // after the main registrar's 200
)

// TestMidRegistrarSeveralRegistrations runs two, then three, then two
// phones of one user through the mid-registrar with the fast path and
// without it, on one clock, in modes contact and aor: registrations,
// refreshes interleaved before any touch is flushed, retransmissions after
// the other phones moved and after a new phone's relay replaced the entry,
// a phone lapsing, renewals upstream when a phone's upstream registration
// falls due (in mode aor one renewal serves every phone), and a
// de-registration while the other phone refreshes (its 200 lists that
// refresh, absorbed by the loop while the relay was upstream). Every answer must be equal header for header (To tag
// aside), the loop must absorb exactly the refreshes marked absorbed (the
// ones the mid-registrar answers without its upstream), and the main
// registrar must see the same REGISTERs from both pinholes.
func TestMidRegistrarSeveralRegistrations(t *testing.T) {
	// Outgoing expiry 60 s, margin 5 s: a refresh is relayed once
	// now + its expiry + 5 passes the upstream registration's end, that
	// is more than 35 s after its last relay for a (expiry 20 s), 25 s for
	// b (30 s); c (4 s) lapses. Times are chosen a second or more away
	// from those boundaries.
	steps := []struct {
		name      string
		phone     string
		wait      time.Duration // the clock moves this much first
		again     bool          // a retransmission of the phone's last request
		meanwhile string        // this phone refreshes while the step's REGISTER is upstream (absorbed)
		dereg     bool          // Expires: 0
		contact   outcome       // mode contact
		aor       outcome       // mode aor
		flushNext bool          // the touch flusher runs after the step
	}{
		{name: "a registers", phone: "a", contact: relayed, aor: relayed},
		{name: "a refreshes alone", phone: "a", wait: time.Second, contact: absorbed, aor: absorbed},
		{name: "b registers beside a's unflushed refresh", phone: "b", wait: 1500 * time.Millisecond, contact: relayed, aor: relayed},
		{name: "a refreshes beside b", phone: "a", wait: time.Second, contact: absorbed, aor: absorbed},
		{name: "b refreshes before a's touch is flushed", phone: "b", wait: 1200 * time.Millisecond, contact: absorbed, aor: absorbed},
		{name: "a refreshes before b's touch is flushed", phone: "a", wait: time.Second, contact: absorbed, aor: absorbed, flushNext: true},
		{name: "b's refresh again, a moved since", phone: "b", wait: 700 * time.Millisecond, again: true, contact: absorbed, aor: absorbed},
		{name: "c registers, same q as b", phone: "c", wait: time.Second, contact: relayed, aor: relayed},
		{name: "a's refresh again, after c's relay replaced the entry", phone: "a", wait: 300 * time.Millisecond, again: true, contact: absorbed, aor: absorbed},
		{name: "b refreshes beside a and c", phone: "b", wait: 1300 * time.Millisecond, contact: absorbed, aor: absorbed},
		{name: "a refreshes beside b and c", phone: "a", wait: 900 * time.Millisecond, contact: absorbed, aor: absorbed},
		{name: "c has lapsed: a's refresh goes to the slow path", phone: "a", wait: 4 * time.Second, contact: alone, aor: alone, flushNext: true},
		{name: "b refreshes once c is gone", phone: "b", wait: time.Second, contact: absorbed, aor: absorbed},
		{name: "a refreshes 24 s in", phone: "a", wait: 10 * time.Second, contact: absorbed, aor: absorbed},
		{name: "b 27 s after its relay (contact: due), 22 s after c's (aor)", phone: "b", wait: 5 * time.Second, contact: relayed, aor: absorbed},
		{name: "a beside b's renewal", phone: "a", wait: time.Second, contact: absorbed, aor: absorbed},
		{name: "b after its renewal (contact), 24 s after c's relay (aor)", phone: "b", wait: time.Second, contact: absorbed, aor: absorbed},
		{name: "a 37 s after its relay (contact: due), 30 s after c's (aor)", phone: "a", wait: 6 * time.Second, contact: relayed, aor: absorbed},
		{name: "b 31 s after c's relay (aor: due)", phone: "b", wait: time.Second, contact: absorbed, aor: relayed},
		{name: "a beside b's renewal of the AOR (aor)", phone: "a", wait: time.Second, contact: absorbed, aor: absorbed},
		{name: "b de-registers while a refreshes", phone: "b", wait: time.Second, dereg: true, meanwhile: "a", contact: relayed, aor: relayed},
		{name: "a refreshes alone again", phone: "a", wait: time.Second, contact: alone, aor: alone},
		{name: "a's next refresh is absorbed", phone: "a", wait: time.Second, contact: absorbed, aor: absorbed, flushNext: true},
	}
	for _, mode := range []midreg.Mode{midreg.ModeContact, midreg.ModeAOR} {
		t.Run(mode.String(), func(t *testing.T) {
			var clock atomic.Int64
			clock.Store(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC).UnixNano())
			now := func() time.Time { return time.Unix(0, clock.Load()) }
			phones := map[string]*phone{
				"a": {name: "a", q: "0.9", expires: 20, remote: netip.MustParseAddrPort("198.51.100.7:40001")},
				"b": {name: "b", q: "0.5", expires: 30, remote: netip.MustParseAddrPort("198.51.100.8:40002")},
				"c": {name: "c", q: "0.5", expires: 4, remote: netip.MustParseAddrPort("198.51.100.9:40003")},
			}
			devices := map[string]bool{"a@pair": true, "b@pair": true, "c@pair": true}
			refUp, fastUp := &mainRegistrar{devices: devices}, &mainRegistrar{devices: devices}
			ref, fast := newMidPath(t, now, mode, refUp, false), newMidPath(t, now, mode, fastUp, true)
			norm := func(s string) []string { return strings.Split(anyTag.ReplaceAllString(s, "${1}TAG\r"), "\r\n") }
			for _, st := range steps {
				want := st.contact
				if mode == midreg.ModeAOR {
					want = st.aor
				}
				if st.wait > 2*time.Second {
					// The flusher (every 100 ms) has run meanwhile; the
					// steps a second apart play what it has not yet.
					fast.cache.Flush()
				}
				clock.Add(int64(st.wait))
				ph := phones[st.phone]
				var data []byte
				if st.again {
					data = ph.last
				} else {
					ph.cseq++
					exp := ph.expires
					if st.dereg {
						exp = 0
					}
					data = ph.register(exp)
					ph.last = data
				}
				at := now()
				if st.meanwhile != "" {
					// The same refresh reaches both pinholes while the
					// step's REGISTER is upstream; the loop absorbs it.
					o := phones[st.meanwhile]
					o.cseq++
					o.last = o.register(o.expires)
					var wantO string
					refUp.meanwhile = func() { wantO, _ = ref.send(t, o, o.last, at) }
					fastUp.meanwhile = func() {
						gotO, byLoop := fast.send(t, o, o.last, at)
						if !byLoop {
							t.Errorf("%s: %s's refresh meanwhile was not absorbed", st.name, o.name)
						}
						if diff := cmp.Diff(norm(wantO), norm(gotO)); diff != "" {
							t.Errorf("%s: %s's refresh meanwhile answered differently (-slow path +fast path):\n%s", st.name, o.name, diff)
						}
					}
				}
				upBefore := len(refUp.log())

				wantRes, _ := ref.send(t, ph, data, at)
				got, byLoop := fast.send(t, ph, data, at)
				if !strings.HasPrefix(wantRes, "SIP/2.0 200 OK\r\n") {
					t.Fatalf("%s: the mid-registrar answered\n%s", st.name, wantRes)
				}
				if wasRelayed := len(refUp.log()) > upBefore; wasRelayed != (want == relayed) {
					t.Fatalf("%s: relayed upstream %v, the scenario says %v", st.name, wasRelayed, want == relayed)
				}
				if diff := cmp.Diff(norm(wantRes), norm(got)); diff != "" {
					t.Fatalf("%s: answers differ (-slow path +fast path):\n%s", st.name, diff)
				}
				if byLoop != (want == absorbed) {
					var m strings.Builder
					fast.cache.WriteMetrics(&m)
					t.Fatalf("%s: absorbed %v, want %v; counters:\n%s", st.name, byLoop, want == absorbed, nonZeroLines(m.String()))
				}
				if diff := cmp.Diff(refUp.log(), fastUp.log()); diff != "" {
					t.Fatalf("%s: the main registrar saw other REGISTERs (-fast path off +on):\n%s", st.name, diff)
				}
				if st.flushNext {
					fast.cache.Flush()
				}
			}
			// Nothing is lost: after the last flush the fast path's store
			// holds what the slow path's does, upstream expiries included.
			fast.cache.Flush()
			summary := func(bs []location.Binding) []string {
				var out []string
				for _, b := range bs {
					out = append(out, fmt.Sprintf("%s %s CSeq %d expires %s upstream %s", b.Contact, b.CallID, b.CSeq,
						b.Expires.UTC().Format(time.TimeOnly), b.UpExpires.UTC().Format(time.TimeOnly)))
				}
				return out
			}
			if diff := cmp.Diff(summary(ref.store.Lookup("pair@example.com")), summary(fast.store.Lookup("pair@example.com"))); diff != "" {
				t.Errorf("stores differ (-slow path +fast path):\n%s", diff)
			}
		})
	}
}

// BenchmarkAbsorbMidRegistrarTwoPhones is BenchmarkAbsorbTwoPhones behind
// the mid-registrar (mode contact): phone a's refreshes, inside the
// throttling window, absorbed with phone b's binding listed.
func BenchmarkAbsorbMidRegistrarTwoPhones(b *testing.B) {
	start := time.Now()
	now := func() time.Time { return start }
	up := &mainRegistrar{devices: map[string]bool{}}
	fast := newMidPath(b, now, midreg.ModeContact, up, true)
	pa := &phone{name: "a", q: "0.9", expires: 20, remote: netip.MustParseAddrPort("198.51.100.7:40001")}
	pb := &phone{name: "b", q: "0.5", expires: 30, remote: netip.MustParseAddrPort("198.51.100.8:40002")}
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
		if i == 0 && !strings.Contains(string(reply), "\r\nContact: <sip:b@198.51.100.8:40002>;expires=30;q=0.5\r\n") {
			b.Fatalf("the 200 does not list phone b:\n%s", reply)
		}
		if i%10000 == 9999 {
			fast.cache.Flush()
		}
	}
}

// FuzzMidRegistrarSeveralRegistrations is FuzzSeveralRegistrations behind
// the mid-registrar (aor false: mode contact; true: mode aor): fuzzed
// Contacts and expiries (beyond 55 s every refresh is a renewal, relayed),
// every answer equal with the fast path and without, and the main
// registrar receiving the same REGISTERs from both.
func FuzzMidRegistrarSeveralRegistrations(f *testing.F) {
	f.Add("<sip:a@198.51.100.7:40001>;q=0.9", "<sip:b@198.51.100.8:40002>;q=0.5", uint16(20), uint16(30), uint8(1), false)
	f.Add("<sip:a@198.51.100.7:40001>", "<sip:b@198.51.100.8:40002>", uint16(30), uint16(30), uint8(0), true)
	f.Add("<sip:x@198.51.100.7:40001;transport=udp>;q=0.5", "<sip:x@198.51.100.8>;q=0.5;+sip.instance=\"<urn:uuid:2>\";reg-id=1", uint16(20), uint16(3600), uint8(30), false)
	f.Add("<sips:a@[2001:db8::1]:5061;ob>;expires=30", "<sip:b@host.example;lr>;q=1.0", uint16(2), uint16(5), uint8(3), true)
	f.Fuzz(func(t *testing.T, ca, cb string, ea, eb uint16, dt uint8, aor bool) {
		mode := midreg.ModeContact
		if aor {
			mode = midreg.ModeAOR
		}
		devices := map[string]bool{"a@pair": true, "b@pair": true}
		refUp, fastUp := &mainRegistrar{devices: devices}, &mainRegistrar{devices: devices}
		twoPhones(t, ca, cb, ea, eb, dt, func(now func() time.Time, fast bool) *pairPath {
			if fast {
				return newMidPath(t, now, mode, fastUp, true)
			}
			return newMidPath(t, now, mode, refUp, false)
		})
		if diff := cmp.Diff(refUp.log(), fastUp.log()); diff != "" {
			t.Fatalf("the main registrar saw other REGISTERs (-fast path off +on):\n%s", diff)
		}
	})
}
