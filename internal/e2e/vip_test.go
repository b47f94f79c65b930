//go:build integration

package e2e

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testutil"
	"github.com/pinhole-sip/pinhole/slowpath"
)

// Load of TestVIPFailover: bounded in count and in time.
const (
	vipDevices   = 200 // refreshing phones, each with its own NAT mapping
	vipRefreshes = 12  // refreshes per phone after its registration, one a second
	// vipGapLimit is the bound on the time no refresh succeeds.
	vipGapLimit = 3 * time.Second
	// vipMetrics is where each box serves its metrics, inside its own
	// namespace.
	vipMetrics = "127.0.0.1:9090"
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
}

func (b *vipBox) metric(t *testing.T, name string) float64 {
	t.Helper()
	return testutil.Metrics(t, b.ns, vipMetrics)[name]
}

// TestVIPFailover runs an active/standby pair on a virtual address, all
// real processes in namespaces of the test:
//
//	device ns ── NAT router ns ─┐           (masquerade, random ports)
//	                            │ segment (a bridge in ns "seg")
//	box A ns: pinhole, keepalived ─┤  10.200.0.11, VIP 10.200.0.10 (master; fast path)
//	box B ns: pinhole, keepalived ─┤  10.200.0.12 (backup; slow path alone)
//	seg ns: Redis Cluster (6 nodes), the calling farm node (sipp UAC)
//
// Both pinholes listen on VIP:5060 whichever box holds it and share their
// bindings through the Redis Cluster; keepalived (VRRPv3, unicast, advert
// every 100 ms) checks that its box's pinhole runs. The test proves, with
// the active pinhole killed with SIGKILL while 200 phones refresh:
//
//   - box B's listeners, on the slow path without the nonlocal-bind
//     sysctl, bind the VIP that A holds (IP_FREEBIND) and later serve it;
//   - before: only the box holding the VIP pings devices, and its pings
//     reach a phone through its NAT mapping (so they leave from
//     VIP:5060); the standby holds every binding (from Redis) and pings
//     none;
//   - the VIP moves to the standby, and refreshes succeed again within 3 s
//     (the longest time without a 200, measured and logged), every phone's
//     included;
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
//   - every phone that got a 200 is bound on the new active box.
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
		cfg.NATPing.Interval = time.Second
		cfg.NATPing.Method = "options"
		cfg.NATPing.MaxMissed = 0 // sipp's phones do not answer OPTIONS
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
		Vars:    map[string]string{"domain": domain, "expires": "600", "hold_ms": "60000"},
		Timeout: 60 * time.Second,
	}.Start(t)
	if !callee.WaitLog("registered: callee", registerWait) {
		t.Fatal("the callee did not register through the VIP")
	}

	users := make([]testutil.User, vipDevices)
	for i := range users {
		users[i] = testutil.User{Name: fmt.Sprintf("v%04d", i), Password: "pw", Expires: 600}
	}
	load := testutil.Sipp{
		Scenario: scenario(t, "vip_refresh.xml"), Remote: vipAP, NS: nat.Device, LocalIP: nat.DeviceAddr,
		Transport: "un", Users: users, Calls: len(users), Rate: float64(len(users)), Limit: len(users),
		Vars: map[string]string{
			"domain": domain, "expires": "600", "period_ms": "1000", "refreshes": strconv.Itoa(vipRefreshes),
		},
		Timeout: 60 * time.Second, NoMessageTrace: true,
		// One socket per phone: sipp wants its socket budget below the
		// open-file limit.
		Args: []string{"-max_socket", strconv.Itoa(len(users) + 50)},
	}.Start(t)
	deadline := time.Now().Add(15 * time.Second)
	for registered(load.LogValues("ok")) < len(users) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d phones registered within 15s", registered(load.LogValues("ok")), len(users))
		}
		time.Sleep(100 * time.Millisecond)
	}
	stage(fmt.Sprintf("%d phones registered and refreshing", len(users)))

	// The standby holds every binding, from Redis, and pings none.
	flows := float64(len(users) + 1)
	waitMetricValue(t, sb, "pinhole_location_bindings", flows)
	// The callee logs each ping that reached it: a ping crosses the
	// NAT only if it left from VIP:5060, where the callee's mapping
	// points.
	const sent = "pinhole_natping_sent_total"
	pingA, pingB, got := a.metric(t, sent), sb.metric(t, sent), len(callee.LogValues("pinged"))
	time.Sleep(2500 * time.Millisecond) // two ping intervals
	dA, dB := a.metric(t, sent)-pingA, sb.metric(t, sent)-pingB
	reached := len(callee.LogValues("pinged")) - got
	t.Logf("before the failover, in 2.5 s: A sent %v pings, B %v; %d reached the callee", dA, dB, reached)
	if reached == 0 {
		t.Error("no ping of the active box reached the callee through its NAT mapping")
	}
	if dB != 0 {
		t.Errorf("the standby sent %v NAT pings", dB)
	}
	if got := sb.metric(t, "pinhole_natping_targets"); got != 0 {
		t.Errorf("the standby's pinger takes %v flows, want none", got)
	}
	if dA < 2*flows {
		t.Errorf("the active box sent %v NAT pings in two intervals, want at least %v (each flow once an interval)", dA, 2*flows)
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

	lr := load.Wait(t)
	stage("refreshing phones done")
	if lr.Failed != 0 || lr.Successful != len(users) {
		t.Errorf("refreshing phones: %d of %d went through every refresh, %d failed:\n%s", lr.Successful, len(users), lr.Failed, lr.Report())
	}
	gap, after := refreshGap(t, lr.LogValues("ok"))
	t.Logf("longest time without a successful refresh: %v (VIP moved %v after the kill); %d of %d phones refreshed after it",
		gap.Round(time.Millisecond), moved.Round(time.Millisecond), len(after), len(users))
	if gap > vipGapLimit {
		t.Errorf("no refresh succeeded for %v, want at most %v", gap, vipGapLimit)
	}
	if len(after) != len(users) {
		t.Errorf("%d of %d phones got no 200 after the failover", len(users)-len(after), len(users))
	}

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

	// The new active box pings every flow, from VIP:5060.
	pingB, got = sb.metric(t, sent), len(callee.LogValues("pinged"))
	time.Sleep(2500 * time.Millisecond)
	dB = sb.metric(t, sent) - pingB
	reached = len(callee.LogValues("pinged")) - got
	t.Logf("after the failover, in 2.5 s: B sent %v pings; %d reached the callee", dB, reached)
	if reached == 0 {
		t.Error("no ping of the new active box reached the callee through its old NAT mapping")
	}
	if dB < 2*flows {
		t.Errorf("the new active box sent %v NAT pings in two intervals, want at least %v", dB, 2*flows)
	}
	if got := sb.metric(t, "pinhole_natping_targets"); got != flows {
		t.Errorf("the new active box pings %v flows, want %v", got, flows)
	}

	// Every phone acknowledged is bound on the new active box.
	q := testutil.Sipp{
		Scenario: scenario(t, "register_query.xml"), Remote: vipAP, NS: seg, LocalIP: segAddr,
		Users: users, Calls: len(users), Rate: 200, Limit: 50,
		Vars:    map[string]string{"domain": domain},
		Timeout: 30 * time.Second, NoMessageTrace: true,
	}.Run(t)
	bound := map[string]bool{}
	for _, v := range q.LogValues("bound") {
		bound[strings.Fields(v)[0]] = true
	}
	var lost []string
	for _, u := range users {
		if !bound[u.Name] {
			lost = append(lost, u.Name)
		}
	}
	t.Logf("acknowledged bindings lost: %d of %d", len(lost), len(users))
	if len(lost) > 0 {
		t.Errorf("phones acknowledged before the failover are not bound on the new active box: %v", lost)
	}
	stage("queried")
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
