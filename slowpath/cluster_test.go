package slowpath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/location"
)

// TestCluster: this edge acts for its own bindings and for those without
// an owner, not for another edge's; the other edges are where hops go,
// and every edge is a trusted peer.
func TestCluster(t *testing.T) {
	cfg, err := config.Parse([]byte(`cluster:
  edge_id: a
  edges:
    - {id: a, address: "10.0.0.1:5060"}
    - {id: b, address: "10.0.0.2:5070"}
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg}
	for edge, want := range map[string]bool{"a": true, "": true, "b": false, "gone": false} {
		if got := s.ActsFor(location.Binding{Edge: edge}); got != want {
			t.Errorf("ActsFor(edge %q) = %v, want %v", edge, got, want)
		}
	}
	if diff := cmp.Diff(map[string]netip.AddrPort{"b": netip.MustParseAddrPort("10.0.0.2:5070")}, otherEdges(cfg.Cluster),
		cmp.Comparer(func(x, y netip.AddrPort) bool { return x == y })); diff != "" {
		t.Errorf("other edges (-want +got):\n%s", diff)
	}
	if got := edgeAddr(cfg.Cluster); got != netip.MustParseAddrPort("10.0.0.1:5060") {
		t.Errorf("own edge address %v, want 10.0.0.1:5060 (hops leave from it)", got)
	}
	trusted, err := trustList(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.0.0.1", "10.0.0.2"} {
		if !trusted.Contains(netip.MustParseAddr(a)) {
			t.Errorf("edge %s is not a trusted peer", a)
		}
	}
	if trusted.Contains(netip.MustParseAddr("10.0.0.3")) {
		t.Error("10.0.0.3 trusted: only the edges should be")
	}

	alone := &Server{cfg: &config.Config{}}
	if !alone.ActsFor(location.Binding{}) || alone.ActsFor(location.Binding{Edge: "x"}) {
		t.Error("a box without edge id must act for unowned bindings only")
	}
}

// TestStatelessRecordsEdge: a REGISTER answered by the stateless UDP path
// records this edge as the binding's owner, as the registrar does.
func TestStatelessRecordsEdge(t *testing.T) {
	s, addr := startStateless(t, "cluster:\n  edge_id: edge-a\n")
	c := client(t)
	res := exchange(t, c, addr, register("alice", "edge-1", 1, c.LocalAddr().String()), 5*time.Second)
	if status(res) != "SIP/2.0 200 OK" {
		t.Fatalf("REGISTER: %q", res)
	}
	if got := s.Store().Lookup("alice@example.com"); len(got) != 1 || got[0].Edge != "edge-a" {
		t.Fatalf("bindings: %+v, want one owned by edge-a", got)
	}
}
