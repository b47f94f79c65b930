//go:build integration

package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/pinhole-sip/pinhole/internal/capture"
	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// captureID is the capture agent id the tests give pinhole.
const captureID = 2718

// callIDOf reads a message's Call-ID the way a reader of the wire would.
var callIDLine = regexp.MustCompile(`(?mi)^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$`)

func callIDOf(msg string) string {
	if m := callIDLine.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	return ""
}

// TestCaptureHEP runs pinhole with HEP capture on, the fast path on, and
// a collector (Kamailio's sipcapture, its own HEP decoder) on the device
// side of a veth pair. A sipp phone registers and refreshes over UDP —
// the first REGISTER answered by the slow path, the refreshes absorbed by
// the fast path's loop — and a client sends an OPTIONS over TLS. tshark
// records what crossed the wire. Every SIP datagram tshark saw, both
// directions, reaches the collector byte for byte, with the addresses and
// ports of the wire, protocol 17, type SIP, pinhole's capture id and its
// Call-ID as correlation id; an OPTIONS and its answer over TLS, and
// another over WSS, reach it in clear with protocol 6, as the client wrote
// and read them.
func TestCaptureHEP(t *testing.T) {
	edgeNS, devNS := testutil.NewNetNS(t), testutil.NewNetNS(t)
	subnet := testutil.HostSubnet(t)
	link := testutil.Veth(t, edgeNS, devNS, testutil.HostAddr(subnet, 1), testutil.HostAddr(subnet, 2))
	edgeIP, devIP := link.AddrA.Addr(), link.AddrB.Addr()
	sipAddr, tlsAddr, wssAddr := netip.AddrPortFrom(edgeIP, 5060), netip.AddrPortFrom(edgeIP, 5061), netip.AddrPortFrom(edgeIP, 5081)
	collector := testutil.StartHEPCollector(t, devNS, netip.AddrPortFrom(devIP, 9060))
	wire := testutil.StartTshark(t, devNS, link.NameB, "udp port 5060")

	cfg := testutil.DefaultConfig(t)
	cfg.Listen.UDP, cfg.Listen.TCP = []string{sipAddr.String()}, nil
	cfg.Listen.TLS, cfg.Listen.WSS = []string{tlsAddr.String()}, []string{wssAddr.String()}
	cfg.Domains = append(cfg.Domains, edgeIP.String())
	cfg.Metrics.Listen = "127.0.0.1:9062"
	cfg.FastPath.Enabled, cfg.FastPath.Loops = true, 1
	cfg.Capture.Enabled = true
	cfg.Capture.Collectors = []string{"udp:" + collector.Addr.String()}
	cfg.Capture.CaptureID = captureID
	cfg.Capture.Sample = 100
	cfg.Log.Level = "info"
	start := time.Now()
	testutil.StartPinhole(t, edgeNS, cfg)

	const refreshes = 6
	res := testutil.Sipp{
		NS: devNS, Scenario: scenario(t, "refresh.xml"), Remote: sipAddr.String(), LocalIP: devIP,
		Service: "hepphone",
		Vars:    map[string]string{"domain": domain, "expires": "600", "period_ms": "100", "refreshes": strconv.Itoa(refreshes)},
		Timeout: 20 * time.Second,
	}.Run(t)
	if res.ExitCode != testutil.SippExitOK {
		t.Fatalf("sipp registering and refreshing:\n%s", res.Report())
	}
	tlsReq, tlsAns, tlsLocal := optionsOverTLS(t, devNS, tlsAddr)
	wssReq, wssAns, wssLocal := optionsOverWSS(t, devNS, wssAddr)

	m := testutil.Metrics(t, edgeNS, cfg.Metrics.Listen)
	if m["pinhole_fastpath_absorbed_total"] < 1 {
		t.Fatalf("the fast path absorbed no refresh: nothing of its own to capture")
	}

	// What crossed the wire, each datagram once.
	type wireMsg struct {
		src, dst netip.AddrPort
		payload  string
	}
	var sent []wireMsg
	for _, row := range wire.Fields(t, "udp.port==5060", "ip.src", "udp.srcport", "ip.dst", "udp.dstport", "udp.payload") {
		if len(row) != 5 {
			t.Fatalf("tshark row %q", row)
		}
		p, err := hex.DecodeString(strings.ReplaceAll(row[4], ":", ""))
		if err != nil {
			t.Fatalf("tshark payload %q: %v", row[4], err)
		}
		sent = append(sent, wireMsg{addrPort(t, row[0], row[1]), addrPort(t, row[2], row[3]), string(p)})
	}
	// sipp's REGISTERs and pinhole's answers: at least one of each per
	// refresh and the first registration.
	if len(sent) < 2*(refreshes+1) {
		for _, w := range sent {
			t.Logf("%v → %v %q", w.src, w.dst, strings.SplitN(w.payload, "\r\n", 2)[0]+" "+contentCSeq(w.payload))
		}
		t.Fatalf("tshark saw %d SIP datagrams, want at least %d", len(sent), 2*(refreshes+1))
	}
	wantTLS := 4 // TLS and WSS, a request and its answer each
	var pkts []testutil.HEPPacket
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if pkts = collector.Packets(); len(pkts) >= len(sent)+wantTLS || time.Now().After(deadline) {
			break
		}
	}
	if len(pkts) != len(sent)+wantTLS {
		t.Fatalf("the collector decoded %d HEP packets, want %d (%d on the wire, %d over TLS and WSS); collector log:\n%s",
			len(pkts), len(sent)+wantTLS, len(sent), wantTLS, collector.Log())
	}
	byPayload := map[string][]testutil.HEPPacket{}
	for _, p := range pkts {
		if p.Version != 3 || p.Family != 2 || p.ProtoType != 1 || p.CaptureID != captureID {
			t.Errorf("HEP header chunks: version %d family %d type %d capture id %d; want 3, 2, 1, %d", p.Version, p.Family, p.ProtoType, p.CaptureID, captureID)
		}
		if p.Seconds < start.Unix()-1 || p.Seconds > time.Now().Unix()+1 {
			t.Errorf("HEP timestamp %d outside the test (%d–%d)", p.Seconds, start.Unix(), time.Now().Unix())
		}
		if want := callIDOf(p.Payload); p.CallID != want || want == "" {
			t.Errorf("correlation id %q, want the Call-ID %q of\n%s", p.CallID, want, p.Payload)
		}
		byPayload[p.Payload] = append(byPayload[p.Payload], p)
	}
	take := func(what string, payload string, src, dst netip.AddrPort, proto int) {
		t.Helper()
		ps := byPayload[payload]
		if len(ps) == 0 {
			t.Errorf("%s from %v to %v: no HEP packet carries it:\n%s", what, src, dst, payload)
			return
		}
		p := ps[0]
		byPayload[payload] = ps[1:]
		if p.Src != src || p.Dst != dst || p.Protocol != proto {
			t.Errorf("%s: HEP says %v → %v protocol %d, want %v → %v protocol %d", what, p.Src, p.Dst, p.Protocol, src, dst, proto)
		}
	}
	for i, w := range sent {
		take("datagram "+strconv.Itoa(i), w.payload, w.src, w.dst, 17)
	}
	take("OPTIONS over TLS", tlsReq, tlsLocal, tlsAddr, 6)
	take("answer over TLS", tlsAns, tlsAddr, tlsLocal, 6)
	take("OPTIONS over WSS", wssReq, wssLocal, wssAddr, 6)
	take("answer over WSS", wssAns, wssAddr, wssLocal, 6)
	if t.Failed() {
		t.Logf("collector log:\n%s", collector.Log())
	}
	m = testutil.Metrics(t, edgeNS, cfg.Metrics.Listen)
	col := `{collector="udp:` + collector.Addr.String() + `"}`
	if got := m["pinhole_capture_sent_total"+col]; int(got) != len(pkts) {
		t.Errorf("pinhole_capture_sent_total%s = %v, want %d", col, got, len(pkts))
	}
}

// optionsMessage is an OPTIONS to pinhole at addr from local.
func optionsMessage(transport string, addr, local netip.AddrPort) string {
	return fmt.Sprintf("OPTIONS sip:%s;transport=%s SIP/2.0\r\n"+
		"Via: SIP/2.0/%s %s;branch=z9hG4bK-hep-%s;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:%s@%s>;tag=hep1\r\nTo: <sip:%s>\r\n"+
		"Call-ID: hep-%s-%d@e2e\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		addr, strings.ToLower(transport), transport, local, transport, transport, domain, addr, transport, time.Now().UnixNano())
}

// optionsOverWSS sends one OPTIONS to pinhole over WebSocket in TLS from
// ns (RFC 7118: one message per frame) and returns it, the answer, and
// the client's address.
func optionsOverWSS(t *testing.T, ns *testutil.NetNS, addr netip.AddrPort) (req, ans string, local netip.AddrPort) {
	t.Helper()
	var raw net.Conn
	if err := ns.Do(func() (err error) {
		raw, err = net.DialTimeout("tcp", addr.String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) // pinhole's generated, self-signed certificate
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	local = raw.LocalAddr().(*net.TCPAddr).AddrPort()
	u, err := url.Parse("wss://" + addr.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	br, _, err := ws.Dialer{Protocols: []string{"sip"}}.Upgrade(c, u)
	if err != nil {
		t.Fatalf("WebSocket upgrade: %v", err)
	}
	var rd io.Reader = c
	if br != nil {
		rd = br
	}
	req = optionsMessage("WSS", addr, local)
	if err := wsutil.WriteClientText(c, []byte(req)); err != nil {
		t.Fatalf("OPTIONS over WSS: %v", err)
	}
	b, err := wsutil.ReadServerText(struct {
		io.Reader
		io.Writer
	}{rd, c})
	if err != nil {
		t.Fatalf("answer over WSS: %v", err)
	}
	ans = string(b)
	if !strings.HasPrefix(ans, "SIP/2.0 ") {
		t.Fatalf("answer over WSS:\n%s", ans)
	}
	return req, ans, local
}

// optionsOverTLS sends one OPTIONS to pinhole over TLS from ns and
// returns it, the answer as read, and the client's address.
func optionsOverTLS(t *testing.T, ns *testutil.NetNS, addr netip.AddrPort) (req, ans string, local netip.AddrPort) {
	t.Helper()
	var raw net.Conn
	if err := ns.Do(func() (err error) {
		raw, err = net.DialTimeout("tcp", addr.String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) // pinhole's generated, self-signed certificate
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	local = raw.LocalAddr().(*net.TCPAddr).AddrPort()
	req = optionsMessage("TLS", addr, local)
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatalf("OPTIONS over TLS: %v", err)
	}
	r := bufio.NewReader(c)
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("answer over TLS: %v (read %q)", err, b.String())
		}
		b.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	ans = b.String()
	if n := contentLength(ans); n > 0 {
		body := make([]byte, n)
		if _, err := r.Read(body); err != nil {
			t.Fatal(err)
		}
		ans += string(body)
	}
	if !strings.HasPrefix(ans, "SIP/2.0 ") {
		t.Fatalf("answer over TLS:\n%s", ans)
	}
	return req, ans, local
}

var contentLengthLine = regexp.MustCompile(`(?mi)^(?:content-length|l)[ \t]*:[ \t]*(\d+)`)

func contentLength(msg string) int {
	if m := contentLengthLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

func addrPort(t *testing.T, ip, port string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(net.JoinHostPort(ip, port))
	if err != nil {
		t.Fatalf("tshark address %s:%s: %v", ip, port, err)
	}
	return ap
}

var cseqLine = regexp.MustCompile(`(?mi)^cseq[ \t]*:[ \t]*([^\r\n]*)`)

func contentCSeq(msg string) string {
	if m := cseqLine.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	return ""
}

// TestCaptureHEPSamplesWholeCalls registers 40 sipp phones with
// capture.sample at 50 %: the collector receives exactly the calls whose
// Call-ID the sampling rule picks, each whole (its REGISTER and its 200),
// and nothing of the others.
func TestCaptureHEPSamplesWholeCalls(t *testing.T) {
	const n = 40
	ns := testutil.NewNetNS(t)
	collector := testutil.StartHEPCollector(t, ns, netip.MustParseAddrPort("127.0.0.1:9060"))
	cfg := testutil.DefaultConfig(t)
	cfg.Metrics.Listen = "127.0.0.1:9062"
	cfg.Capture.Enabled = true
	cfg.Capture.Collectors = []string{"udp:" + collector.Addr.String()}
	cfg.Capture.Sample = 50
	cfg.Log.Level = "info"
	testutil.StartPinhole(t, ns, cfg)
	users := make([]testutil.User, n)
	for i := range users {
		users[i] = testutil.User{Name: fmt.Sprintf("s%02d", i), Password: "-", Expires: 600}
	}
	res := testutil.Sipp{
		NS: ns, Scenario: scenario(t, "register.xml"), Remote: cfg.Listen.UDP[0], LocalIP: testutil.Loopback,
		Users: users, Calls: n, Rate: 100, Limit: 10,
		AuthURI: domain, Vars: map[string]string{"domain": domain},
		Timeout: 30 * time.Second,
	}.Run(t)
	if res.ExitCode != testutil.SippExitOK || res.Successful != n {
		t.Fatalf("registrations: want %d:\n%s", n, res.Report())
	}
	calls := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^Call-ID: (\S+)`).FindAllStringSubmatch(readFile(t, res.Dir+"/messages.log"), -1) {
		calls[m[1]] = true
	}
	if len(calls) != n {
		t.Fatalf("sipp's trace holds %d Call-IDs, want %d", len(calls), n)
	}
	want := map[string]bool{}
	for id := range calls {
		if capture.Sampled([]byte(id), cfg.Capture.SampleRate()) {
			want[id] = true
		}
	}
	if len(want) == 0 || len(want) == n {
		t.Fatalf("the rule picks %d of %d calls: the test cannot tell sampling from none or all", len(want), n)
	}
	var got map[string][]string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got = map[string][]string{}
		for _, p := range collector.Packets() {
			first, _, _ := strings.Cut(p.Payload, "\r\n")
			got[p.CallID] = append(got[p.CallID], first)
		}
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
	}
	for id := range want {
		msgs := strings.Join(got[id], " | ")
		if !strings.Contains(msgs, "REGISTER sip:") || !strings.Contains(msgs, "SIP/2.0 200 OK") {
			t.Errorf("sampled call %s: collector got %q, want its REGISTER and its 200", id, got[id])
		}
	}
	for id := range got {
		if !want[id] {
			t.Errorf("call %s not sampled, yet the collector got %q", id, got[id])
		}
	}
	m := testutil.Metrics(t, ns, cfg.Metrics.Listen)
	if out := m["pinhole_capture_sampled_out_total"]; out < float64(2*(n-len(want))) {
		t.Errorf("pinhole_capture_sampled_out_total = %v, want at least %d (a REGISTER and a 200 per call left out)", out, 2*(n-len(want)))
	}
}
