package proxy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// TestOwnerHop: two edges sharing one view of bob's binding, which edge
// a owns. A call entering edge b is handed to a, reaches bob from a's
// socket (the only one his NAT lets in), and both edges stay in the
// dialog, so the caller's BYE takes the same way.
func TestOwnerHop(t *testing.T) {
	a := startProxy(t, func(c *Config) { c.Keys, c.Edge = testKeys, "a" })
	b := startProxy(t, func(c *Config) {
		c.Keys, c.Edge, c.Edges = testKeys, "b", map[string]netip.AddrPort{"a": a.udp}
	})
	bob := newDevice(t, "bob", "sip:bob@10.9.9.9:5060", answer(0))
	bnd := bob.binding(a, 1000)
	bnd.Edge = "a"
	a.loc.add(bnd.AOR, bnd)
	b.loc.add(bnd.AOR, bnd) // b's view of the shared store: the flow is a's

	sent, received := mHopSent.Get(), mHopReceived.Get()
	alice := newDevice(t, "alice", "sip:alice@10.8.8.8:5060", nil)
	inv0, tx := alice.invite(b, "sip:bob@example.com")
	inv := bob.expect(sip.INVITE)
	if got := inv.Source(); got != a.udp.String() {
		t.Errorf("INVITE reached bob from %s, want edge a's socket %s", got, a.udp)
	}
	if inv.Recipient.String() != bob.contact.String() {
		t.Errorf("Request-URI at bob = %s, want his Contact %s", &inv.Recipient, &bob.contact)
	}
	var rr []string
	for _, h := range inv.GetHeaders("Record-Route") {
		u := h.(*sip.RecordRouteHeader).Address
		rr = append(rr, netip.AddrPortFrom(netip.MustParseAddr(u.Host), uint16(u.Port)).String())
	}
	if diff := cmp.Diff([]string{a.udp.String(), b.udp.String()}, rr); diff != "" {
		t.Errorf("Record-Route at bob (-want +got):\n%s", diff)
	}
	if inv.GetHeader("Route") != nil {
		t.Errorf("the owner hop's Route reached bob: %s", inv.GetHeader("Route").Value())
	}
	if got := mHopSent.Get() - sent; got != 1 {
		t.Errorf("hops sent = %d, want 1", got)
	}
	if got := mHopReceived.Get() - received; got != 1 {
		t.Errorf("hops received = %d, want 1", got)
	}
	rs := responses(t, tx)
	ok := rs[len(rs)-1]
	if ok.StatusCode != 200 {
		t.Fatalf("INVITE answered %v, want 200", codes(rs))
	}

	bye := fromCaller(sip.BYE, inv0, ok, 2)
	if res := alice.do(bye); res.StatusCode != 200 {
		t.Fatalf("BYE answered %d", res.StatusCode)
	}
	if got := bob.expect(sip.BYE).Source(); got != a.udp.String() {
		t.Errorf("BYE reached bob from %s, want edge a's socket %s", got, a.udp)
	}
}

// TestOwnerHopCalleeHangsUp: the device's BYE takes the dialog's route
// back: to the owner it reached the device from, then the edge the call
// entered, then the caller.
func TestOwnerHopCalleeHangsUp(t *testing.T) {
	a := startProxy(t, func(c *Config) { c.Keys, c.Edge = testKeys, "a" })
	b := startProxy(t, func(c *Config) {
		c.Keys, c.Edge, c.Edges = testKeys, "b", map[string]netip.AddrPort{"a": a.udp}
	})
	bob := newDevice(t, "bob", "sip:bob@10.9.9.9:5060", answer(0))
	bnd := bob.binding(a, 1000)
	bnd.Edge = "a"
	a.loc.add(bnd.AOR, bnd)
	b.loc.add(bnd.AOR, bnd)
	alice := newDevice(t, "alice", "sip:alice@127.0.0.1:5060", nil)
	alice.contact.Port = int(alice.addr.Port())
	_, tx := alice.invite(b, "sip:bob@example.com")
	bob.expect(sip.INVITE)
	if rs := responses(t, tx); rs[len(rs)-1].StatusCode != 200 {
		t.Fatalf("INVITE answered %v, want 200", codes(rs))
	}
	if res := bob.do(bob.fromCallee(sip.BYE)); res.StatusCode != 200 {
		t.Fatalf("bob's BYE answered %d", res.StatusCode)
	}
	if got := alice.expect(sip.BYE).Source(); got != b.udp.String() {
		t.Errorf("bob's BYE reached alice from %s, want edge b %s (the edge her call entered)", got, b.udp)
	}
}

// TestOwnerHopCancel: the caller's CANCEL at the edge the call entered
// reaches the ringing device through the owner.
func TestOwnerHopCancel(t *testing.T) {
	a := startProxy(t, func(c *Config) { c.Keys, c.Edge = testKeys, "a" })
	b := startProxy(t, func(c *Config) {
		c.Keys, c.Edge, c.Edges = testKeys, "b", map[string]netip.AddrPort{"a": a.udp}
	})
	bob := newDevice(t, "bob", "sip:bob@10.9.9.9:5060", ring)
	bnd := bob.binding(a, 1000)
	bnd.Edge = "a"
	a.loc.add(bnd.AOR, bnd)
	b.loc.add(bnd.AOR, bnd)
	alice := newDevice(t, "alice", "sip:alice@10.8.8.8:5060", nil)
	inv, tx := alice.invite(b, "sip:bob@example.com")
	bob.expect(sip.INVITE)
	waitFor(t, tx, 180)
	cancel := sip.NewRequest(sip.CANCEL, inv.Recipient)
	cancel.AppendHeader(inv.Via().Clone())
	cancel.AppendHeader(sip.HeaderClone(inv.From()))
	cancel.AppendHeader(sip.HeaderClone(inv.To()))
	cancel.AppendHeader(sip.HeaderClone(inv.CallID()))
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	cancel.SetDestination(b.udp.String())
	if res := alice.do(cancel); res.StatusCode != 200 {
		t.Errorf("CANCEL answered %d", res.StatusCode)
	}
	if rs := responses(t, tx); rs[len(rs)-1].StatusCode != 487 {
		t.Errorf("caller's final response %v, want 487", codes(rs))
	}
	if got := bob.expect(sip.CANCEL).Source(); got != a.udp.String() {
		t.Errorf("CANCEL reached bob from %s, want the owner a %s", got, a.udp)
	}
}

// TestOwnerHopOwnFlowsOnly: the owner forks only to the bindings it owns
// (never hands a hop on: two views that disagree cannot bounce a request
// between edges), and answers 480 when it owns none any more.
func TestOwnerHopOwnFlowsOnly(t *testing.T) {
	a := startProxy(t, func(c *Config) {
		c.Keys, c.Edge, c.Edges = testKeys, "a", map[string]netip.AddrPort{"c": netip.MustParseAddrPort("127.0.0.1:9")}
	})
	b := startProxy(t, func(c *Config) {
		c.Keys, c.Edge, c.Edges = testKeys, "b", map[string]netip.AddrPort{"a": a.udp}
	})
	bob := newDevice(t, "bob", "sip:bob@10.9.9.9:5060", answer(0))
	mine := bob.binding(a, 1000)
	mine.Edge = "a"
	elsewhere := mine
	elsewhere.Contact, elsewhere.Edge = "sip:bob@10.7.7.7:5060", "c"
	a.loc.add(mine.AOR, mine, elsewhere)
	b.loc.add(mine.AOR, mine)

	alice := newDevice(t, "alice", "sip:alice@10.8.8.8:5060", nil)
	sent := mHopSent.Get()
	_, tx := alice.invite(b, "sip:bob@example.com")
	bob.expect(sip.INVITE)
	if rs := responses(t, tx); rs[len(rs)-1].StatusCode != 200 {
		t.Fatalf("INVITE answered %v, want 200", codes(rs))
	}
	if got := mHopSent.Get() - sent; got != 1 {
		t.Errorf("hops sent = %d, want 1 (b to a; a must not hand it on to c)", got)
	}

	// The device moved away from a: b's view still says a.
	a.loc.mu.Lock()
	a.loc.bindings[mine.AOR] = []location.Binding{elsewhere}
	a.loc.mu.Unlock()
	unowned := mHopUnowned.Get()
	_, tx = alice.invite(b, "sip:bob@example.com")
	if rs := responses(t, tx); rs[len(rs)-1].StatusCode != 480 {
		t.Fatalf("INVITE for flows a no longer holds answered %v, want 480", codes(rs))
	}
	if mHopUnowned.Get() != unowned+1 {
		t.Error("pinhole_cluster_hops_unowned_total did not count the hop")
	}
}

// TestOwnerHopRefused: an owner Route entry is followed only when its MAC
// covers this request's Call-ID and AOR and names this edge; anything
// else is refused and counted, so nobody outside can make an edge call
// its devices.
func TestOwnerHopRefused(t *testing.T) {
	p, _ := unitProxy(t, func(c *Config) { c.Edge = "a" })
	good := p.ownerRoute("c1", "bob@example.com", "a", unitUDP)
	route := func(u sip.Uri) string { return "Route: <" + u.String() + ">" }
	tamper := func(k, v string) sip.Uri {
		u := *good.Clone()
		u.UriParams.Add(k, v)
		return u
	}
	for _, tt := range []struct {
		name, ruri, route string
		want              action
	}{
		{"verified", "sip:bob@example.com", route(good), actLocate},
		{"another AOR", "sip:carol@example.com", route(good), actReply},
		{"another edge", "sip:bob@example.com", route(tamper(paramOwner, "b")), actReply},
		{"forged MAC", "sip:bob@example.com", route(tamper(paramSig, "aaaaaaaaaaaaaaaa")), actReply},
		{"no MAC", "sip:bob@example.com", "Route: <sip:198.51.100.1:5060;lr;oe=a>", actReply},
		{"foreign domain", "sip:bob@example.net", route(good), actReply},
		{"signed for another edge", "sip:bob@example.com", route(p.ownerRoute("c1", "bob@example.com", "b", unitUDP)), actReply},
	} {
		t.Run(tt.name, func(t *testing.T) {
			refused := mHopRefused.Get()
			d := p.decide(request(t, msg("INVITE", tt.ruri, tt.route)))
			if d.act != tt.want {
				t.Fatalf("act = %d (%d %s), want %d", d.act, d.status, d.reason, tt.want)
			}
			if tt.want == actLocate {
				if !d.ownerHop || d.aor != "bob@example.com" {
					t.Errorf("ownerHop %v aor %q, want true bob@example.com", d.ownerHop, d.aor)
				}
				return
			}
			if d.status != sip.StatusForbidden {
				t.Errorf("status %d, want 403", d.status)
			}
			if mHopRefused.Get() != refused+1 {
				t.Error("pinhole_cluster_hops_refused_total did not count it")
			}
		})
	}
}

// TestEdgeTargets: one hop per other owning edge, whatever its number of
// bindings; bindings without an owner, with this edge's id or with an
// owner this edge does not know are delivered here.
func TestEdgeTargets(t *testing.T) {
	ea, ec := netip.MustParseAddrPort("10.0.0.1:5060"), netip.MustParseAddrPort("10.0.0.3:5060")
	p, _ := unitProxy(t, func(c *Config) {
		c.Edge, c.Edges = "b", map[string]netip.AddrPort{"a": ea, "c": ec}
	})
	bs := []location.Binding{
		{Contact: "sip:1@x", Edge: "a", Q: 500},
		{Contact: "sip:2@x", Edge: "a", Q: 900},
		{Contact: "sip:3@x", Edge: "c", Q: 100},
		{Contact: "sip:4@x", Edge: "b"},
		{Contact: "sip:5@x"},
		{Contact: "sip:6@x", Edge: "gone"},
	}
	req := request(t, msg("INVITE", "sip:bob@example.com"))
	type hop struct {
		Edge, Dest string
		Q          uint16
	}
	var got []hop
	for _, tg := range p.edgeTargets(req, "bob@example.com", bs) {
		got = append(got, hop{tg.edge, tg.dest, tg.q})
		if !tg.path[0].UriParams.Has(paramSig) {
			t.Errorf("hop to %s carries no MAC", tg.edge)
		}
	}
	want := []hop{{"a", ea.String(), 900}, {"c", ec.String(), 100}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hops (-want +got):\n%s", diff)
	}
	internal := netip.MustParseAddrPort("10.0.0.2:5060")
	p2, _ := unitProxy(t, func(c *Config) {
		c.Edge, c.Edges, c.EdgeAddr = "b", map[string]netip.AddrPort{"a": ea}, internal
		c.Listeners = append(c.Listeners, Listener{Transport: location.TransportUDP, Local: internal})
	})
	for _, tg := range p2.edgeTargets(req, "bob@example.com", bs[:1]) {
		if tg.out.Local != internal {
			t.Errorf("hop leaves from %v, want this edge's own address %v (the one the owner trusts)", tg.out.Local, internal)
		}
	}
	var here []string
	for i := range bs {
		if p.ownedHere(&bs[i]) {
			here = append(here, bs[i].Contact)
		}
	}
	if diff := cmp.Diff([]string{"sip:4@x", "sip:5@x", "sip:6@x"}, here); diff != "" {
		t.Errorf("delivered here (-want +got):\n%s", diff)
	}
}

// FuzzOwnerHop: whatever Request-URI and Route entry arrive, deciding on
// them never panics, and a request is delivered as an owner hop only when
// its entry carries the MAC pinhole makes for this Call-ID, the AOR the
// Request-URI names and this edge: no crafted parameters let an outsider
// make the edge deliver.
func FuzzOwnerHop(f *testing.F) {
	p, _ := unitProxy(f, func(c *Config) { c.Edge = "a" })
	good := p.ownerRoute("c1", "bob@example.com", "a", unitUDP)
	f.Add("sip:bob@example.com", good.String())
	f.Add("sip:bob@example.com", "sip:198.51.100.1:5060;lr;oe=a;sig=")
	f.Add("sip:bob@EXAMPLE.com.", good.String())
	f.Add("sip:carol@example.com", good.String())
	f.Add("sips:bob@example.com", "sip:198.51.100.1:5060;lr;oe=a;oe=b;sig=x")
	f.Add("sip:bob@example.com", "sip:198.51.100.1;lr;oe")
	f.Fuzz(func(t *testing.T, ruri, route string) {
		if strings.ContainsAny(ruri+route, "\r\n<>") {
			return // one header line each
		}
		text := msg("INVITE", ruri, "Route: <"+route+">")
		m, err := sip.ParseMessage([]byte(strings.ReplaceAll(text, "\n", "\r\n") + "\r\n"))
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		req.SetSource("203.0.113.9:40000")
		d := p.decide(req)
		if ruri == "sip:bob@example.com" && route == good.String() && !d.ownerHop {
			t.Fatal("the seed pinhole signed is not taken as an owner hop: the target tests nothing")
		}
		if !d.ownerHop {
			return
		}
		r := req.Route()
		sig, _ := r.Address.UriParams.Get(paramSig)
		if want := p.keys.Sign(ownerParts(callID(req), d.aor, "a")...); sig != want {
			t.Fatalf("owner hop accepted with MAC %q; pinhole signs %q for aor %q", sig, want, d.aor)
		}
	})
}
