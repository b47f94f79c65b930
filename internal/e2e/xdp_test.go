//go:build integration

package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// The XDP tests run pinhole in a namespace of its own with its program
// attached natively to its ends of veth pairs; peers live in other
// namespaces. The metrics endpoint listens on the namespace's loopback.
const edgeMetrics = "127.0.0.1:9060"

// edge is pinhole in its namespace.
type edge struct {
	ns  *testutil.NetNS
	ph  *testutil.Pinhole
	sip netip.AddrPort
}

// peerLink joins a new namespace to edgeNS over 10.77.n.0/24 (edge .1,
// peer .2), with a pass-through XDP program on the peer's end so that
// native XDP_TX from pinhole's end is delivered.
func peerLink(t *testing.T, edgeNS *testutil.NetNS, n byte) (*testutil.NetNS, *testutil.Link) {
	t.Helper()
	ns := testutil.NewNetNS(t)
	l := testutil.Veth(t, edgeNS, ns,
		netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, n, 1}), 24),
		netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, n, 2}), 24))
	ns.AddRoute(t, netip.Prefix{}, l.AddrA.Addr())
	testutil.AttachXDPPass(t, ns, l.NameB)
	return ns, l
}

// startEdge starts pinhole in ns on listen with XDP native on ifaces.
func startEdge(t *testing.T, ns *testutil.NetNS, listen netip.AddrPort, ifaces []string, edit func(*testutil.Config)) *edge {
	t.Helper()
	cfg := testutil.DefaultConfig(t)
	cfg.Listen = config.Listen{UDP: []string{listen.String()}}
	cfg.Domains = []string{domain}
	cfg.Metrics.Listen = edgeMetrics
	cfg.Log.Level = "info"
	cfg.XDP.Interfaces, cfg.XDP.Mode = ifaces, "native"
	cfg.NATPing.Interval, cfg.NATPing.MaxMissed = 0, 0
	if edit != nil {
		edit(&cfg)
	}
	e := &edge{ns: ns, ph: testutil.StartPinhole(t, ns, cfg), sip: listen}
	for _, i := range ifaces {
		if !testutil.XDPAttached(t, ns, i) {
			t.Fatalf("pinhole is ready but no XDP program is attached to %s", i)
		}
	}
	return e
}

// verdicts returns the XDP counters.
func (e *edge) verdicts(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for k, v := range testutil.Metrics(t, e.ns, edgeMetrics) {
		if name, ok := strings.CutPrefix(k, `pinhole_xdp_verdicts_total{verdict="`); ok {
			out[strings.TrimSuffix(name, `"}`)] = v
		}
	}
	if len(out) == 0 {
		t.Fatal("pinhole exports no pinhole_xdp_verdicts_total")
	}
	return out
}

func (e *edge) metric(t *testing.T, name string) float64 {
	t.Helper()
	return testutil.Metrics(t, e.ns, edgeMetrics)[name]
}

// moved returns the verdicts that changed between two readings, except
// "pass": the kernel's own traffic on the link (IPv6 router solicitations,
// ARP) counts there.
func moved(before, after map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		if v != before[k] && k != "pass" {
			d[k] = v - before[k]
		}
	}
	return d
}

// phone is a SIP device written for these tests: a UDP socket inside a
// namespace that registers, answers OPTIONS with 200 unless muted, and
// hands every other datagram to whoever waits for one.
type phone struct {
	conn   *net.UDPConn
	server netip.AddrPort
	local  netip.AddrPort
	in     chan []byte
	callID string
	cseq   int

	mu    sync.Mutex
	mute  bool
	pings int
}

func newPhone(t *testing.T, ns *testutil.NetNS, ip netip.Addr, server netip.AddrPort) *phone {
	t.Helper()
	p := &phone{server: server, in: make(chan []byte, 64), callID: fmt.Sprintf("%x@e2e", randBytes(t, 8))}
	p.conn = ns.ListenUDP(t, netip.AddrPortFrom(ip, 0))
	p.local = p.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	go p.read()
	return p
}

func (p *phone) read() {
	buf := make([]byte, 4096)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		msg := append([]byte(nil), buf[:n]...)
		if bytes.HasPrefix(msg, []byte("OPTIONS ")) {
			p.mu.Lock()
			p.pings++
			mute := p.mute
			p.mu.Unlock()
			if m, err := sip.ParseMessage(msg); err == nil && !mute {
				res := sip.NewResponseFromRequest(m.(*sip.Request), 200, "OK", nil)
				_, _ = p.conn.WriteToUDPAddrPort([]byte(res.String()), from)
			}
			continue
		}
		select {
		case p.in <- msg:
		default:
		}
	}
}

func (p *phone) setMute(m bool) {
	p.mu.Lock()
	p.mute = m
	p.mu.Unlock()
}

func (p *phone) pingCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pings
}

// exchange sends payload to pinhole and returns the next datagram back.
func (p *phone) exchange(payload []byte, timeout time.Duration) ([]byte, error) {
	for {
		select {
		case <-p.in: // drop anything stale
			continue
		default:
		}
		break
	}
	if _, err := p.conn.WriteToUDPAddrPort(payload, p.server); err != nil {
		return nil, err
	}
	select {
	case m := <-p.in:
		return m, nil
	case <-time.After(timeout):
		return nil, errors.New("no answer")
	}
}

// register sends a REGISTER for user with a Contact at the phone's own
// (private) address, or without Contact when query is set, and returns the
// final response. It retransmits like a UAC over UDP (RFC 3261 §17.1.2).
func (p *phone) register(t *testing.T, user string, query bool) *sip.Response {
	t.Helper()
	p.cseq++
	var b strings.Builder
	fmt.Fprintf(&b, "REGISTER sip:%s SIP/2.0\r\n", domain)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK-%x;rport\r\n", p.local, randBytes(t, 6))
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:%s@%s>;tag=%x\r\n", user, domain, randBytes(t, 4))
	fmt.Fprintf(&b, "To: <sip:%s@%s>\r\n", user, domain)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d REGISTER\r\n", p.callID, p.cseq)
	if !query {
		fmt.Fprintf(&b, "Contact: <sip:%s@%s>\r\nExpires: 600\r\n", user, p.local)
	}
	b.WriteString("User-Agent: pinhole-e2e-phone\r\nContent-Length: 0\r\n\r\n")
	for try := 0; try < 4; try++ {
		m, err := p.exchange([]byte(b.String()), 500*time.Millisecond<<try)
		if err != nil {
			continue
		}
		msg, err := sip.ParseMessage(m)
		if err != nil {
			t.Fatalf("unparsable answer to REGISTER: %v\n%s", err, m)
		}
		if res, ok := msg.(*sip.Response); ok && res.StatusCode >= 200 {
			return res
		}
	}
	t.Fatalf("REGISTER for %s from %v: no final response", user, p.local)
	return nil
}

// contacts lists the Contact header values of a response.
func contacts(res *sip.Response) []string {
	var out []string
	for _, h := range res.GetHeaders("Contact") {
		out = append(out, h.Value())
	}
	return out
}

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestXDPKeepalives: the kernel answers a device's double-CRLF with one
// CRLF and a STUN Binding Request with the device's address, and neither
// reaches a socket in pinhole's namespace; a REGISTER still does.
func TestXDPKeepalives(t *testing.T) {
	edgeNS := testutil.NewNetNS(t)
	devNS, l := peerLink(t, edgeNS, 1)
	e := startEdge(t, edgeNS, netip.AddrPortFrom(l.AddrA.Addr(), 5060), []string{l.NameA}, nil)
	ph := newPhone(t, devNS, l.AddrB.Addr(), e.sip)

	before, udpBefore := e.verdicts(t), testutil.UDPInDatagrams(t, edgeNS)
	got, err := ph.exchange([]byte("\r\n\r\n"), 2*time.Second)
	if err != nil {
		t.Fatalf("double-CRLF: %v", err)
	}
	if string(got) != "\r\n" {
		t.Errorf("answer to double-CRLF = %q, want one CRLF (RFC 5626 §3.5.1)", got)
	}

	txid := randBytes(t, 12)
	req := binary.BigEndian.AppendUint16(nil, 0x0001) // Binding Request
	req = binary.BigEndian.AppendUint16(req, 0)
	req = binary.BigEndian.AppendUint32(req, 0x2112A442)
	req = append(req, txid...)
	got, err = ph.exchange(req, 2*time.Second)
	if err != nil {
		t.Fatalf("STUN Binding Request: %v (XDP verdicts moved: %v)", err, moved(before, e.verdicts(t)))
	}
	mapped, gotTxid, err := decodeBindingSuccess(got)
	if err != nil {
		t.Fatalf("STUN answer %x: %v", got, err)
	}
	if mapped != ph.local || !bytes.Equal(gotTxid, txid) {
		t.Errorf("STUN answer maps %v with transaction %x; want %v, %x", mapped, gotTxid, ph.local, txid)
	}

	if n := testutil.UDPInDatagrams(t, edgeNS) - udpBefore; n != 0 {
		t.Errorf("%d keepalive datagrams reached userspace in pinhole's namespace; XDP should have answered them", n)
	}
	want := map[string]float64{"crlf_answered": 1, "stun_answered": 1}
	if diff := cmp.Diff(want, moved(before, e.verdicts(t))); diff != "" {
		t.Errorf("XDP verdicts that moved (-want +got):\n%s", diff)
	}

	// The counter above would have seen userspace traffic: a REGISTER
	// passes the program and is answered by the slow path.
	if res := ph.register(t, "alice", false); res.StatusCode != 200 {
		t.Fatalf("REGISTER: %d %s", res.StatusCode, res.Reason)
	}
	if n := testutil.UDPInDatagrams(t, edgeNS) - udpBefore; n < 1 {
		t.Error("a REGISTER did not count as a datagram delivered to pinhole: the keepalive check above proves nothing")
	}
}

// decodeBindingSuccess reads a Binding Success Response as a STUN client
// does (RFC 5389 §7.3.1, §15.2): its XOR-MAPPED-ADDRESS and transaction ID.
func decodeBindingSuccess(msg []byte) (netip.AddrPort, []byte, error) {
	if len(msg) < 20 || binary.BigEndian.Uint16(msg) != 0x0101 {
		return netip.AddrPort{}, nil, errors.New("not a Binding Success Response")
	}
	if binary.BigEndian.Uint32(msg[4:]) != 0x2112A442 {
		return netip.AddrPort{}, nil, errors.New("no magic cookie")
	}
	if int(binary.BigEndian.Uint16(msg[2:]))+20 != len(msg) {
		return netip.AddrPort{}, nil, errors.New("length does not match the message")
	}
	for a := msg[20:]; len(a) >= 4; {
		typ, n := binary.BigEndian.Uint16(a), int(binary.BigEndian.Uint16(a[2:]))
		if 4+n > len(a) {
			return netip.AddrPort{}, nil, errors.New("attribute overruns the message")
		}
		if typ == 0x0020 && n >= 8 {
			v := a[4 : 4+n]
			port := binary.BigEndian.Uint16(v[2:]) ^ 0x2112
			x := append([]byte(nil), v[4:]...)
			key := msg[4:20] // cookie, then transaction ID (for IPv6)
			for i := range x {
				x[i] ^= key[i]
			}
			ip, ok := netip.AddrFromSlice(x)
			if !ok || (v[1] == 1) != ip.Is4() {
				return netip.AddrPort{}, nil, fmt.Errorf("bad address family %d with %d bytes", v[1], len(x))
			}
			return netip.AddrPortFrom(ip, port), msg[8:20], nil
		}
		a = a[4+(n+3)&^3:]
	}
	return netip.AddrPort{}, nil, errors.New("no XOR-MAPPED-ADDRESS")
}

// TestXDPNATPing: a device behind NAT answers pinhole's OPTIONS pings; the
// kernel swallows the answers (nothing reaches userspace) and the binding
// stays. Once the device goes silent, it is removed after max_missed pings.
func TestXDPNATPing(t *testing.T) {
	edgeNS := testutil.NewNetNS(t)
	nat := testutil.NATDevice(t, edgeNS)
	testutil.AttachXDPPass(t, nat.Router, nat.Uplink.NameB)
	const maxMissed = 2
	e := startEdge(t, edgeNS, netip.AddrPortFrom(nat.UpstreamAddr, 5060), []string{nat.Uplink.NameA}, func(c *testutil.Config) {
		c.NATPing = config.NATPing{Interval: time.Second, Method: "options", MaxMissed: maxMissed}
	})
	ph := newPhone(t, nat.Device, nat.DeviceAddr, e.sip)
	if res := ph.register(t, "alice", false); res.StatusCode != 200 {
		t.Fatalf("REGISTER: %d %s", res.StatusCode, res.Reason)
	}

	// Pings every second; over three seconds the device answers at least
	// two, and none of its answers reaches a socket.
	time.Sleep(1500 * time.Millisecond) // the first ping is on its way
	before, udpBefore := e.verdicts(t), testutil.UDPInDatagrams(t, edgeNS)
	time.Sleep(3 * time.Second)
	d := moved(before, e.verdicts(t))
	if d["natping_swallowed"] < 2 {
		t.Errorf("XDP swallowed %v ping answers in 3s, want at least 2 (verdicts moved: %v; device got %d pings)", d["natping_swallowed"], d, ph.pingCount())
	}
	if n := testutil.UDPInDatagrams(t, edgeNS) - udpBefore; n != 0 {
		t.Errorf("%d datagrams reached userspace while the device only answered pings", n)
	}
	if got := e.metric(t, "pinhole_natping_answered_total"); got < 2 {
		t.Errorf("pinhole_natping_answered_total = %v, want at least 2", got)
	}
	if c := contacts(ph.register(t, "alice", true)); len(c) != 1 {
		t.Fatalf("answering device has %d bindings, want 1", len(c))
	}

	ph.setMute(true)
	muted := time.Now()
	deadline := muted.Add(time.Duration(maxMissed+5) * time.Second)
	for {
		if len(contacts(ph.register(t, "alice", true))) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("silent device still registered %s after it stopped answering (%d pings so far)", time.Since(muted), ph.pingCount())
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("silent device removed %s after it stopped answering", time.Since(muted).Round(100*time.Millisecond))
	if got := e.metric(t, "pinhole_natping_removed_total"); got != 1 {
		t.Errorf("pinhole_natping_removed_total = %v, want 1", got)
	}
}

// TestXDPFlood: an attacker floods pinhole with requests from its own
// namespace; the kernel drops what is over the per-source rate while a
// device in another namespace keeps registering, every time. A source
// that stays over the limit is put on the blocklist.
func TestXDPFlood(t *testing.T) {
	edgeNS := testutil.NewNetNS(t)
	devNS, dl := peerLink(t, edgeNS, 1)
	atkNS, al := peerLink(t, edgeNS, 2)
	e := startEdge(t, edgeNS, netip.AddrPortFrom(dl.AddrA.Addr(), 5060), []string{dl.NameA, al.NameA}, func(c *testutil.Config) {
		c.XDP.Rate, c.XDP.Burst = 50, 100
		c.XDP.Ban.AuthFailures, c.XDP.Ban.RateLimitedFor, c.XDP.Ban.Duration = 0, time.Second, time.Minute
	})
	before := e.verdicts(t)

	// The attacker: as fast as one socket goes, for at most 5 s or
	// 1 500 000 datagrams.
	flooded := make(chan int, 1)
	go func() {
		var sent int
		defer func() { flooded <- sent }()
		var c *net.UDPConn
		if err := atkNS.Do(func() (err error) {
			c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(e.sip))
			return err
		}); err != nil {
			t.Errorf("attacker socket: %v", err)
			return
		}
		defer c.Close()
		msg := []byte("REGISTER sip:" + domain + " SIP/2.0\r\nVia: SIP/2.0/UDP 10.77.2.2:5060;branch=z9hG4bK-flood\r\n" +
			"From: <sip:x@" + domain + ">;tag=1\r\nTo: <sip:x@" + domain + ">\r\nCall-ID: flood\r\nCSeq: 1 REGISTER\r\n" +
			"Contact: <sip:x@10.77.2.2:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
		end := time.Now().Add(5 * time.Second)
		for sent < 1_500_000 && time.Now().Before(end) {
			if _, err := c.Write(msg); err == nil {
				sent++
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // the flood is on

	users := make([]testutil.User, 30)
	for i := range users {
		users[i] = testutil.User{Name: fmt.Sprintf("dev%02d", i), Expires: 600}
	}
	r := testutil.Sipp{
		Scenario: scenario(t, "register.xml"), Remote: e.sip.String(), NS: devNS, LocalIP: dl.AddrB.Addr(),
		Users: users, Calls: len(users), Rate: 10, Limit: 10,
		AuthURI: domain, Vars: map[string]string{"domain": domain},
		Timeout: 20 * time.Second, NoMessageTrace: true,
	}.Run(t)
	sent := <-flooded // the flood runs its course: the ban needs it going
	if r.ExitCode != testutil.SippExitOK || r.Successful != len(users) {
		t.Errorf("legitimate device during the flood: want all %d registrations to succeed:\n%s", len(users), r.Report())
	}
	d := moved(before, e.verdicts(t))
	t.Logf("attacker sent %d datagrams; XDP verdicts: %v", sent, d)
	// At 50/s with a burst of 100 the attacker gets at most ~100 + 50 × 5 s
	// through; everything else must die in the kernel.
	if dropped := d["ratelimited"] + d["blocklisted"]; dropped < float64(sent)*0.9 || d["ratelimited"] < 1000 {
		t.Errorf("ratelimited %v + blocklisted %v of %d flood datagrams", d["ratelimited"], d["blocklisted"], sent)
	}
	// Refused at every look (once a second) for a second, the attacker is
	// banned for the rest of the flood.
	if d["blocklisted"] == 0 {
		t.Errorf("the attacker was never blocklisted (verdicts %v)", d)
	}
	if got := e.metric(t, `pinhole_ban_added_total{reason="ratelimit"}`); got != 1 {
		t.Errorf(`pinhole_ban_added_total{reason="ratelimit"} = %v, want 1`, got)
	}
	if d["sip_passed"] > 500 {
		t.Errorf("sip_passed = %v: the flood reached userspace", d["sip_passed"])
	}
}

// TestXDPDetachedOnKill: the program is attached through a BPF link owned
// by the process, so a pinhole killed with SIGKILL leaves nothing behind
// that drops traffic.
func TestXDPDetachedOnKill(t *testing.T) {
	edgeNS := testutil.NewNetNS(t)
	_, l := peerLink(t, edgeNS, 1)
	e := startEdge(t, edgeNS, netip.AddrPortFrom(l.AddrA.Addr(), 5060), []string{l.NameA}, nil)
	e.ph.Kill()
	if testutil.XDPAttached(t, edgeNS, l.NameA) {
		t.Fatal("XDP program still attached after pinhole was killed")
	}
}
