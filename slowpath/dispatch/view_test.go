package dispatch

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/resolve"
)

// fakeDNS is a resolver cache whose answers a test sets.
type fakeDNS struct {
	mu  sync.Mutex
	ans map[resolve.Dest]*resolve.Answer
}

func (f *fakeDNS) Cached(d resolve.Dest) *resolve.Answer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ans[d]
}

func (f *fakeDNS) set(uri string, ts ...resolve.Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := resolve.ParseURI(uri)
	if err != nil {
		panic(err)
	}
	old := f.ans[d]
	g := uint64(1)
	if old != nil {
		g = old.Gen + 1
	}
	f.ans[d] = &resolve.Answer{Targets: ts, Gen: g}
}

func srv(addr string, prio, weight uint16) resolve.Target {
	return resolve.Target{Addr: netip.MustParseAddrPort(addr), Transport: "UDP", Priority: prio, Weight: weight}
}

func namedFarm(t *testing.T, dns *fakeDNS, alg Algorithm, dests ...DestinationConfig) *Dispatcher {
	t.Helper()
	d, err := New(Config{
		Sets:  []SetConfig{{Name: "fs", Algorithm: alg, Destinations: dests}},
		Rules: []Rule{{Set: "fs"}},
		Probe: ProbeConfig{Interval: time.Second, Timeout: 100 * time.Millisecond, DownAfter: 2, UpAfter: 2},
		DNS:   dns,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// TestNameFollowsDNS: a destination given by name routes over the targets
// of its answer, weighted by SRV weight, grouped by SRV priority; a new
// answer moves traffic; a target that left the answer gets no new request
// but stays known, with its health, for the dialogs it carries.
func TestNameFollowsDNS(t *testing.T) {
	dns := &fakeDNS{ans: map[resolve.Dest]*resolve.Answer{}}
	dns.set("sip:fs.test", srv("10.0.0.1:5060", 0, 90), srv("10.0.0.2:5060", 0, 10), srv("10.0.0.3:5060", 1, 50))
	d := namedFarm(t, dns, Weighted, DestinationConfig{URI: "sip:fs.test"}, DestinationConfig{URI: "sip:10.0.9.9:5060", Priority: 1})

	want := map[string]int{"sip:10.0.0.1:5060": 90, "sip:10.0.0.2:5060": 10}
	if diff := cmp.Diff(want, firsts(d, 100, plain)); diff != "" {
		t.Errorf("first choices at 90/10 (-want +got):\n%s", diff)
	}
	s := d.Set("fs")
	order := uris(d.Select(s, plain(0)))
	if len(order) != 4 || order[2] != "sip:10.0.0.3:5060" || order[3] != "sip:10.0.9.9:5060" {
		t.Errorf("failover order %v: priority 0 SRV targets, then SRV priority 1, then the configured priority 1", order)
	}

	n2 := d.NodeAt(netip.MustParseAddrPort("10.0.0.2:5060"), false)
	if err := d.SetState("fs", "sip:10.0.0.2:5060", Probing); err != nil {
		t.Fatal(err)
	}
	dns.set("sip:fs.test", srv("10.0.0.1:5060", 0, 50), srv("10.0.0.2:5060", 0, 50), srv("10.0.0.3:5060", 1, 50))
	if err := d.SetState("fs", "sip:10.0.0.2:5060", Up); err != nil {
		t.Fatal(err)
	}
	want = map[string]int{"sip:10.0.0.1:5060": 50, "sip:10.0.0.2:5060": 50}
	if diff := cmp.Diff(want, firsts(d, 100, plain)); diff != "" {
		t.Errorf("first choices after the weights changed to 50/50 (-want +got):\n%s", diff)
	}
	if d.NodeAt(netip.MustParseAddrPort("10.0.0.2:5060"), false) != n2 {
		t.Error("a target still in the answer got a new node: its health and calls would be lost")
	}

	dns.set("sip:fs.test", srv("10.0.0.1:5060", 0, 50), srv("10.0.0.3:5060", 1, 50))
	want = map[string]int{"sip:10.0.0.1:5060": 100}
	if diff := cmp.Diff(want, firsts(d, 100, plain)); diff != "" {
		t.Errorf("first choices after 10.0.0.2 left DNS (-want +got):\n%s", diff)
	}
	for _, n := range d.Select(s, plain(0)) {
		if n == n2 {
			t.Error("the drained node is still offered for failover")
		}
	}
	if !d.IsFarm(netip.MustParseAddr("10.0.0.2")) || d.NodeByID(n2.ID) != n2 {
		t.Error("the drained node is forgotten: requests of its dialogs would no longer be recognized")
	}
	for _, st := range d.Destinations() {
		if st.URI == "sip:10.0.0.2:5060" {
			t.Error("the drained node is still listed as a destination")
		}
	}

	// It comes back: the same node, usable again.
	dns.set("sip:fs.test", srv("10.0.0.1:5060", 0, 50), srv("10.0.0.2:5060", 0, 50))
	if got := firsts(d, 100, plain)["sip:10.0.0.2:5060"]; got != 50 {
		t.Errorf("after coming back 10.0.0.2 got %d of 100, want 50", got)
	}
	if d.NodeAt(netip.MustParseAddrPort("10.0.0.2:5060"), false) != n2 || !n2.Usable() {
		t.Error("a target back in DNS is not its old node, or not usable")
	}
}

// TestNameNotResolvedYet: before the resolver has an answer the name
// gives no node; the configured addresses still route.
func TestNameNotResolvedYet(t *testing.T) {
	dns := &fakeDNS{ans: map[resolve.Dest]*resolve.Answer{}}
	d := namedFarm(t, dns, RoundRobin, DestinationConfig{URI: "sip:fs.test"}, DestinationConfig{URI: "sip:10.0.9.9:5060"})
	if got := uris(d.Select(d.Set("fs"), plain(0))); !cmp.Equal(got, []string{"sip:10.0.9.9:5060"}) {
		t.Errorf("before DNS answered: %v", got)
	}
	dns.set("sip:fs.test", srv("10.0.0.1:5060", 0, 1))
	if got := len(d.Select(d.Set("fs"), plain(0))); got != 2 {
		t.Errorf("after DNS answered: %d destinations, want 2", got)
	}
	if got := (Config{Sets: []SetConfig{{Destinations: []DestinationConfig{{URI: "sip:fs.test"}, {URI: "sip:10.0.9.9"}, {URI: "sip:FS.test."}}}}}).Names(); len(got) != 1 || got[0].String() != "sip:fs.test" {
		t.Errorf("Names = %v, want [sip:fs.test] once", got)
	}
}

// BenchmarkSelectByName compares the request path's cost of a set configured by
// address with one whose nodes come from a name: the second adds one
// cache read per name.
func BenchmarkSelectByName(b *testing.B) {
	for _, named := range []bool{false, true} {
		name := "address"
		if named {
			name = "name"
		}
		b.Run(name, func(b *testing.B) {
			dns := &fakeDNS{ans: map[resolve.Dest]*resolve.Answer{}}
			dests := []DestinationConfig{{URI: "sip:10.0.0.1:5060"}, {URI: "sip:10.0.0.2:5060"}}
			if named {
				dns.set("sip:fs.test", srv("10.0.0.1:5060", 0, 50), srv("10.0.0.2:5060", 0, 50))
				dests = []DestinationConfig{{URI: "sip:fs.test"}}
			}
			d, err := New(Config{
				Sets:  []SetConfig{{Name: "fs", Algorithm: Weighted, Destinations: dests}},
				Probe: ProbeConfig{DownAfter: 1, UpAfter: 1},
				DNS:   dns,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			s, req := d.Set("fs"), plain(0)
			b.ReportAllocs()
			for b.Loop() {
				if len(d.Select(s, req)) != 2 {
					b.Fatal("want two destinations")
				}
			}
		})
	}
}
