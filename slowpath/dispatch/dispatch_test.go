package dispatch

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func farm(t *testing.T, alg Algorithm, dests ...DestinationConfig) *Dispatcher {
	t.Helper()
	if len(dests) == 0 {
		dests = []DestinationConfig{{URI: "sip:10.0.0.1:5080"}, {URI: "sip:10.0.0.2:5080"}, {URI: "sip:10.0.0.3:5080"}}
	}
	d, err := New(Config{
		Sets:  []SetConfig{{Name: "fs", Algorithm: alg, Destinations: dests}},
		Rules: []Rule{{Set: "fs"}},
		Probe: ProbeConfig{Interval: time.Second, Timeout: 100 * time.Millisecond, DownAfter: 2, UpAfter: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// firsts counts the first choice of n requests made by mk.
func firsts(d *Dispatcher, n int, mk func(i int) *Request) map[string]int {
	got := map[string]int{}
	s := d.Set("fs")
	for i := range n {
		ns := d.Select(s, mk(i))
		if len(ns) == 0 {
			got["none"]++
			continue
		}
		got[ns[0].URI]++
	}
	return got
}

func plain(int) *Request { return &Request{Method: "INVITE", User: "bob", Host: "example.com"} }

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	d := farm(t, RoundRobin)
	want := map[string]int{"sip:10.0.0.1:5080": 100, "sip:10.0.0.2:5080": 100, "sip:10.0.0.3:5080": 100}
	if diff := cmp.Diff(want, firsts(d, 300, plain)); diff != "" {
		t.Errorf("first choices (-want +got):\n%s", diff)
	}
}

func TestRoundRobinSkipsDownNode(t *testing.T) {
	d := farm(t, RoundRobin)
	if err := d.SetState("fs", "sip:10.0.0.2:5080", Disabled); err != nil {
		t.Fatal(err)
	}
	got := firsts(d, 300, plain)
	if got["sip:10.0.0.2:5080"] != 0 || got["none"] != 0 {
		t.Errorf("disabled node chosen or nothing chosen: %v", got)
	}
	// Every request still has every usable node to fail over to.
	if ns := d.Select(d.Set("fs"), plain(0)); len(ns) != 2 {
		t.Errorf("Select returned %d nodes, want the 2 usable ones", len(ns))
	}
}

func TestWeightedIsExactOverAWindow(t *testing.T) {
	d := farm(t, Weighted,
		DestinationConfig{URI: "sip:10.0.0.1", Weight: 5},
		DestinationConfig{URI: "sip:10.0.0.2", Weight: 3},
		DestinationConfig{URI: "sip:10.0.0.3", Weight: 2})
	want := map[string]int{"sip:10.0.0.1:5060": 50, "sip:10.0.0.2:5060": 30, "sip:10.0.0.3:5060": 20}
	if diff := cmp.Diff(want, firsts(d, 100, plain)); diff != "" {
		t.Errorf("first choices (-want +got):\n%s", diff)
	}
}

func TestHashesAreStableAndSpread(t *testing.T) {
	tests := []struct {
		alg Algorithm
		req func(i int) *Request
	}{
		{HashUser, func(i int) *Request { return &Request{User: fmt.Sprintf("conf-%d", i%50), Host: "a.example"} }},
		{HashDomain, func(i int) *Request { return &Request{User: "x", ToHost: fmt.Sprintf("tenant%d.example", i%50)} }},
		{HashCallID, func(i int) *Request { return &Request{CallID: fmt.Sprintf("%d@host", i%50)} }},
	}
	for _, tt := range tests {
		t.Run(tt.alg.String(), func(t *testing.T) {
			d := farm(t, tt.alg)
			s := d.Set("fs")
			first := map[int]string{}
			for i := range 500 {
				n := d.Select(s, tt.req(i))[0].URI
				if prev, ok := first[i%50]; ok && prev != n {
					t.Fatalf("key %d went to %s, then %s", i%50, prev, n)
				}
				first[i%50] = n
			}
			spread := map[string]int{}
			for _, n := range first {
				spread[n]++
			}
			// 50 keys over 3 nodes: each gets some (fnv spreads well).
			if len(spread) != 3 {
				t.Errorf("50 keys reached %d nodes: %v", len(spread), spread)
			}
			// Taking another node out moves no key that was not on it.
			var victim string
			for n := range spread {
				victim = n
				break
			}
			if err := d.SetState("fs", victim, Disabled); err != nil {
				t.Fatal(err)
			}
			for k, n := range first {
				got := d.Select(s, tt.req(k))[0].URI
				if n != victim && got != n {
					t.Errorf("key %d moved from %s to %s when %s went out", k, n, got, victim)
				}
				if got == victim {
					t.Errorf("key %d still sent to disabled %s", k, victim)
				}
			}
		})
	}
}

func TestHashDomainFallsToSpares(t *testing.T) {
	d := farm(t, HashDomain,
		DestinationConfig{URI: "sip:10.0.0.1"},
		DestinationConfig{URI: "sip:10.0.0.2"},
		DestinationConfig{URI: "sip:10.0.0.9", Priority: 1})
	s := d.Set("fs")
	req := &Request{ToHost: "tenant.example"}
	ns := d.Select(s, req)
	if len(ns) != 3 || ns[2].URI != "sip:10.0.0.9:5060" {
		t.Fatalf("order %v: want both primaries, then the spare", uris(ns))
	}
	d.SetState("fs", "sip:10.0.0.1", Disabled)
	d.SetState("fs", "sip:10.0.0.2", Disabled)
	if ns := d.Select(s, req); len(ns) != 1 || ns[0].URI != "sip:10.0.0.9:5060" {
		t.Errorf("with the primaries out got %v, want the spare", uris(ns))
	}
}

func uris(ns []*Node) []string {
	var s []string
	for _, n := range ns {
		s = append(s, n.URI)
	}
	return s
}

func TestLeastCalls(t *testing.T) {
	d := farm(t, LeastCalls)
	s := d.Set("fs")
	n1, n2 := s.Nodes[0], s.Nodes[1]
	for i := range 3 {
		d.CallStarted(n1, fmt.Sprint("a", i))
	}
	d.CallStarted(n2, "b0")
	d.CallStarted(n2, "b0") // a 2xx retransmission is not a second call
	got := firsts(d, 30, plain)
	if diff := cmp.Diff(map[string]int{"sip:10.0.0.3:5080": 30}, got); diff != "" {
		t.Errorf("with node 3 idle (-want +got):\n%s", diff)
	}
	d.CallStarted(s.Nodes[2], "c0")
	d.CallEnded("a0")
	d.CallEnded("a1")
	d.CallEnded("a2")
	d.CallEnded("nope")
	if got := d.Select(s, plain(0))[0]; got != n1 {
		t.Errorf("after node 1's calls ended chose %s", got.URI)
	}
	st := d.Destinations()
	if st[0].ActiveCalls != 0 || st[1].ActiveCalls != 1 || st[2].ActiveCalls != 1 {
		t.Errorf("active calls %d %d %d, want 0 1 1", st[0].ActiveCalls, st[1].ActiveCalls, st[2].ActiveCalls)
	}
}

func TestCallTTLExpires(t *testing.T) {
	d := farm(t, LeastCalls)
	now := time.Unix(1000, 0)
	d.now = func() time.Time { return now }
	n := d.Set("fs").Nodes[0]
	d.CallStarted(n, "x")
	now = now.Add(DefaultCallTTL + time.Second)
	d.Sweep()
	if c := n.calls.Load(); c != 0 {
		t.Errorf("calls = %d after the TTL, want 0", c)
	}
}

// fakePinger answers per address; absent addresses time out.
type fakePinger struct {
	codes map[netip.AddrPort]int
	n     atomic.Int32
}

func (f *fakePinger) Ping(ctx context.Context, t Target) (int, error) {
	f.n.Add(1)
	if c, ok := f.codes[t.Addr]; ok {
		return c, nil
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

func TestProbeTakesOutAndPutsBack(t *testing.T) {
	d := farm(t, RoundRobin)
	a1, a2 := netip.MustParseAddrPort("10.0.0.1:5080"), netip.MustParseAddrPort("10.0.0.2:5080")
	a3 := netip.MustParseAddrPort("10.0.0.3:5080")
	p := &fakePinger{codes: map[netip.AddrPort]int{a1: 200, a2: 404, a3: 503}}
	ctx := context.Background()
	states := func() []string {
		var s []string
		for _, st := range d.Destinations() {
			s = append(s, st.State.String())
		}
		return s
	}
	d.Probe(ctx, p)
	if diff := cmp.Diff([]string{"up", "up", "up"}, states()); diff != "" {
		t.Errorf("one failure is below down_after 2 (-want +got):\n%s", diff)
	}
	d.Probe(ctx, p)
	if diff := cmp.Diff([]string{"up", "up", "probing"}, states()); diff != "" {
		t.Errorf("after two 503s (-want +got):\n%s", diff)
	}
	delete(p.codes, a1) // times out
	p.codes[a3] = 200
	d.Probe(ctx, p)
	if diff := cmp.Diff([]string{"up", "up", "probing"}, states()); diff != "" {
		t.Errorf("one success is below up_after 2 (-want +got):\n%s", diff)
	}
	d.Probe(ctx, p)
	if diff := cmp.Diff([]string{"probing", "up", "up"}, states()); diff != "" {
		t.Errorf("after two timeouts and two successes (-want +got):\n%s", diff)
	}
	// A disabled node is not probed and stays out whatever it answers.
	d.SetState("fs", "sip:10.0.0.2:5080", Disabled)
	before := p.n.Load()
	d.Probe(ctx, p)
	if got := p.n.Load() - before; got != 2 {
		t.Errorf("probed %d nodes, want 2 (one disabled)", got)
	}
	if st := d.Destinations()[1]; st.State != Disabled || st.LastCode != 404 {
		t.Errorf("disabled node: %+v", st)
	}
}

func TestFailedCalls(t *testing.T) {
	d := farm(t, RoundRobin)
	n := d.Set("fs").Nodes[0]
	d.Failed(n, 503)
	if n.State() != Up {
		t.Fatal("503 took the node out without down_on_503")
	}
	d.cfg.Failover.DownOn503 = true
	d.Failed(n, 503)
	if n.State() != Probing {
		t.Fatal("503 with down_on_503 left the node up")
	}
	m := d.Set("fs").Nodes[1]
	d.Failed(m, 0)
	d.Answered(m)
	d.Failed(m, 408)
	if m.State() != Up {
		t.Fatal("two timeouts not in a row took the node out")
	}
	d.Failed(m, 408)
	if m.State() != Probing {
		t.Fatal("two timeouts in a row left the node up")
	}
}

func TestChallenger(t *testing.T) {
	d := farm(t, RoundRobin)
	now := time.Unix(1000, 0)
	d.now = func() time.Time { return now }
	n := d.Set("fs").Nodes[2]
	d.Challenged("cid|1.2.3.4", n)
	if got := d.Challenger("cid|1.2.3.4"); got != n {
		t.Fatalf("Challenger = %v", got)
	}
	if d.Challenger("other") != nil {
		t.Error("unknown key has a challenger")
	}
	d.SetState("fs", n.URI, Disabled)
	if d.Challenger("cid|1.2.3.4") != nil {
		t.Error("a disabled challenger is still returned")
	}
	d.SetState("fs", n.URI, Up)
	now = now.Add(DefaultChallengeTTL + time.Second)
	if d.Challenger("cid|1.2.3.4") != nil {
		t.Error("challenger outlived its TTL")
	}
}

func TestMatch(t *testing.T) {
	d, err := New(Config{
		Sets: []SetConfig{
			{Name: "conf", Algorithm: HashUser, Destinations: []DestinationConfig{{URI: "sip:10.0.0.5"}}},
			{Name: "tenants", Algorithm: HashDomain, Destinations: []DestinationConfig{{URI: "sip:10.0.0.6"}}},
			{Name: "all", Algorithm: RoundRobin, Destinations: []DestinationConfig{{URI: "sip:10.0.0.7"}}},
		},
		Rules: []Rule{
			{Set: "conf", Methods: []string{"INVITE"}, Prefix: "conf-"},
			{Set: "tenants", Domains: []string{"t1.example", "T2.example"}},
			{Set: "all", Sources: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
		},
		Probe: ProbeConfig{DownAfter: 1, UpAfter: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	src := netip.MustParseAddr("198.51.100.1")
	tests := []struct {
		req  Request
		want string
	}{
		{Request{Method: "INVITE", User: "conf-7", Host: "t1.example", Source: src}, "conf"},
		{Request{Method: "MESSAGE", User: "conf-7", Host: "t1.example", Source: src}, "tenants"},
		{Request{Method: "INVITE", User: "bob", Host: "t2.EXAMPLE", Source: src}, "tenants"},
		{Request{Method: "INVITE", User: "bob", Host: "other", Source: netip.MustParseAddr("192.0.2.9")}, "all"},
		{Request{Method: "INVITE", User: "bob", Host: "other", Source: src}, ""},
		{Request{Method: "REGISTER", User: "conf-1", Host: "t1.example", Source: src}, ""},
		{Request{Method: "INVITE", User: "conf-1", Source: src, FromFarm: true}, ""},
	}
	for _, tt := range tests {
		got := ""
		if s := d.Match(&tt.req); s != nil {
			got = s.Name
		}
		if got != tt.want {
			t.Errorf("Match(%+v) = %q, want %q", tt.req, got, tt.want)
		}
	}
	if !d.IsFarm(netip.MustParseAddr("10.0.0.6")) || d.IsFarm(src) {
		t.Error("IsFarm")
	}
	if n := d.NodeAt(netip.MustParseAddrPort("10.0.0.7:40000"), true); n == nil || n.Set != "all" {
		t.Errorf("NodeAt by address only = %v", n)
	}
	if n := d.NodeAt(netip.MustParseAddrPort("10.0.0.7:40000"), false); n != nil {
		t.Errorf("NodeAt another port = %v, want nil", n.URI)
	}
	if n := d.NodeAt(netip.MustParseAddrPort("10.0.0.7:5060"), false); n == nil {
		t.Error("NodeAt the node's own port = nil")
	}
}

func TestStartingTakesNoTurn(t *testing.T) {
	d := farm(t, RoundRobin)
	s := d.Set("fs")
	first := d.Select(s, plain(0))[0]
	if got := uris(d.Starting(s, s.Nodes[2])); !cmp.Equal(got, []string{"sip:10.0.0.3:5080", "sip:10.0.0.1:5080", "sip:10.0.0.2:5080"}) {
		t.Errorf("Starting = %v", got)
	}
	if next := d.Select(s, plain(0))[0]; next == first || next != s.Nodes[1] {
		t.Errorf("after Starting the round robin gave %s, want the second node", next.URI)
	}
}

func TestSelectMaxTries(t *testing.T) {
	d := farm(t, RoundRobin)
	d.cfg.Failover.MaxTries = 2
	if ns := d.Select(d.Set("fs"), plain(0)); len(ns) != 2 {
		t.Errorf("Select returned %d, want max_tries 2", len(ns))
	}
}

func TestSetStateErrors(t *testing.T) {
	d := farm(t, RoundRobin)
	for _, c := range []struct{ set, uri string }{{"nope", "sip:10.0.0.1:5080"}, {"fs", "sip:10.9.9.9"}} {
		if err := d.SetState(c.set, c.uri, Disabled); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetState(%s, %s) = %v, want ErrNotFound", c.set, c.uri, err)
		}
	}
	// The URI is compared in its canonical form.
	if err := d.SetState("fs", "sip:10.0.0.1:5080;transport=udp", Disabled); err != nil {
		t.Error(err)
	}
}

func TestInvalidConfigs(t *testing.T) {
	ok := SetConfig{Name: "fs", Algorithm: RoundRobin, Destinations: []DestinationConfig{{URI: "sip:10.0.0.1"}}}
	probe := ProbeConfig{Interval: time.Second, Timeout: time.Second, DownAfter: 1, UpAfter: 1}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no destinations", Config{Sets: []SetConfig{{Name: "fs", Algorithm: RoundRobin}}, Probe: probe}, "no destinations"},
		{"host name", Config{Sets: []SetConfig{{Name: "fs", Algorithm: RoundRobin, Destinations: []DestinationConfig{{URI: "sip:fs1.example"}}}}, Probe: probe}, "no resolver"},
		{"sips name", Config{Sets: []SetConfig{{Name: "fs", Algorithm: RoundRobin, Destinations: []DestinationConfig{{URI: "sips:fs1.example"}}}}, Probe: probe}, "udp or tcp"},
		{"bad name", Config{Sets: []SetConfig{{Name: "fs", Algorithm: RoundRobin, Destinations: []DestinationConfig{{URI: "sip:fs_1.example"}}}}, Probe: probe}, "neither"},
		{"user part", Config{Sets: []SetConfig{{Name: "fs", Algorithm: RoundRobin, Destinations: []DestinationConfig{{URI: "sip:a@10.0.0.1"}}}}, Probe: probe}, "no user part"},
		{"transport", Config{Sets: []SetConfig{{Name: "fs", Algorithm: RoundRobin, Destinations: []DestinationConfig{{URI: "sip:10.0.0.1;transport=sctp"}}}}, Probe: probe}, "sctp"},
		{"twice", Config{Sets: []SetConfig{{Name: "fs", Algorithm: RoundRobin, Destinations: []DestinationConfig{{URI: "sip:10.0.0.1"}, {URI: "sip:10.0.0.1:5060"}}}}, Probe: probe}, "twice"},
		{"weight", Config{Sets: []SetConfig{{Name: "fs", Algorithm: RoundRobin, Destinations: []DestinationConfig{{URI: "sip:10.0.0.1", Weight: -1}}}}, Probe: probe}, "weight"},
		{"set twice", Config{Sets: []SetConfig{ok, ok}, Probe: probe}, "used twice"},
		{"rule set", Config{Sets: []SetConfig{ok}, Rules: []Rule{{Set: "x"}}, Probe: probe}, "no such set"},
		{"rule register", Config{Sets: []SetConfig{ok}, Rules: []Rule{{Set: "fs", Methods: []string{"REGISTER"}}}, Probe: probe}, "REGISTER"},
		{"register set", Config{Sets: []SetConfig{ok}, Register: "x", Probe: probe}, "register"},
		{"probe timeout", Config{Sets: []SetConfig{ok}, Probe: ProbeConfig{Interval: time.Second, Timeout: 2 * time.Second, DownAfter: 1, UpAfter: 1}}, "probe.timeout"},
		{"probe counts", Config{Sets: []SetConfig{ok}, Probe: ProbeConfig{Interval: time.Second, Timeout: time.Second}}, "down_after"},
		{"failover code", Config{Sets: []SetConfig{ok}, Probe: probe, Failover: FailoverConfig{Codes: []int{200}}}, "failover.codes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want ErrConfig mentioning %q", err, tt.want)
			}
		})
	}
}

func TestParseURI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"sip:10.0.0.1", "sip:10.0.0.1:5060"},
		{"sip:10.0.0.1:5080;transport=TCP", "sip:10.0.0.1:5080;transport=tcp"},
		{"sip:[2001:db8::1]:5080;lr", "sip:[2001:db8::1]:5080"},
		{"sip:[2001:db8::1]", "sip:[2001:db8::1]:5060"},
	}
	for _, tt := range tests {
		got, err := ParseURI(tt.in)
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseURI(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func BenchmarkSelect(b *testing.B) {
	for _, alg := range []Algorithm{RoundRobin, Weighted, HashUser, LeastCalls} {
		b.Run(alg.String(), func(b *testing.B) {
			d, err := New(Config{
				Sets:  []SetConfig{{Name: "fs", Algorithm: alg, Destinations: []DestinationConfig{{URI: "sip:10.0.0.1"}, {URI: "sip:10.0.0.2"}, {URI: "sip:10.0.0.3"}}}},
				Probe: ProbeConfig{DownAfter: 1, UpAfter: 1},
			})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			s, req := d.Set("fs"), &Request{User: "conf-1", CallID: "abc"}
			b.ReportAllocs()
			for b.Loop() {
				d.Select(s, req)
			}
		})
	}
}
