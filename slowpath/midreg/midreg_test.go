package midreg

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// First registration is relayed with pinhole inserted and outgoing_expires;
// refreshes are then absorbed until the upstream registration nears its
// end, and the refresh inside the margin is relayed.
func TestRelayAbsorbRenew(t *testing.T) {
	f := newFixture(t, nil)
	res := f.register("c1", 1, deviceFlow, contactLine(dev), "Expires: 60")
	expectStatus(t, res, 200)
	if diff := cmp.Diff([]string{"<" + dev + ">;expires=60"}, headerValues(res, "Contact")); diff != "" {
		t.Errorf("device's 200 lists its own contact and expiry (-want +got):\n%s", diff)
	}
	out := f.up.last(t)
	if got := out.Destination(); got != up1.String() {
		t.Errorf("sent to %s, want %s", got, up1)
	}
	contacts := headerValues(out, "Contact")
	if len(contacts) != 1 || !strings.HasPrefix(contacts[0], "<sip:alice~c") || !strings.HasSuffix(contacts[0], "@edge.example.net:5060>;expires=3600") {
		t.Errorf("upstream Contact %v: want pinhole's token contact with outgoing_expires", contacts)
	}
	if got := headerValues(out, "Expires"); !cmp.Equal(got, []string{"3600"}) {
		t.Errorf("upstream Expires %v, want [3600]", got)
	}
	vias := headerValues(out, "Via")
	if len(vias) != 2 || !strings.HasPrefix(vias[0], "SIP/2.0/UDP edge.example.net:5060;branch=z9hG4bK") || !strings.Contains(vias[1], "received=198.51.100.7") {
		t.Errorf("upstream Via %v: want pinhole's on top of the device's with received", vias)
	}
	if got := out.MaxForwards().Val(); got != 69 {
		t.Errorf("upstream Max-Forwards %d, want 69", got)
	}
	bs := f.store.Lookup("alice@example.com")
	if len(bs) != 1 || bs[0].UpExpires != f.clock.Now().Add(3600*time.Second) || bs[0].Expires != f.clock.Now().Add(60*time.Second) {
		t.Fatalf("stored %+v: want device expiry 60 s and upstream 3600 s", bs)
	}

	// Refreshes every 50 s are absorbed while now+60+10 stays within 3600.
	cseq, relayed := 2, f.up.count()
	for ; ; cseq++ {
		f.clock.Add(50 * time.Second)
		expectStatus(t, f.register("c1", cseq, deviceFlow, contactLine(dev), "Expires: 60"), 200)
		if f.up.count() != relayed {
			break
		}
	}
	elapsed := time.Duration(cseq-1) * 50 * time.Second
	if elapsed+70*time.Second <= 3600*time.Second || elapsed+20*time.Second > 3600*time.Second {
		t.Errorf("renewal relayed after %s: want the first refresh whose expiry plus margin passes 3600 s", elapsed)
	}
	if bs := f.store.Lookup("alice@example.com"); bs[0].UpExpires != f.clock.Now().Add(3600*time.Second) {
		t.Errorf("renewal did not move the upstream expiry: %v", bs[0].UpExpires)
	}
}

// What changes the registration, or could come from a stranger, is relayed.
func TestAlwaysRelayed(t *testing.T) {
	moved := deviceFlow
	moved.Remote = netip.MustParseAddrPort("198.51.100.99:40000")
	tests := []struct {
		name   string
		mode   Mode
		callID string
		flow   location.Flow
		lines  []string
	}{
		{"new contact", ModeContact, "c1", deviceFlow, []string{contactLine(dev + ";x=2"), "Expires: 60"}},
		{"second contact", ModeContact, "c1", deviceFlow, []string{contactLine(dev), contactLine("sip:alice@192.168.1.3"), "Expires: 60"}},
		{"changed q", ModeContact, "c1", deviceFlow, []string{contactLine(dev) + ";q=0.5", "Expires: 60"}},
		{"de-registration", ModeContact, "c1", deviceFlow, []string{contactLine(dev), "Expires: 0"}},
		{"wildcard", ModeContact, "c1", deviceFlow, []string{"Contact: *", "Expires: 0"}},
		{"another source", ModeContact, "c1", moved, []string{contactLine(dev), "Expires: 60"}},
		{"another Call-ID", ModeContact, "c2", deviceFlow, []string{contactLine(dev), "Expires: 60"}},
		{"query", ModeContact, "c1", deviceFlow, nil},
		{"mirror refresh", ModeMirror, "c1", deviceFlow, []string{contactLine(dev), "Expires: 60"}},
		{"aor new device", ModeAOR, "c2", deviceFlow, []string{contactLine("sip:alice@192.168.1.3"), "Expires: 60"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.Mode = tt.mode })
			expectStatus(t, f.register("c1", 1, deviceFlow, contactLine(dev), "Expires: 60"), 200)
			before, _ := f.up.split(tt.callID)
			f.clock.Add(10 * time.Second)
			expectStatus(t, f.register(tt.callID, 2, tt.flow, tt.lines...), 200)
			// Only the device's request counts: a contact it replaced is
			// de-registered upstream too, by the lapse worker, at its pace.
			if after, _ := f.up.split(tt.callID); after-before != 1 {
				t.Errorf("%d of the device's requests reached the upstream, want 1", after-before)
			}
		})
	}
}

// The control: the same refresh from the same flow is absorbed in the
// throttling modes, and reaches the upstream not at all.
func TestRefreshAbsorbed(t *testing.T) {
	for _, mode := range []Mode{ModeContact, ModeAOR} {
		f := newFixture(t, func(c *Config) { c.Mode = mode })
		expectStatus(t, f.register("c1", 1, deviceFlow, contactLine(dev), "Expires: 60"), 200)
		before := f.up.count()
		f.clock.Add(10 * time.Second)
		res := f.register("c1", 2, deviceFlow, contactLine(dev), "Expires: 60")
		expectStatus(t, res, 200)
		if got := f.up.count() - before; got != 0 {
			t.Errorf("%s: %d requests reached the upstream for an absorbable refresh", mode, got)
		}
		if got := headerValues(res, "Contact"); !cmp.Equal(got, []string{"<" + dev + ">;expires=60"}) {
			t.Errorf("%s: absorbed 200 lists %v", mode, got)
		}
	}
}

// A challenge goes back to the device with only what it needs, and the
// authenticated retry goes to the upstream that challenged, even when the
// first upstream is back.
func TestChallengeStaysWithUpstream(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Upstreams = append(c.Upstreams, Upstream{Addr: up2, Transport: "UDP"})
	})
	f.up.challnge = true
	f.up.down[up1.String()] = true
	res := f.register("c1", 1, deviceFlow, contactLine(dev), "Expires: 60")
	expectStatus(t, res, 401)
	if got := headerValues(res, "WWW-Authenticate"); len(got) != 1 || res.GetHeader("Server") != nil {
		t.Errorf("relayed challenge: WWW-Authenticate %v, Server %v: want the challenge and nothing of the core", got, res.GetHeader("Server"))
	}
	if diff := cmp.Diff([]string{up1.String(), up2.String()}, f.up.to); diff != "" {
		t.Errorf("failover order (-want +got):\n%s", diff)
	}
	delete(f.up.down, up1.String())
	res = f.register("c1", 2, deviceFlow, contactLine(dev), "Expires: 60", `Authorization: Digest username="alice", realm="example.com", nonce="n1", uri="sip:example.com", response="00"`)
	expectStatus(t, res, 200)
	if got := f.up.to[len(f.up.to)-1]; got != up2.String() {
		t.Errorf("authenticated retry went to %s, want %s which challenged", got, up2)
	}
	if bs := f.store.Lookup("alice@example.com"); len(bs) != 1 || bs[0].Upstream != 1 {
		t.Errorf("binding %+v: want it held by upstream 1", bs)
	}
}

// No upstream: a new registration gets 503 with Retry-After; a held
// binding's renewal is absorbed and retried at the next refresh.
func TestUpstreamDown(t *testing.T) {
	f := newFixture(t, nil)
	f.up.grant = 100
	expectStatus(t, f.register("c1", 1, deviceFlow, contactLine(dev), "Expires: 60"), 200)
	f.up.down[up1.String()] = true

	res := f.register("c9", 1, deviceFlow, contactLine("sip:alice@192.168.1.9"), "Expires: 60")
	expectStatus(t, res, 503)
	if got := headerValues(res, "Retry-After"); !cmp.Equal(got, []string{"30"}) {
		t.Errorf("Retry-After %v, want [30]", got)
	}
	f.clock.Add(40 * time.Second) // 40+60+10 > 100: inside the margin
	before := f.up.count()
	expectStatus(t, f.register("c1", 2, deviceFlow, contactLine(dev), "Expires: 60"), 200)
	if f.up.count() != before+1 {
		t.Fatal("renewal was not attempted")
	}
	if bs := f.store.Lookup("alice@example.com"); len(bs) != 1 || bs[0].Expires != f.clock.Now().Add(60*time.Second) {
		t.Fatalf("binding after a deferred renewal: %+v", bs)
	}
	delete(f.up.down, up1.String())
	f.clock.Add(10 * time.Second)
	expectStatus(t, f.register("c1", 3, deviceFlow, contactLine(dev), "Expires: 60"), 200)
	if bs := f.store.Lookup("alice@example.com"); bs[0].UpExpires != f.clock.Now().Add(100*time.Second) {
		t.Errorf("renewal after the upstream returned: upstream expiry %v", bs[0].UpExpires)
	}
}

// A lapsed binding is de-registered upstream by pinhole itself: one Via,
// the contact the upstream holds with expires=0; in mode aor only when the
// AOR's last contact goes; never in mirror mode.
func TestLapseDeregisters(t *testing.T) {
	for _, tt := range []struct {
		mode   Mode
		ins    Insertion
		second bool // a second device stays registered
		want   int  // de-registrations
	}{
		{ModeContact, InsertContact, false, 1},
		{ModeContact, InsertPath, false, 1},
		{ModeAOR, InsertContact, true, 0},
		{ModeAOR, InsertContact, false, 1},
		{ModeMirror, InsertContact, false, 0},
	} {
		t.Run(tt.mode.String()+"/"+tt.ins.String(), func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.Mode, c.Insertion = tt.mode, tt.ins })
			expectStatus(t, f.register("c1", 1, deviceFlow, contactLine(dev), "Expires: 5"), 200)
			if tt.second {
				expectStatus(t, f.register("c2", 1, deviceFlow, contactLine("sip:alice@192.168.1.3"), "Expires: 3600"), 200)
			}
			registered := f.store.Lookup("alice@example.com")
			before := f.up.count()
			f.clock.Add(6 * time.Second)
			waitFor(t, "the lapse", func() bool {
				_, n := f.store.Len()
				return n == len(registered)-1
			})
			if tt.want == 0 {
				time.Sleep(100 * time.Millisecond)
				if got := f.up.count() - before; got != 0 {
					t.Fatalf("%d requests upstream, want none", got)
				}
				return
			}
			waitFor(t, "the de-registration", func() bool { return f.up.count() == before+tt.want })
			out := f.up.last(t)
			if vias := headerValues(out, "Via"); len(vias) != 1 {
				t.Errorf("de-registration Via %v: want pinhole's alone (the main registrar trusts that)", vias)
			}
			if got := headerValues(out, "Expires"); !cmp.Equal(got, []string{"0"}) {
				t.Errorf("de-registration Expires %v", got)
			}
			c := headerValues(out, "Contact")
			want := ""
			switch {
			case tt.mode == ModeAOR:
				want = "<sip:alice~a"
			case tt.ins == InsertPath:
				want = "<" + dev + ">;expires=0"
			default:
				want = "<sip:" + contactToken(&registered[0])
			}
			if len(c) != 1 || !strings.HasPrefix(c[0], want) || !strings.HasSuffix(c[0], ";expires=0") {
				t.Errorf("de-registration Contact %v, want %s...;expires=0", c, want)
			}
		})
	}
}

// The tokens pinhole inserts lead back to the bindings they name.
func TestResolve(t *testing.T) {
	f := newFixture(t, nil)
	expectStatus(t, f.register("c1", 1, deviceFlow, contactLine(dev), contactLine("sip:alice@192.168.1.3"), "Expires: 60"), 200)
	expectStatus(t, f.register("c2", 1, deviceFlow, contactLine("sip:alice@192.168.1.4"), "Expires: 60"), 200)
	all := f.store.Lookup("alice@example.com")
	byContact := map[string]location.Binding{}
	for _, b := range all {
		byContact[b.Contact] = b
	}
	one := byContact[dev]
	for _, tt := range []struct {
		name   string
		aor    string
		ok     bool
		wantCt []string
	}{
		{"contact token", contactToken(&one) + "@example.com", true, []string{dev}},
		{"contact token, any served host", contactToken(&one) + "@203.0.113.1", true, []string{dev}},
		{"path token", pathToken("alice@example.com", "c1") + "@example.com", true, []string{dev, "sip:alice@192.168.1.3"}},
		{"aor token", aorToken("alice@example.com") + "@example.com", true, []string{dev, "sip:alice@192.168.1.3", "sip:alice@192.168.1.4"}},
		{"stale token", "alice~c00000000@example.com", true, nil},
		{"ordinary user", "alice@example.com", false, nil},
		{"tilde user", "al~ice@example.com", false, nil},
	} {
		bs, ok := f.m.Resolve(tt.aor)
		var got []string
		for _, b := range bs {
			got = append(got, b.Contact)
		}
		slices.Sort(got)
		if ok != tt.ok || !cmp.Equal(got, tt.wantCt) {
			t.Errorf("%s: Resolve(%q) = %v, %v; want %v, %v", tt.name, tt.aor, got, ok, tt.wantCt, tt.ok)
		}
	}
}

// TestEdgeRecorded: the mid-registrar records this edge as the owner of
// what it stores, and keeps it when the upstream answer is stamped on the
// binding and when a refresh is absorbed.
func TestEdgeRecorded(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Registrar.Edge = "edge-a" })
	expectStatus(t, f.register("c1", 1, deviceFlow, contactLine(dev), "Expires: 60"), 200)
	expectStatus(t, f.register("c1", 2, deviceFlow, contactLine(dev), "Expires: 60"), 200)
	bs := f.store.Lookup("alice@example.com")
	if len(bs) != 1 || bs[0].Edge != "edge-a" || bs[0].UpExpires.IsZero() || bs[0].CSeq != 2 {
		t.Fatalf("stored %+v: want one binding owned by edge-a with its upstream registration", bs)
	}
}
