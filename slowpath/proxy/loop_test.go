package proxy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/trust"
)

// TestLoopDetected: a request that comes back to pinhole unchanged — its
// own Via with the loop hash of this very request — is answered 482
// (RFC 3261 §16.3 step 4); the same request with a new Request-URI is a
// spiral and goes on.
func TestLoopDetected(t *testing.T) {
	p, _ := unitProxy(t, nil)
	invite := msg("INVITE", "sip:carol@example.com", "Route: <sip:edge.example.com;lr>")
	first := request(t, invite)
	ours := "Via: SIP/2.0/UDP edge.example.com:5060;branch=" + branchID(loopHash(first))
	looped := request(t, strings.Replace(invite, "Via: ", ours+"\nVia: ", 1))
	if d := p.decide(looped); d.act != actReply || d.status != sip.StatusLoopDetected {
		t.Fatalf("looped request: act %d status %d, want a 482", d.act, d.status)
	}
	spiral := request(t, strings.Replace(strings.Replace(invite, "Via: ", ours+"\nVia: ", 1), "INVITE sip:carol@example.com", "INVITE sip:carol@10.9.9.9", 1))
	if d := p.decide(spiral); d.status == sip.StatusLoopDetected {
		t.Fatal("a spiral (new Request-URI) was taken for a loop")
	}
	// A Via of another host with the same branch is someone else's.
	other := request(t, strings.Replace(invite, "Via: ", strings.Replace(ours, "edge.example.com", "proxy.example.net", 1)+"\nVia: ", 1))
	if d := p.decide(other); d.status == sip.StatusLoopDetected {
		t.Fatal("another host's Via was taken for pinhole's")
	}
}

func TestShareBreadth(t *testing.T) {
	g := func(n int) []target { return make([]target, n) }
	for _, tt := range []struct {
		name   string
		groups [][]target
		mb     int
		want   [][]int
	}{
		{"split evenly", [][]target{g(3)}, 60, [][]int{{20, 20, 20}}},
		{"remainder to the first", [][]target{g(3)}, 10, [][]int{{4, 3, 3}}},
		{"cut to the breadth", [][]target{g(5)}, 2, [][]int{{1, 1}}},
		{"serial groups each get all", [][]target{g(1), g(2)}, 7, [][]int{{7}, {4, 3}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, got := shareBreadth(tt.groups, tt.mb)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("shares (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMaxBreadthRefused: a request that may not fork any further gets 440
// (RFC 5393 §5.3.3), a malformed Max-Breadth 400, and pinhole starts no
// branch for either.
func TestMaxBreadthRefused(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  int
	}{{"0", StatusMaxBreadthExceeded}, {"many", sip.StatusBadRequest}, {"-1", sip.StatusBadRequest}} {
		p, loc := unitProxy(t, nil)
		loc.add("carol@example.com", location.Binding{AOR: "carol@example.com", Contact: "sip:carol@192.0.2.1:5060"})
		tx := &fakeTx{}
		p.Handle(request(t, msg("MESSAGE", "sip:carol@example.com", "Max-Breadth: "+tt.value)), tx)
		if len(tx.res) != 1 || tx.res[0].StatusCode != tt.want {
			t.Errorf("Max-Breadth %s: responses %v, want one %d", tt.value, statuses(tx.res), tt.want)
		}
	}
}

func statuses(rs []*sip.Response) []int {
	var out []int
	for _, r := range rs {
		out = append(out, r.StatusCode)
	}
	return out
}

// TestIdentityHeaders: identity headers survive only from trusted peers;
// toward the outbound proxy pinhole asserts the authenticated subscriber
// instead (RFC 3325 §5).
func TestIdentityHeaders(t *testing.T) {
	spoof := msg("INVITE", "sip:+15551234@carrier.net",
		"P-Asserted-Identity: <sip:+15550000@carrier.net>",
		"Remote-Party-ID: <sip:+15550000@carrier.net>;party=calling")
	for _, tt := range []struct {
		name     string
		trusted  bool
		identity string
		want     []string
	}{
		{name: "untrusted, not authenticated", want: nil},
		{name: "authenticated subscriber", identity: "alice@example.com", want: []string{"<sip:alice@example.com>"}},
		{name: "trusted peer", trusted: true, want: []string{"<sip:+15550000@carrier.net>"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := unitProxy(t, func(c *Config) {
				c.Outbound = "sip:core.example.net"
				if tt.trusted {
					c.Trusted = trust.New(netip.MustParsePrefix("203.0.113.9/32"))
				}
			})
			req := request(t, spoof)
			d := p.decide(req)
			d.identity = tt.identity
			fwd := p.prepare(req, &d)
			var got []string
			for _, h := range fwd.GetHeaders("P-Asserted-Identity") {
				got = append(got, h.Value())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("P-Asserted-Identity (-want +got):\n%s", diff)
			}
			if rpid := fwd.GetHeader("Remote-Party-ID"); (rpid != nil) != tt.trusted {
				t.Errorf("Remote-Party-ID kept: %v, want %v", rpid != nil, tt.trusted)
			}
		})
	}
}

// TestBindingBackToPinhole: a Contact naming pinhole's own address is not
// a branch (it would come back and fork again); the other contacts are.
func TestBindingBackToPinhole(t *testing.T) {
	p, _ := unitProxy(t, nil)
	groups := p.targetGroups([]location.Binding{
		{AOR: "carol@example.com", Contact: "sip:carol@198.51.100.1:5060"},
		{AOR: "carol@example.com", Contact: "sip:carol@edge.example.com"},
		{AOR: "carol@example.com", Contact: "sip:carol@192.0.2.1:5060"},
	})
	if len(groups) != 1 || len(groups[0]) != 1 || groups[0][0].uri.Host != "192.0.2.1" {
		t.Fatalf("targets %+v, want only the contact at 192.0.2.1", groups)
	}
}
