package resolve

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/go-cmp/cmp"
)

func newResolver(t *testing.T, z *zone, mod func(*Config)) *Resolver {
	t.Helper()
	cfg := Config{Servers: []string{z.addr}, Timeout: 300 * time.Millisecond, MinTTL: 200 * time.Millisecond, MaxTTL: time.Hour, NegativeTTL: 200 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func lookup(t *testing.T, r *Resolver, uri string) ([]Target, error) {
	t.Helper()
	d, err := ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	a, err := r.Lookup(ctx, d)
	if a == nil {
		return nil, err
	}
	return a.Targets, err
}

func tgt(addr, tr string, prio, weight uint16) Target {
	return Target{Addr: netip.MustParseAddrPort(addr), Transport: tr, Priority: prio, Weight: weight}
}

// TestRFC3263 walks the steps of RFC 3263 §4 against a name server: which
// records are asked for which form of destination, and what they give.
func TestRFC3263(t *testing.T) {
	z := newZone(t)
	// farm.test: NAPTR to TCP SRV (UDP's NAPTR has a worse order).
	z.set("farm.test", "NAPTR",
		`farm.test. 60 IN NAPTR 20 10 "s" "SIP+D2U" "" _sip._udp.farm.test.`,
		`farm.test. 60 IN NAPTR 10 10 "s" "SIP+D2T" "" _sip._tcp.farm.test.`,
		`farm.test. 60 IN NAPTR 5 10 "s" "SIPS+D2T" "" _sips._tcp.farm.test.`)
	z.set("_sip._tcp.farm.test", "SRV",
		`_sip._tcp.farm.test. 60 IN SRV 0 90 5070 n1.farm.test.`,
		`_sip._tcp.farm.test. 60 IN SRV 0 10 5080 n2.farm.test.`,
		`_sip._tcp.farm.test. 60 IN SRV 1 0 5090 spare.farm.test.`)
	z.set("_sip._udp.farm.test", "SRV", `_sip._udp.farm.test. 60 IN SRV 0 1 5060 n1.farm.test.`)
	z.set("n1.farm.test", "A", `n1.farm.test. 60 IN A 10.0.0.1`)
	z.set("n2.farm.test", "A", `n2.farm.test. 60 IN A 10.0.0.2`)
	z.set("spare.farm.test", "A", `spare.farm.test. 60 IN A 10.0.0.3`)
	// srv.test: no NAPTR, SRV for UDP.
	z.set("srv.test", "A", `srv.test. 60 IN A 10.0.1.9`)
	z.set("_sip._udp.srv.test", "SRV", `_sip._udp.srv.test. 60 IN SRV 0 1 5062 n1.farm.test.`)
	// plain.test: only an A record.
	z.set("plain.test", "A", `plain.test. 60 IN A 10.0.2.1`, `plain.test. 60 IN A 10.0.2.2`)
	r := newResolver(t, z, nil)

	tests := []struct {
		uri  string
		want []Target
	}{
		{"sip:farm.test", []Target{tgt("10.0.0.1:5070", TCP, 0, 90), tgt("10.0.0.2:5080", TCP, 0, 10), tgt("10.0.0.3:5090", TCP, 1, 0)}},
		{"sip:farm.test;transport=udp", []Target{tgt("10.0.0.1:5060", UDP, 0, 1)}},
		{"sip:n2.farm.test:5099", []Target{tgt("10.0.0.2:5099", UDP, 0, 1)}},
		{"sip:n2.farm.test:5099;transport=tcp", []Target{tgt("10.0.0.2:5099", TCP, 0, 1)}},
		{"sip:srv.test", []Target{tgt("10.0.0.1:5062", UDP, 0, 1)}},
		{"sip:plain.test", []Target{tgt("10.0.2.1:5060", UDP, 0, 1), tgt("10.0.2.2:5060", UDP, 0, 1)}},
		{"sip:10.9.9.9", []Target{tgt("10.9.9.9:5060", UDP, 0, 1)}},
		{"sip:[2001:db8::1]:5070;transport=tcp", []Target{tgt("[2001:db8::1]:5070", TCP, 0, 1)}},
	}
	for _, tc := range tests {
		got, err := lookup(t, r, tc.uri)
		if err != nil {
			t.Errorf("%s: %v", tc.uri, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.uri, diff)
		}
	}
	// A port given: only A is asked (§4.2), never NAPTR or SRV.
	for _, q := range z.questions() {
		if q == "n2.farm.test. NAPTR" || q == "_sip._udp.n2.farm.test. SRV" {
			t.Errorf("asked %s for a destination with a port", q)
		}
	}
}

func TestNoSuchName(t *testing.T) {
	z := newZone(t)
	r := newResolver(t, z, nil)
	if _, err := lookup(t, r, "sip:gone.test"); !errors.Is(err, ErrNoTargets) {
		t.Fatalf("lookup of a missing name: %v, want ErrNoTargets", err)
	}
}

// TestRefreshFollowsDNS: a changed SRV set is seen by Cached without any
// caller waiting, with a new generation; an unchanged one keeps it.
func TestRefreshFollowsDNS(t *testing.T) {
	z := newZone(t)
	z.set("_sip._udp.f.test", "SRV", `_sip._udp.f.test. 1 IN SRV 0 50 5060 a.f.test.`, `_sip._udp.f.test. 1 IN SRV 0 50 5060 b.f.test.`)
	z.set("a.f.test", "A", `a.f.test. 1 IN A 10.1.0.1`)
	z.set("b.f.test", "A", `b.f.test. 1 IN A 10.1.0.2`)
	r := newResolver(t, z, nil)
	d, _ := ParseURI("sip:f.test;transport=udp")
	first, err := r.Lookup(context.Background(), d)
	if err != nil || len(first.Targets) != 2 {
		t.Fatalf("first lookup: %v %v", first, err)
	}
	z.set("_sip._udp.f.test", "SRV", `_sip._udp.f.test. 1 IN SRV 0 50 5060 a.f.test.`)
	deadline := time.Now().Add(3 * time.Second)
	for {
		start := time.Now()
		a := r.Cached(d)
		if took := time.Since(start); took > 50*time.Millisecond {
			t.Errorf("Cached took %s: it must not wait for DNS", took)
		}
		if a.Gen != first.Gen {
			if want := []Target{tgt("10.1.0.1:5060", UDP, 0, 50)}; !cmp.Equal(want, a.Targets, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })) {
				t.Fatalf("after the change: %v, want %v", a.Targets, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the removed target is still in the answer after 3 s with a TTL of 1 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStaleWhileError: when the server fails, the last good answer stays
// in use, and each use past its TTL is counted.
func TestStaleWhileError(t *testing.T) {
	z := newZone(t)
	z.set("s.test", "A", `s.test. 1 IN A 10.2.0.1`)
	r := newResolver(t, z, nil)
	if _, err := lookup(t, r, "sip:s.test:5060"); err != nil {
		t.Fatal(err)
	}
	staleBefore := mStale.Get()
	failedBefore := mRefreshFailed.Get()
	z.fail.Store(true)
	d, _ := ParseURI("sip:s.test:5060")
	time.Sleep(1500 * time.Millisecond)
	for range 10 {
		a := r.Cached(d)
		if a == nil || len(a.Targets) != 1 || a.Targets[0].Addr.String() != "10.2.0.1:5060" {
			t.Fatalf("while the server fails: %v, want the last good answer", a)
		}
	}
	if got := mStale.Get() - staleBefore; got != 10 {
		t.Errorf("stale answers counted: %d, want 10", got)
	}
	if mRefreshFailed.Get() == failedBefore {
		t.Error("no failed refresh counted")
	}
	if r.staleEntries() != 1 {
		t.Errorf("stale entries: %d, want 1", r.staleEntries())
	}
	z.fail.Store(false)
	time.Sleep(1500 * time.Millisecond) // back-off of 1 s, then 2 s at most
	before := mStale.Get()
	r.Cached(d)
	if mStale.Get() != before || r.staleEntries() != 0 {
		t.Error("still stale after the server answers again")
	}
}

func TestMetricsNames(t *testing.T) {
	// The gauges of a resolver are registered, and gone after Close.
	z := newZone(t)
	r := newResolver(t, z, nil)
	var b = new(testWriter)
	metrics.WritePrometheus(b, false)
	if !b.contains("pinhole_dns_cache_entries") {
		t.Error("pinhole_dns_cache_entries not exposed")
	}
	r.Close()
	b = new(testWriter)
	metrics.WritePrometheus(b, false)
	if b.contains("pinhole_dns_cache_entries") {
		t.Error("pinhole_dns_cache_entries still exposed after Close")
	}
}

// TestCacheFull: past MaxEntries a new name is refused by the cache, not
// a crash, and counted; the names already cached keep working.
func TestCacheFull(t *testing.T) {
	z := newZone(t)
	z.set("a.test", "A", `a.test. 60 IN A 10.3.0.1`)
	z.set("b.test", "A", `b.test. 60 IN A 10.3.0.2`)
	r := newResolver(t, z, func(c *Config) { c.MaxEntries = 1 })
	if _, err := lookup(t, r, "sip:a.test:5060"); err != nil {
		t.Fatal(err)
	}
	before := mFull.Get()
	b, _ := ParseURI("sip:b.test:5060")
	if a := r.Cached(b); a != nil {
		t.Errorf("Cached of a name past the limit: %v, want nil", a)
	}
	if got, err := lookup(t, r, "sip:b.test:5060"); err != nil || len(got) != 1 {
		t.Errorf("Lookup past the limit: %v %v, want the answer for its caller", got, err)
	}
	if mFull.Get() == before {
		t.Error("a name refused by a full cache was not counted")
	}
	a, _ := ParseURI("sip:a.test:5060")
	if r.Cached(a) == nil {
		t.Error("the cached name is lost")
	}
}

// TestFirstLookupFails: a name whose first resolution fails is retried in
// the background, and its later answer is used.
func TestFirstLookupFails(t *testing.T) {
	z := newZone(t)
	z.set("late.test", "A", `late.test. 60 IN A 10.5.0.1`)
	z.fail.Store(true)
	r := newResolver(t, z, nil)
	if _, err := lookup(t, r, "sip:late.test:5060"); err == nil {
		t.Fatal("Lookup succeeded while the server fails")
	}
	z.fail.Store(false)
	d, _ := ParseURI("sip:late.test:5060")
	deadline := time.Now().Add(4 * time.Second)
	for r.Cached(d) == nil {
		if time.Now().After(deadline) {
			t.Fatal("no answer 4 s after the server recovered (back-off starts at 1 s)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, err := lookup(t, r, "sip:late.test:5060"); err != nil || len(got) != 1 {
		t.Errorf("Lookup after recovery: %v %v", got, err)
	}
}

func TestPeekCountsNothing(t *testing.T) {
	z := newZone(t)
	z.set("p.test", "A", `p.test. 60 IN A 10.6.0.1`)
	r := newResolver(t, z, nil)
	d, _ := ParseURI("sip:p.test:5060")
	if r.Peek(d) != nil {
		t.Fatal("Peek answered a name never looked up")
	}
	if r.Entries() != 0 {
		t.Fatal("Peek created an entry")
	}
	if _, err := lookup(t, r, "sip:p.test:5060"); err != nil {
		t.Fatal(err)
	}
	hits, misses := mHits.Get(), mMisses.Get()
	if a := r.Peek(d); a == nil || len(a.Targets) != 1 {
		t.Fatalf("Peek after Lookup: %v", a)
	}
	if mHits.Get() != hits || mMisses.Get() != misses {
		t.Error("Peek counted a cache read")
	}
}
