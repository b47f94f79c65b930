//go:build integration

package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/cmd/pinhole/mgmt"
	"github.com/pinhole-sip/pinhole/internal/testutil"
	"github.com/pinhole-sip/pinhole/slowpath"
)

// Load of TestVIPFailover: bounded in count and in time.
const (
	// vipDevices refreshing devices (sipload), each from its own address
	// and port behind the NAT, so each with its own NAT mapping: the
	// issue's 10 000.
	vipDevices = 10000
	// vipPeriod is each device's refresh period, and the NAT ping
	// interval: 1 000 refreshes and 1 000 pings a second, which the
	// race-built pinholes, six Redis nodes and the generator get through
	// on two shared cores, the standby included when it takes over on
	// its slow path alone. At 5 s (2 000 of each) the new active box fell
	// seconds behind after the takeover on the loaded machine
	// (docs/cluster.md); at 1 s, as the 200 phones had, it would be
	// 10 000 of each.
	vipPeriod = 10 * time.Second
	// vipLoad is how long the devices refresh after registering: up to
	// a round for A's pinger to take every flow, a round of counting its
	// pings, the failover, and more than a round after it.
	vipLoad = 36 * time.Second
	// vipGapLimit is the bound on the time no refresh succeeds.
	vipGapLimit = 3 * time.Second
	// vipMetrics is where each box serves its metrics, inside its own
	// namespace.
	vipMetrics = "127.0.0.1:9090"
	// vipPingWindow is how long NAT pings are counted: one interval and
	// a second, so that the pinger, which spreads each interval's pings
	// evenly over it, pings every flow at least once within it.
	vipPingWindow = vipPeriod + time.Second
	// vipSources is the devices' address range, local in the device's
	// namespace and routed to it by the NAT router.
	vipSources = "10.77.0.0/16"
)

// vipBox is one box of the pair: its namespace, its pinhole and its
// keepalived.
type vipBox struct {
	name string
	ns   *testutil.NetNS
	link string // its end of the segment
	addr netip.Addr
	ph   *testutil.Pinhole
	ka   *testutil.Keepalived
	api  string // its management API, inside its namespace
}

func (b *vipBox) metric(t *testing.T, name string) float64 {
	t.Helper()
	return testutil.Metrics(t, b.ns, vipMetrics)[name]
}

// TestVIPFailover runs an active/standby pair on a virtual address, all
// real processes in namespaces of the test:
//
//	device ns ── NAT router ns ─┐           (masquerade, random ports; sipload, the callee)
//	                            │ segment (a bridge in ns "seg")
//	box A ns: pinhole, keepalived ─┤  10.200.0.11, VIP 10.200.0.10 (master; fast path)
//	box B ns: pinhole, keepalived ─┤  10.200.0.12 (backup; slow path alone)
//	seg ns: Redis Cluster (6 nodes), the calling farm node (sipp UAC)
//
// Both pinholes listen on VIP:5060 whichever box holds it and share their
// bindings through the Redis Cluster; keepalived (VRRPv3, unicast, advert
// every 100 ms) checks that its box's pinhole runs. The devices are
// sipload's (bench/), 10 000 of them, each from its own address and port,
// refreshing every 10 s. The test proves, with the active pinhole killed
// with SIGKILL while they refresh:
//
//   - box B's listeners, on the slow path without the nonlocal-bind
//     sysctl, bind the VIP that A holds (IP_FREEBIND) and later serve it;
//   - before: only the box holding the VIP pings devices, and its pings
//     reach a phone through its NAT mapping (so they leave from
//     VIP:5060); the standby holds every binding (from Redis) and pings
//     none;
//   - the VIP moves to the standby, and refreshes succeed again within 3 s
//     (the longest time without a 200, measured and logged), every
//     device's included, and none goes unanswered;
//   - a call ringing when A dies completes through B: A relayed the
//     INVITE and the phone's 180, the phone answers after A's death, and B,
//     with no transaction for that 200, forwards it to the caller under A's
//     signed branch (the boxes share the route key); the caller's ACK and
//     BYE reach the phone through B over the NAT mapping;
//   - a call from the farm node reaches a phone through the NAT mapping its
//     REGISTER opened toward the old box: the new box's INVITE leaves from
//     VIP:5060, or the NAT would drop it;
//   - after: the new active box pings every device's flow, and its pings
//     reach the phone through the mapping opened toward the old box;
//   - every device that got a 200 is bound on the new active box, as its
//     management API lists them.
func TestVIPFailover(t *testing.T) {
	began := time.Now()
	stage := func(what string) { t.Logf("%6.2fs %s", time.Since(began).Seconds(), what) }

	// The segment: a bridge in its own namespace, with the NAT router's
	// uplink, both boxes, and the bridge's own address for Redis and the
	// caller.
	seg := testutil.NewNetNS(t)
	nat := testutil.NATDevice(t, seg)
	wan := netip.PrefixFrom(nat.UpstreamAddr, 24)
	seg.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	seg.MustRun(t, "ip", "addr", "del", wan.String(), "dev", nat.Uplink.NameA)
	seg.MustRun(t, "ip", "link", "set", nat.Uplink.NameA, "master", "br0")
	seg.MustRun(t, "ip", "addr", "add", wan.String(), "dev", "br0")
	seg.MustRun(t, "ip", "link", "set", "br0", "up")
	segAddr := nat.UpstreamAddr
	vip := testutil.HostAddr(wan, 10)
	vipAP := netip.AddrPortFrom(vip.Addr(), 5060).String()

	cluster := testutil.StartRedisCluster(t, testutil.RedisClusterConfig{NS: seg, Host: segAddr})
	stage("segment and Redis Cluster up")

	boxes := []*vipBox{{name: "A"}, {name: "B"}}
	for i, b := range boxes {
		b.ns = testutil.NewNetNS(t)
		self := testutil.HostAddr(wan, byte(11+i))
		l := testutil.Veth(t, b.ns, seg, self, netip.Prefix{})
		seg.MustRun(t, "ip", "link", "set", l.NameB, "master", "br0")
		b.link, b.addr = l.NameA, self.Addr()
	}
	// The two ways a box binds the VIP it does not hold, one per box:
	// A runs the fast path, whose gnet sockets are not pinhole's to set
	// IP_FREEBIND on, so its namespace has the sysctl (docs/cluster.md;
	// per namespace, the host's is untouched); B runs the slow path
	// alone, on pinhole's own sockets with IP_FREEBIND and no sysctl.
	// B binds the VIP while A holds it, then serves on it.
	boxes[0].ns.MustRun(t, "sysctl", "-q", "-w", "net.ipv4.ip_nonlocal_bind=1")
	// One route key for the pair (docs/cluster.md): B follows the
	// Record-Route entries and forwards the responses of branches A signed.
	var secret [32]byte
	rand.Read(secret[:])
	keyFile := fmt.Sprintf("%d %x\n", time.Now().Unix(), secret)
	for i, b := range boxes {
		cfg := testutil.DefaultConfig(t)
		if err := os.WriteFile(filepath.Join(cfg.DataDir, slowpath.RouteKeyFile), []byte(keyFile), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.FastPath.Enabled = i == 0
		cfg.Listen.UDP = []string{vipAP}
		cfg.Listen.TCP = []string{vipAP}
		cfg.Metrics.Listen = vipMetrics
		cfg.Log.Level = "info"
		cfg.Location.Backend = "redis"
		cfg.Location.Redis.Addresses = cluster.Addresses()
		cfg.Location.FlushInterval = 100 * time.Millisecond
		cfg.Cluster.EdgeID = "pair"
		cfg.Cluster.VIP = vip.Addr().String()
		cfg.NATPing.Interval = vipPeriod
		cfg.NATPing.Method = "options"
		cfg.NATPing.MaxMissed = 0 // a missed ping never removes a binding here
		b.api = testutil.EnableAPI(t, &cfg, "")
		b.ph = testutil.StartPinhole(t, b.ns, cfg)
	}
	stage("both pinholes listen on the VIP")

	start := func(b *vipBox, peer *vipBox, prio int) {
		b.ka = testutil.StartKeepalived(t, testutil.KeepalivedConfig{
			NS: b.ns, Interface: b.link, Self: b.addr, Peer: peer.addr, VIP: vip, Priority: prio,
			Check: []string{"/bin/kill", "-0", strconv.Itoa(b.ph.PID())},
		})
	}
	a, sb := boxes[0], boxes[1]
	start(a, sb, 150)
	waitVIP(t, a, 10*time.Second)
	start(sb, a, 100)
	time.Sleep(500 * time.Millisecond) // B hears A's adverts and stays backup
	if sb.ka.HoldsVIP() {
		t.Fatal("both boxes hold the VIP")
	}
	waitMetricValue(t, a, "pinhole_cluster_active", 1)
	waitMetricValue(t, sb, "pinhole_cluster_active", 0)
	stage("keepalived: A holds the VIP, B is backup")

	// A phone behind the NAT that the farm node calls across the failover
	// and after it, registered (to the VIP) before it. It rings 3 s
	// before it answers.
	callee := testutil.Sipp{
		Scenario: scenario(t, "device_register.xml"), OutOfCall: scenario(t, "uas_ring_ping.xml"),
		Remote: vipAP, NS: nat.Device, LocalIP: nat.DeviceAddr, LocalPort: 5070,
		Service: "callee",
		// Up for the whole test (the generator's registrations alone
		// take half a minute on a loaded machine); stopped at its end.
		Vars:    map[string]string{"domain": domain, "expires": "600", "hold_ms": "240000"},
		Timeout: 250 * time.Second,
	}.Start(t)
	if !callee.WaitLog("registered: callee", registerWait) {
		t.Fatal("the callee did not register through the VIP")
	}

	// The devices: sipload in the NAT's device namespace, every device
	// from its own address (of vipSources, local there) and port, so the
	// NAT gives each its own mapping. They register, then refresh.
	nat.Device.MustRun(t, "ip", "route", "add", "local", vipSources, "dev", "lo")
	nat.Router.AddRoute(t, netip.MustParsePrefix(vipSources), nat.DeviceAddr)
	load := startSipload(t, nat.Device, vipAP)
	deadline := time.Now().Add(60 * time.Second)
	for len(load.oks()) == 0 {
		if time.Now().After(deadline) || load.exited() {
			t.Fatalf("the devices did not start refreshing within 60s:\n%s", load.report())
		}
		time.Sleep(200 * time.Millisecond)
	}
	stage(fmt.Sprintf("%d devices registered through A, refreshing", vipDevices))

	// The standby holds every binding, from Redis, and pings none.
	flows := float64(vipDevices + 1)
	waitMetricValue(t, sb, "pinhole_location_bindings", flows)
	// The callee logs each ping that reached it: a ping crosses the
	// NAT only if it left from VIP:5060, where the callee's mapping
	// points.
	const sent = "pinhole_natping_sent_total"
	// A's pinger takes the flows registered during a cycle at the next
	// one: count its pings once it has them all.
	for a.metric(t, "pinhole_natping_targets") < flows {
		if time.Now().After(deadline) {
			t.Fatalf("A's pinger takes %v flows, want %v", a.metric(t, "pinhole_natping_targets"), flows)
		}
		time.Sleep(100 * time.Millisecond)
	}
	pingA, pingB, got := a.metric(t, sent), sb.metric(t, sent), len(callee.LogValues("pinged"))
	time.Sleep(vipPingWindow)
	dA, dB := a.metric(t, sent)-pingA, sb.metric(t, sent)-pingB
	reached := len(callee.LogValues("pinged")) - got
	t.Logf("before the failover, in %v: A sent %v pings, B %v; %d reached the callee", vipPingWindow, dA, dB, reached)
	if reached == 0 {
		t.Error("no ping of the active box reached the callee through its NAT mapping")
	}
	if dB != 0 {
		t.Errorf("the standby sent %v NAT pings", dB)
	}
	if got := sb.metric(t, "pinhole_natping_targets"); got != 0 {
		t.Errorf("the standby's pinger takes %v flows, want none", got)
	}
	if want := minPings(flows); dA < want {
		t.Errorf("the active box sent %v NAT pings in %v, want at least %v (each flow once an interval, spread over it)", dA, vipPingWindow, want)
	}
	// Every device refreshed through A before it dies (the ping window
	// is longer than a refresh period): the gap is looked for from the
	// last device's first refresh on.
	for registered(load.oks()) < vipDevices {
		if time.Now().After(deadline) || load.exited() {
			t.Fatalf("only %d of %d devices refreshed through A:\n%s", registered(load.oks()), vipDevices, load.report())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A call that rings when A dies: A relays the INVITE and the 180; the
	// phone answers 3 s later, to whichever box holds the VIP by then.
	ringing := testutil.Sipp{
		Scenario: scenario(t, "uac_call.xml"), Remote: vipAP, NS: seg, LocalIP: segAddr,
		Service: "callee", Vars: map[string]string{"domain": domain, "from_user": "farm"},
		Timeout: 30 * time.Second,
	}.Start(t)
	if !callee.WaitLog("invited:", 10*time.Second) {
		t.Fatal("the call through A did not reach the callee")
	}
	const forwarded = `pinhole_proxy_stray_responses_total{result="forwarded"}`
	strayBefore := sb.metric(t, forwarded)

	const answeredB = `pinhole_registrar_replies_total{code="200"}`
	before200 := sb.metric(t, answeredB)
	macB := strings.Fields(sb.ns.MustRun(t, "cat", "/sys/class/net/"+sb.link+"/address"))[0]
	killed := time.Now()
	a.ph.Kill()
	waitVIP(t, sb, 10*time.Second)
	moved := time.Since(killed)
	// When the NAT router learned B's MAC for the VIP (keepalived's
	// gratuitous ARP) and when B answered its first REGISTER: where the
	// time of a slow failover went.
	var arpAt, answerAt time.Duration
	for arpAt == 0 || answerAt == 0 {
		if arpAt == 0 {
			if out, _ := nat.Router.Exec("ip", "neigh", "show", vip.Addr().String()); strings.Contains(out, macB) {
				arpAt = time.Since(killed)
			}
		}
		if answerAt == 0 && sb.metric(t, answeredB) > before200 {
			answerAt = time.Since(killed)
		}
		if time.Since(killed) > 10*time.Second {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("after the kill: VIP on B %v, NAT router sends to B's MAC %v, B's first 200 to a REGISTER %v (0: not within 10 s)",
		moved.Round(time.Millisecond), arpAt.Round(time.Millisecond), answerAt.Round(time.Millisecond))
	waitMetricValue(t, sb, "pinhole_cluster_active", 1)
	stage(fmt.Sprintf("A's pinhole killed; VIP on B %v later", moved.Round(time.Millisecond)))
	if a.ka.HoldsVIP() {
		t.Error("A still holds the VIP after B took it")
	}

	// The ringing call completes through B: the caller got the 200 (B
	// forwarded it without a transaction), the phone the ACK and the BYE.
	rr := ringing.Wait(t)
	if rr.ExitCode != testutil.SippExitOK || rr.Successful != 1 {
		t.Errorf("the call ringing across the failover failed:\n%s", rr.Report())
	}
	waitLogCount(t, callee, "hangup", 1, 10*time.Second)
	if got := callee.LogValues("answered"); len(got) != 1 {
		t.Errorf("callee got the ACK of %d calls, want 1 (the one ringing across the failover)", len(got))
	}
	stray := sb.metric(t, forwarded) - strayBefore
	t.Logf("call ringing across the failover: caller %v, callee hung up by the caller's BYE; B forwarded %v stray responses",
		rr.LogValues("hangup"), stray)
	if stray < 1 {
		t.Errorf("B forwarded %v responses without a transaction, want the callee's 200 at least", stray)
	}
	stage("the call ringing across the failover completed through B")

	res := load.wait(t)
	stage("refreshing devices done")
	prep, run := res.Prepare.Actions["register"], res.Run.Actions["refresh"]
	t.Logf("sipload: %d of %d devices registered (%d of them after %v); refreshes %d answered in time, %d late, %d unanswered or refused; %d skipped while busy; %d NAT pings answered",
		prep.Succeeded+prep.Late, vipDevices, prep.Late, vipDeadline, run.Succeeded, run.Late, run.Failed-run.Late, run.Busy, res.Span.NATPings)
	if prep.Succeeded+prep.Late != vipDevices {
		t.Errorf("%d of %d devices registered", prep.Succeeded+prep.Late, vipDevices)
	}
	// A refresh answered late (its 200 after vipDeadline, retransmissions
	// included) is slow, not lost; one never answered or refused is.
	if run.Failed != run.Late {
		t.Errorf("%d refreshes got no 200:\n%s", run.Failed-run.Late, load.report())
	}
	gap, after := refreshGap(t, load.oks())
	t.Logf("longest time without a successful refresh: %v (VIP moved %v after the kill); %d of %d devices refreshed after it",
		gap.Round(time.Millisecond), moved.Round(time.Millisecond), len(after), vipDevices)
	if gap > vipGapLimit {
		t.Errorf("no refresh succeeded for %v, want at most %v", gap, vipGapLimit)
	}
	if len(after) != vipDevices {
		t.Errorf("%d of %d devices got no 200 after the failover", vipDevices-len(after), vipDevices)
	}

	query := make(chan aorList, 1)
	go func() { query <- listAORs(sb.ns, sb.api) }()

	// The new active box pings every flow, from VIP:5060; counted over
	// the window while a call goes through it.
	pingB, got = sb.metric(t, sent), len(callee.LogValues("pinged"))
	window := time.Now()

	// A call through the VIP reaches the callee through its old mapping.
	r := testutil.Sipp{
		Scenario: scenario(t, "uac_call.xml"), Remote: vipAP, NS: seg, LocalIP: segAddr,
		Service: "callee", Vars: map[string]string{"domain": domain, "from_user": "farm"},
		Timeout: 20 * time.Second,
	}.Run(t)
	if r.ExitCode != testutil.SippExitOK || r.Successful != 1 {
		t.Errorf("call to the callee through the new active box failed:\n%s", r.Report())
	}
	waitLogCount(t, callee, "hangup", 2, 5*time.Second)
	if got := callee.LogValues("answered"); len(got) != 2 {
		t.Errorf("callee answered %d calls, want 2", len(got))
	}
	stage("call through the new active box")

	time.Sleep(vipPingWindow - time.Since(window))
	dB = sb.metric(t, sent) - pingB
	reached = len(callee.LogValues("pinged")) - got
	t.Logf("after the failover, in %v: B sent %v pings; %d reached the callee", time.Since(window).Round(time.Millisecond), dB, reached)
	if reached == 0 {
		t.Error("no ping of the new active box reached the callee through its old NAT mapping")
	}
	if want := minPings(flows); dB < want {
		t.Errorf("the new active box sent %v NAT pings in %v, want at least %v", dB, vipPingWindow, want)
	}
	if got := sb.metric(t, "pinhole_natping_targets"); got != flows {
		t.Errorf("the new active box pings %v flows, want %v", got, flows)
	}

	// Every device acknowledged is bound on the new active box: its
	// management API lists each one's AOR (asked while the call and the
	// ping count above go on).
	q := <-query
	if q.err != nil {
		t.Fatalf("list B's bindings: %v", q.err)
	}
	var lost []string
	for i := range vipDevices {
		if aor := fmt.Sprintf("u%07d@%s", i, domain); !q.aors[aor] {
			lost = append(lost, aor)
		}
	}
	t.Logf("acknowledged bindings lost: %d of %d (B lists %d AORs, in %v)", len(lost), vipDevices, len(q.aors), q.took.Round(time.Millisecond))
	if len(lost) > 0 {
		t.Errorf("devices acknowledged before the failover are not bound on the new active box: %d, first %v", len(lost), lost[:min(len(lost), 10)])
	}
	stage("queried")
}

// aorList is what a box's management API lists: every AOR it holds.
type aorList struct {
	aors map[string]bool
	took time.Duration
	err  error
}

// listAORs pages through GET /api/v1/bindings of the API at base, inside
// ns. It reports errors rather than failing the test: it runs beside it.
func listAORs(ns *testutil.NetNS, base string) aorList {
	began := time.Now()
	l := aorList{aors: map[string]bool{}}
	addr := strings.TrimPrefix(base, "http://")
	after := ""
	for {
		var conn net.Conn
		if l.err = ns.Do(func() (err error) {
			conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
			return err
		}); l.err != nil {
			return l
		}
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(conn, "GET /api/v1/bindings?limit=1000&after=%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", url.QueryEscape(after), addr)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			l.err = err
			return l
		}
		var page mgmt.BindingPage
		err = json.NewDecoder(res.Body).Decode(&page)
		res.Body.Close()
		conn.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			l.err = fmt.Errorf("GET bindings after %q: status %d, %v", after, res.StatusCode, err)
			return l
		}
		for _, b := range page.Bindings {
			l.aors[b.AOR] = true
		}
		if page.Next == "" {
			l.took = time.Since(began)
			return l
		}
		after = page.Next
	}
}

// minPings is the fewest NAT pings to flows flows that the active box
// must send in vipPingWindow: 80 % of what its pinger spreads over the
// window, the rest left to a loaded machine.
func minPings(flows float64) float64 {
	return 0.8 * flows * vipPingWindow.Seconds() / vipPeriod.Seconds()
}

// waitLogCount waits until p has logged at least n lines of key.
func waitLogCount(t *testing.T, p *testutil.SippProcess, key string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for len(p.LogValues(key)) < n {
		if time.Now().After(deadline) {
			t.Errorf("%d %q lines logged within %v, want %d", len(p.LogValues(key)), key, within, n)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitVIP waits until b's keepalived has put the VIP on its interface.
func waitVIP(t *testing.T, b *vipBox, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !b.ka.HoldsVIP() {
		if time.Now().After(deadline) {
			t.Fatalf("box %s did not take the VIP within %v; keepalived:\n%s", b.name, within, b.ka.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitMetricValue waits up to 5 s for b's metric to read want.
func waitMetricValue(t *testing.T, b *vipBox, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := b.metric(t, name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("box %s: %s = %v, want %v", b.name, name, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// registered counts the distinct users among "USER CLOCK" values.
func registered(oks []string) int {
	seen := map[string]bool{}
	for _, v := range oks {
		seen[strings.Fields(v)[0]] = true
	}
	return len(seen)
}

// refreshGap finds, in sipp's "USER CLOCK_MS" lines, the longest time no
// 200 arrived while every phone was refreshing (from the last phone's
// first 200 to the first phone's last: outside it fewer phones refresh
// and 200s are sparse anyway), and the users that got one after it ended.
func refreshGap(t *testing.T, oks []string) (time.Duration, map[string]bool) {
	t.Helper()
	type ok struct {
		user string
		ms   int64
	}
	var all []ok
	for _, v := range oks {
		f := strings.Fields(v)
		if len(f) != 2 {
			t.Fatalf("unexpected log line %q", v)
		}
		ms, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatalf("log line %q: %v", v, err)
		}
		all = append(all, ok{f[0], ms})
	}
	slices.SortFunc(all, func(a, b ok) int { return int(a.ms - b.ms) })
	first, last := map[string]int64{}, map[string]int64{}
	for _, o := range all {
		if _, seen := first[o.user]; !seen {
			first[o.user] = o.ms
		}
		last[o.user] = o.ms
	}
	from, to := int64(0), int64(1<<62)
	for u := range first {
		from, to = max(from, first[u]), min(to, last[u])
	}
	var gap, end int64
	for i := 1; i < len(all); i++ {
		if all[i-1].ms < from || all[i].ms > to {
			continue
		}
		if d := all[i].ms - all[i-1].ms; d > gap {
			gap, end = d, all[i].ms
		}
	}
	after := map[string]bool{}
	for _, o := range all {
		if o.ms >= end {
			after[o.user] = true
		}
	}
	return time.Duration(gap) * time.Millisecond, after
}
