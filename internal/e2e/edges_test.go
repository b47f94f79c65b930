//go:build integration

package e2e

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/testutil"
	"github.com/pinhole-sip/pinhole/slowpath"
)

// edgesMetrics is where each edge serves metrics, inside its namespace.
const edgesMetrics = "127.0.0.1:9060"

// TestEdges is the "N edges": two pinhole edges, a and b, share a
// six-node Redis Cluster; a device behind a masquerading NAT registers
// through a only, and a caller calls it through b.
//
//	       hub ns (Redis Cluster on 10.201.1.1, routes between links)
//	      /        |           \
//	edge a ns   edge b ns    caller ns (sipp UAC)
//	10.201.1.2  10.201.2.2   10.201.3.2
//	    |
//	NAT router ns (masquerade, random ports) ── device ns (sipp UAS)
//	10.200.0.1 is a's device-facing address
//
// Nothing but a can reach the device: b and the caller have no route to
// the NAT's side, and the NAT lets in only what comes from the address
// and port the device's REGISTER went to. So the call answered proves
// that b handed the INVITE to a and a sent it from its own socket over
// the device's mapping; the BYE answered proves the dialog's requests
// took the same way (both edges record-route). The natping counters show
// that a pings the device and b, which sees the binding too, does not.
func TestEdges(t *testing.T) {
	began := time.Now()
	stage := func(what string) { t.Logf("%6.2fs %s", time.Since(began).Seconds(), what) }
	hub := testutil.NewNetNS(t)
	hub.EnableForwarding(t)
	nsA, nsB, nsC := testutil.NewNetNS(t), testutil.NewNetNS(t), testutil.NewNetNS(t)
	link := func(ns *testutil.NetNS, n byte) netip.Addr {
		hubEnd := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 201, n, 1}), 24)
		end := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 201, n, 2}), 24)
		testutil.Veth(t, hub, ns, hubEnd, end)
		ns.AddRoute(t, netip.Prefix{}, hubEnd.Addr())
		return end.Addr()
	}
	addrA, addrB, addrC := link(nsA, 1), link(nsB, 2), link(nsC, 3)
	nat := testutil.NATDevice(t, nsA)
	cluster := testutil.StartRedisCluster(t, testutil.RedisClusterConfig{NS: hub, Host: netip.MustParseAddr("10.201.1.1")})
	stage("namespaces and Redis Cluster up")

	internalA, internalB := netip.AddrPortFrom(addrA, 5060), netip.AddrPortFrom(addrB, 5060)
	deviceSide := netip.AddrPortFrom(nat.UpstreamAddr, 5060)
	// Both edges honour each other's signed Route entries: one key.
	var secret [32]byte
	rand.Read(secret[:])
	keyFile := fmt.Sprintf("%d %x\n", time.Now().Unix(), secret)
	edgeConfig := func(id string, udp ...netip.AddrPort) testutil.Config {
		c := testutil.DefaultConfig(t)
		c.Listen = config.Listen{}
		for _, a := range udp {
			c.Listen.UDP = append(c.Listen.UDP, a.String())
		}
		c.Location.Backend = "redis"
		c.Location.Redis.Addresses = cluster.Addresses()
		c.Location.FlushInterval = 100 * time.Millisecond
		c.Cluster = config.Cluster{EdgeID: id, Edges: []config.Edge{
			{ID: "a", Address: internalA.String()},
			{ID: "b", Address: internalB.String()},
		}}
		// CRLF keepalives: never answered, never remove the binding, and
		// each one sent is counted.
		c.NATPing = config.NATPing{Interval: time.Second, Method: "crlf"}
		c.Metrics.Listen = edgesMetrics
		c.Log.Level = "info"
		// The hop is the slow path's. With the fast path on and backend
		// redis the process took 7-11 s to exit after logging "stopped"
		// (1 s without), close to the 15 s the helper allows under load.
		c.FastPath.Enabled = false
		if err := os.WriteFile(filepath.Join(c.DataDir, slowpath.RouteKeyFile), []byte(keyFile), 0o600); err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := testutil.StartPinhole(t, nsA, edgeConfig("a", deviceSide, internalA))
	b := testutil.StartPinhole(t, nsB, edgeConfig("b", internalB))
	t.Cleanup(func() {
		// Each drains its transactions for up to 7 s: side by side, not
		// one after the other.
		var wg sync.WaitGroup
		wg.Go(func() { _ = a.Stop() })
		wg.Go(func() { _ = b.Stop() })
		wg.Wait()
	})
	stage("edges up")

	device := testutil.Sipp{
		Scenario:  scenario(t, "device_register.xml"),
		OutOfCall: scenario(t, "uas_answer.xml"),
		Remote:    deviceSide.String(),
		NS:        nat.Device,
		LocalIP:   nat.DeviceAddr, LocalPort: phonePort,
		Service: "dev",
		Vars:    map[string]string{"domain": domain, "expires": "600", "hold_ms": "60000"},
		Timeout: 60 * time.Second,
	}.Start(t)
	if !device.WaitLog("registered: dev", registerWait) {
		t.Fatal("the device did not register through edge a")
	}
	metric := func(ns *testutil.NetNS, name string) float64 {
		t.Helper()
		return testutil.Metrics(t, ns, edgesMetrics)[name]
	}
	// b learns the binding from Redis (docs/cluster.md, "Coherence").
	deadline := time.Now().Add(5 * time.Second)
	for metric(nsB, "pinhole_location_bindings") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("edge b does not see the device's binding within 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stage("device registered through a, seen by b")

	call := testutil.Sipp{
		Scenario: scenario(t, "uac_call.xml"),
		Remote:   internalB.String(),
		NS:       nsC,
		LocalIP:  addrC,
		Service:  "dev",
		Vars:     map[string]string{"domain": domain, "from_user": "alice"},
		Timeout:  20 * time.Second,
	}.Run(t)
	if call.ExitCode != testutil.SippExitOK || call.Successful != 1 {
		t.Fatalf("call through edge b failed:\n%s", call.Report())
	}
	device.WaitLog("hangup:", 5*time.Second)
	stage("call through b answered and hung up")
	device.Stop()
	dr := device.Wait(t)
	if diff := cmp.Diff(call.LogValues("answered"), dr.LogValues("answered")); diff != "" || len(dr.LogValues("answered")) != 1 {
		t.Errorf("calls the device answered vs. the caller saw (-caller +device):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"remote"}, dr.LogValues("hangup")); diff != "" {
		t.Errorf("the caller's BYE did not reach the device (-want +got):\n%s", diff)
	}

	ma, mb := testutil.Metrics(t, nsA, edgesMetrics), testutil.Metrics(t, nsB, edgesMetrics)
	for _, c := range []struct {
		edge string
		m    map[string]float64
		name string
		want float64
	}{
		{"b", mb, `pinhole_cluster_hops_total{way="sent"}`, 1},
		{"a", ma, `pinhole_cluster_hops_total{way="received"}`, 1},
		{"a", ma, `pinhole_cluster_hops_refused_total`, 0},
		{"a", ma, `pinhole_cluster_hops_total{way="sent"}`, 0}, // never handed on
		{"b", mb, `pinhole_natping_sent_total`, 0},
	} {
		if got := c.m[c.name]; got != c.want {
			t.Errorf("edge %s: %s = %v, want %v", c.edge, c.name, got, c.want)
		}
	}
	// The caller's ACK and BYE both passed a: it stayed in the dialog.
	if got := ma[`pinhole_proxy_requests_total{kind="dialog"}`]; got < 2 {
		t.Errorf(`edge a: pinhole_proxy_requests_total{kind="dialog"} = %v, want the ACK and the BYE`, got)
	}
	if got := ma["pinhole_natping_sent_total"]; got < 1 {
		t.Errorf("edge a sent %v NAT pings to the device it owns, want at least 1", got)
	}
	stage("metrics checked")
}
