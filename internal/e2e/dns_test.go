//go:build integration

package e2e

import (
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// farmRecords are dnsmasq options publishing the farm under farm.test the
// RFC 3263 way: a NAPTR for SIP over UDP, its SRV set with one weight per
// node, and each node's address. A negative weight leaves the node out
// of the SRV set.
func farmRecords(f *testutil.Farm, weights ...int) []string {
	recs := []string{"--naptr-record=farm.test,10,10,s,SIP+D2U,,_sip._udp.farm.test"}
	for i, n := range f.Nodes {
		host := fmt.Sprintf("n%d.farm.test", i+1)
		recs = append(recs, "--host-record="+host+","+n.Addr.Addr().String())
		if i < len(weights) && weights[i] >= 0 {
			recs = append(recs, fmt.Sprintf("--srv-host=_sip._udp.farm.test,%s,%d,0,%d", host, n.Addr.Port(), weights[i]))
		}
	}
	return recs
}

// TestDNSFarm: the farm is configured by one name, sip:farm.test, which
// dnsmasq resolves through NAPTR and SRV to two sipp nodes. Calls split by
// the SRV weights; new weights move the split; a node removed from the SRV
// set takes no new call; and with the name server dead, calls keep flowing
// to the last good answer while pinhole counts the stale answers it uses.
func TestDNSFarm(t *testing.T) {
	f := testutil.StartFarm(t, 2, scenario(t, "farm_node.xml"), nil)
	dns := testutil.StartDnsmasq(t, 1, farmRecords(f, 90, 10)...)
	metricsAddr := fmt.Sprintf("%s:%d", testutil.Loopback, testutil.FreePort(t, testutil.Loopback))
	s := startServer(t, nil, false, func(c *testutil.Config) {
		c.Log.Level = "info"
		c.Metrics.Listen = metricsAddr
		c.DNS.Servers = []string{dns.Addr.String()}
		c.DNS.Timeout = 300 * time.Millisecond
		c.DNS.MinTTL = time.Second
		c.DNS.NegativeTTL = time.Second
		c.Dispatch.Sets = []config.DispatchSet{{Name: "fs", Algorithm: "weighted", Destinations: []config.DispatchDestination{{URI: "sip:farm.test"}}}}
		c.Dispatch.Rules = []config.DispatchRule{{Set: "fs", Domains: []string{farmDomain}}}
		// Probes read the dispatcher's view every half second, so the
		// gauges below follow DNS without traffic.
		c.Dispatch.Probe = config.DispatchProbe{Interval: 500 * time.Millisecond, Timeout: 400 * time.Millisecond, DownAfter: 2, UpAfter: 1}
	})
	gauge := func(name string, n *testutil.FarmNode) string {
		return fmt.Sprintf(`%s{set="fs",destination="sip:%s"}`, name, n.Addr)
	}
	n1, n2 := f.Nodes[0], f.Nodes[1]
	prev := []int{0, 0}
	took := func() []int {
		got := nodeCalls(f)
		out := []int{len(got[0]) - prev[0], len(got[1]) - prev[1]}
		prev = []int{len(got[0]), len(got[1])}
		return out
	}
	check := func(phase string, got []int, want []int, tolerance int) {
		t.Helper()
		for i := range want {
			if got[i] < want[i]-tolerance || got[i] > want[i]+tolerance {
				t.Errorf("%s: node %d took %d calls, want %d±%d (all: %v)", phase, i+1, got[i], want[i], tolerance, got)
			}
		}
	}

	// SRV weights 90/10 under the weighted algorithm.
	waitMetric(t, metricsAddr, gauge("pinhole_dispatch_destination_weight", n1), "90", 5*time.Second)
	s.placeCalls(t, repeat("a", 100, 1), 100)
	check("weights 90/10", took(), []int{90, 10}, 3)

	// New weights: the refresher sees them within a TTL or two, and
	// traffic follows.
	dns.SetRecords(farmRecords(f, 20, 80)...)
	waitMetric(t, metricsAddr, gauge("pinhole_dispatch_destination_weight", n2), "80", 5*time.Second)
	s.placeCalls(t, repeat("b", 100, 1), 100)
	check("weights 20/80", took(), []int{20, 80}, 5)

	// Node 1 leaves the SRV set: drained, no new call reaches it.
	dns.SetRecords(farmRecords(f, -1, 80)...)
	waitMetric(t, metricsAddr, gauge("pinhole_dispatch_destination_drained", n1), "1", 5*time.Second)
	s.placeCalls(t, repeat("c", 40, 1), 100)
	check("node 1 removed", took(), []int{0, 40}, 0)

	// The name server dies. Past the TTL the last good answer is stale,
	// and still used: every call succeeds on node 2, each counted.
	dns.Stop()
	waitMetric(t, metricsAddr, "pinhole_dns_cache_stale_entries", "1", 5*time.Second)
	staleBefore, _ := strconv.Atoi(metric(t, metricsAddr, "pinhole_dns_stale_total"))
	s.placeCalls(t, repeat("d", 40, 1), 100)
	check("name server dead", took(), []int{0, 40}, 0)
	staleAfter, _ := strconv.Atoi(metric(t, metricsAddr, "pinhole_dns_stale_total"))
	if staleAfter-staleBefore < 40 {
		t.Errorf("pinhole_dns_stale_total rose by %d over 40 calls on a stale answer, want at least 40", staleAfter-staleBefore)
	}
	if got := metric(t, metricsAddr, `pinhole_dns_refreshes_total{result="failed"}`); got == "" || got == "0" {
		t.Errorf("no failed refresh counted with the name server dead: %q", got)
	}
	if t.Failed() {
		t.Logf("dnsmasq:\n%s\npinhole:\n%s", dns.Log(), s.Output())
	}
}

// TestDNSMidregUpstream: the main registrar is configured by name only;
// dnsmasq gives its SRV record and address. REGISTER reaches Kamailio
// through the name, and keeps reaching it on the last good answer after
// the name server is killed.
func TestDNSMidregUpstream(t *testing.T) {
	var dns *testutil.Dnsmasq
	metricsAddr := fmt.Sprintf("%s:%d", testutil.Loopback, testutil.FreePort(t, testutil.Loopback))
	r := startMidrig(t, midParams{mode: "contact", insertion: "contact", outgoing: 3600, margin: 10}, func(c *testutil.Config) {
		kam := netip.MustParseAddrPort(c.MidRegistrar.Upstreams[0].Addr)
		dns = testutil.StartDnsmasq(t, 1,
			"--host-record=k1.registrar.test,"+kam.Addr().String(),
			fmt.Sprintf("--srv-host=_sip._udp.registrar.test,k1.registrar.test,%d,0,10", kam.Port()))
		c.MidRegistrar.Upstreams = []config.Upstream{{Addr: "registrar.test", Transport: "udp"}}
		c.Metrics.Listen = metricsAddr
		c.DNS.Servers = []string{dns.Addr.String()}
		c.DNS.Timeout = 300 * time.Millisecond
		c.DNS.MinTTL = time.Second
	})
	if got := r.register(t, "alice", "wonderland", "Contact: <sip:alice@127.0.0.1:7301>", "Expires: 60"); got.Code != "200" {
		t.Fatalf("REGISTER through the upstream's name got %s, want 200", got.Code)
	}
	if kc := r.kamContacts(t, "alice"); len(kc) != 1 {
		t.Fatalf("Kamailio holds %v for alice, want one contact", kc)
	}

	dns.Stop()
	waitMetric(t, metricsAddr, "pinhole_dns_cache_stale_entries", "1", 5*time.Second)
	if got := r.register(t, "bob", "builder", "Contact: <sip:bob@127.0.0.1:7302>", "Expires: 60"); got.Code != "200" {
		t.Fatalf("REGISTER on the stale answer got %s, want 200", got.Code)
	}
	if kc := r.kamContacts(t, "bob"); len(kc) != 1 {
		t.Fatalf("Kamailio holds %v for bob, want one contact", kc)
	}
	if v := metric(t, metricsAddr, "pinhole_dns_stale_total"); v == "" || v == "0" {
		t.Errorf("pinhole_dns_stale_total = %q after a REGISTER on a stale answer", v)
	}
}

// TestDNSOutbound: proxy.outbound is a name; dnsmasq's SRV set puts one
// sipp node first (priority 0) and another as its spare. Calls for a
// foreign domain reach the first; once DNS lists only the spare, they
// reach the spare.
func TestDNSOutbound(t *testing.T) {
	f := testutil.StartFarm(t, 2, scenario(t, "farm_node.xml"), nil)
	records := func(first bool) []string {
		recs := []string{"--naptr-record=out.test,10,10,s,SIP+D2U,,_sip._udp.out.test"}
		for i, n := range f.Nodes {
			host := fmt.Sprintf("o%d.out.test", i+1)
			recs = append(recs, "--host-record="+host+","+n.Addr.Addr().String())
			if i == 0 && !first {
				continue
			}
			recs = append(recs, fmt.Sprintf("--srv-host=_sip._udp.out.test,%s,%d,%d,10", host, n.Addr.Port(), i))
		}
		return recs
	}
	dns := testutil.StartDnsmasq(t, 1, records(true)...)
	s := startServer(t, nil, false, func(c *testutil.Config) {
		c.Log.Level = "info"
		c.DNS.Servers = []string{dns.Addr.String()}
		c.DNS.Timeout = 300 * time.Millisecond
		c.DNS.MinTTL = time.Second
		c.Proxy.Outbound = "sip:out.test"
		// The caller is a peer: pinhole relays its calls for foreign
		// domains to the outbound proxy without asking who it is.
		c.Trust.Peers = []string{testutil.Loopback.String() + "/32"}
	})
	s.placeCallsTo(t, "foreign.test", repeat("x", 10, 1), 50)
	if got := nodeCalls(f); len(got[0]) != 10 || len(got[1]) != 0 {
		t.Fatalf("calls per outbound address %d/%d, want 10/0 (priority 0 first)", len(got[0]), len(got[1]))
	}
	dns.SetRecords(records(false)...)
	time.Sleep(2500 * time.Millisecond) // a TTL of 1 s, refreshed at 80 %, and a restart
	s.placeCallsTo(t, "foreign.test", repeat("y", 10, 1), 50)
	if got := nodeCalls(f); len(got[0]) != 10 || len(got[1]) != 10 {
		t.Fatalf("calls per outbound address %d/%d after the first left DNS, want 10/10", len(got[0]), len(got[1]))
	}
}
