//go:build integration

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/testutil"
	"github.com/pinhole-sip/pinhole/slowpath/media/ng"
)

// relayedNet is pinhole, rtpengine and a plain callee (bob) in one
// namespace, core, and a caller (alice) behind a masquerading router:
//
//	alice (192.168.x.2) ── NAT router (10.200.0.2) ── core (10.200.0.1): pinhole :5060, rtpengine, bob :5070
//
// Nothing has a link out of these namespaces.
type relayedNet struct {
	core   *testutil.NetNS
	nat    *testutil.NAT
	rtp    *testutil.RTPEngine
	pin    *testutil.Pinhole
	sip    string     // pinhole's SIP address, 10.200.0.1:5060
	bob    *device    // registered in core
	client *ng.Client // the test's own ng client, for query
}

const relayedMetrics = "127.0.0.1:9090"

func startRelayedNet(t testing.TB, onDown string) *relayedNet {
	t.Helper()
	return startRelayedNetWith(t, func(c *testutil.Config) { c.Media.OnDown = onDown })
}

// startRelayedNetWith builds relayedNet with pinhole's configuration as
// edit leaves it (relaying calls behind NAT or with WebRTC by default).
func startRelayedNetWith(t testing.TB, edit func(*testutil.Config)) *relayedNet {
	t.Helper()
	return startRelayedNetOpts(t, relayedOpts{edit: edit, bob: true})
}

// relayedOpts says how startRelayedNetOpts builds relayedNet.
type relayedOpts struct {
	// edit changes pinhole's configuration (may be nil).
	edit func(*testutil.Config)
	// bob starts the registered callee; without, n.bob is nil.
	bob bool
	// bobPassword answers pinhole's challenge to bob's REGISTER, for a
	// pinhole with auth on.
	bobPassword string
	// bobArgs are added to bob's sipp command line (-rtp_echo).
	bobArgs []string
}

func startRelayedNetOpts(t testing.TB, o relayedOpts) *relayedNet {
	t.Helper()
	n := &relayedNet{core: testutil.NewNetNS(t)}
	n.nat = testutil.NATDevice(t, n.core)
	core := n.nat.UpstreamAddr
	n.rtp = testutil.StartRTPEngine(t, n.core, core)
	n.sip = netip.AddrPortFrom(core, 5060).String()

	cfg := testutil.DefaultConfig(t)
	cfg.Listen = config.Listen{UDP: []string{n.sip}}
	cfg.Metrics.Listen = relayedMetrics
	cfg.Media = config.Media{
		Enabled:   true,
		Instances: []config.MediaInstance{{Address: n.rtp.NG.String(), Weight: 1}},
		Timeout:   100 * time.Millisecond, Retries: 1,
		PingInterval: 200 * time.Millisecond,
		OnDown:       "503",
		Rules:        config.MediaRules{NAT: true, WebRTC: true},
	}
	if o.edit != nil {
		o.edit(&cfg)
	}
	n.pin = testutil.StartPinhole(t, n.core, cfg)
	if o.bob {
		bob := testutil.Sipp{
			Scenario:  scenario(t, "device_register.xml"),
			OutOfCall: scenario(t, "uas_media.xml"),
			Remote:    n.sip,
			NS:        n.core,
			LocalIP:   core, LocalPort: 5070,
			Service: "bob",
			Vars:    map[string]string{"domain": domain, "expires": "600", "hold_ms": "600000"},
			Timeout: 15 * time.Minute,
			// A benchmark's thousands of calls would make a large trace.
			NoMessageTrace: true,
			Args:           o.bobArgs,
		}
		if o.bobPassword != "" {
			bob.AuthUser, bob.AuthPassword, bob.AuthURI = "bob", o.bobPassword, domain
		}
		p := bob.Start(t)
		if !p.WaitLog("registered: bob", registerWait) {
			t.Fatalf("bob did not register within %s", registerWait)
		}
		n.bob = &device{SippProcess: p, User: "bob", Addr: netip.AddrPortFrom(core, 5070)}
		t.Cleanup(n.bob.Stop)
	}
	if err := n.core.Do(func() (err error) {
		n.client, err = ng.New(ng.Config{Instances: []ng.Instance{{Addr: n.rtp.NG, Weight: 1}}, Timeout: 200 * time.Millisecond, Retries: 2})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.client.Close() })
	return n
}

// call starts alice's call to bob from behind the NAT, talking talk long.
func (n *relayedNet) call(t *testing.T, talk time.Duration) *testutil.SippProcess {
	t.Helper()
	return n.callWith(t, "uac_media.xml", talk)
}

func (n *relayedNet) callWith(t *testing.T, scen string, talk time.Duration) *testutil.SippProcess {
	t.Helper()
	return testutil.Sipp{
		Scenario: scenario(t, scen),
		Remote:   n.sip,
		NS:       n.nat.Device,
		LocalIP:  n.nat.DeviceAddr,
		Service:  "bob",
		Vars:     map[string]string{"domain": domain, "from_user": "alice", "talk_ms": fmt.Sprint(talk.Milliseconds())},
		Timeout:  15 * time.Second,
	}.Start(t)
}

func (n *relayedNet) metric(t testing.TB, name string) float64 {
	t.Helper()
	return testutil.Metrics(t, n.core, relayedMetrics)[name]
}

// legPackets sums the RTP packets rtpengine received from each tag (each
// leg of the call), from a query reply: tags → medias → streams → stats.
func legPackets(q ng.Reply) map[string]int64 {
	out := map[string]int64{}
	for tag, v := range q.Dict("tags") {
		leg, _ := v.(map[string]any)
		for _, m := range ng.Reply(leg).List("medias") {
			md, _ := m.(map[string]any)
			for _, s := range ng.Reply(md).List("streams") {
				sd, _ := s.(map[string]any)
				out[tag] += ng.Reply(sd).Dict("stats").Int("packets")
			}
		}
	}
	return out
}

func mustAddrPort(t *testing.T, what, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatalf("%s %q: %v", what, s, err)
	}
	return ap
}

// TestMediaRelayedCallBehindNAT: alice behind a masquerading NAT calls bob
// through pinhole with media.rules.nat on. The offer bob receives and the
// answer alice receives both send media to rtpengine; RTP that each side
// sends there is counted by rtpengine on both legs, and bob's reaches
// alice back through her NAT; alice's BYE deletes the call.
func TestMediaRelayedCallBehindNAT(t *testing.T) {
	n := startRelayedNet(t, "503")
	alice := n.call(t, 1500*time.Millisecond)
	if !alice.WaitLog("answer_media:", 8*time.Second) {
		t.Fatalf("alice's call was not answered:\n%s", alice.Wait(t).Report())
	}
	callID := alice.LogValues("answered")[0]
	toRelayFromAlice := mustAddrPort(t, "answer alice got", alice.LogValues("answer_media")[0])
	offers := n.bob.LogValues("offer_media")
	if len(offers) != 1 {
		t.Fatalf("bob logged offers %q, want one", offers)
	}
	toRelayFromBob := mustAddrPort(t, "offer bob got", offers[0])
	iface := n.rtp.Interface
	for what, got := range map[string]netip.AddrPort{"answer to alice": toRelayFromAlice, "offer to bob": toRelayFromBob} {
		if got.Addr() != iface || got.Port() < 30000 || got.Port() > 30999 {
			t.Errorf("%s sends media to %s, want rtpengine's %s and a port of its range", what, got, iface)
		}
	}

	// RTP from both sides to the addresses their SDP named.
	aliceRTP := n.nat.Device.ListenUDP(t, netip.AddrPortFrom(n.nat.DeviceAddr, 0))
	bobRTP := n.core.ListenUDP(t, netip.AddrPortFrom(iface, 0))
	const packets = 10
	for seq := uint16(1); seq <= packets; seq++ {
		if _, err := aliceRTP.WriteToUDPAddrPort(rtpPacket(0x1111, seq, "alice"), toRelayFromAlice); err != nil {
			t.Fatal(err)
		}
		if _, err := bobRTP.WriteToUDPAddrPort(rtpPacket(0x2222, seq, "bob"), toRelayFromBob); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// rtpengine latched alice's translated source from her packets, so
	// bob's reach her back through the NAT.
	_ = aliceRTP.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	if k, _, err := aliceRTP.ReadFromUDPAddrPort(buf); err != nil || !strings.HasPrefix(string(buf[12:k]), "bob-") {
		t.Errorf("alice got no RTP of bob's through rtpengine and her NAT: %v", err)
	}

	requireTwoLegs(t, n, callID, packets, "alice's and bob's")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	r := alice.Wait(t)
	if r.ExitCode != testutil.SippExitOK || len(r.LogValues("hangup")) != 1 {
		t.Fatalf("alice's call did not end with her BYE:\n%s", r.Report())
	}
	var ce *ng.CommandError
	if _, err := n.client.Query(ctx, callID); err == nil || !errors.As(err, &ce) {
		t.Errorf("query after the BYE: %v, want rtpengine to have deleted the call", err)
	}
	if got := n.metric(t, `pinhole_media_calls_relayed_total{reason="nat"}`); got != 1 {
		t.Errorf("pinhole_media_calls_relayed_total{reason=\"nat\"} = %v, want 1", got)
	}
}

// TestMediaRelayDown: with rtpengine killed a call that needs it is refused
// with 503 within a second, counted; once rtpengine is back and answers
// pinhole's ping, calls are relayed again.
func TestMediaRelayDown(t *testing.T) {
	n := startRelayedNet(t, "503")
	n.rtp.Kill()
	start := time.Now()
	r := n.call(t, 0).Wait(t)
	if codes := r.LogValues("code"); len(codes) != 1 || codes[0] != "503" {
		t.Fatalf("call with rtpengine down: codes %v, want 503:\n%s", codes, r.Report())
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the 503 took %s", d)
	}
	if got := n.metric(t, `pinhole_media_refused_total{why="down"}`); got != 1 {
		t.Errorf(`pinhole_media_refused_total{why="down"} = %v, want 1`, got)
	}

	n.rtp.Start()
	// The pinger (200 ms) finds it back.
	deadline := time.Now().Add(5 * time.Second)
	for n.metric(t, `pinhole_media_ng_instance_up{instance="`+n.rtp.NG.String()+`"}`) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("pinhole did not find rtpengine back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	alice := n.call(t, 0)
	if !alice.WaitLog("answer_media:", 8*time.Second) {
		t.Fatalf("call after rtpengine came back was not answered:\n%s", alice.Wait(t).Report())
	}
	if got := mustAddrPort(t, "answer", alice.LogValues("answer_media")[0]); got.Addr() != n.rtp.Interface {
		t.Errorf("after rtpengine came back alice's answer sends media to %s, not rtpengine", got)
	}
	alice.Wait(t)
}

// TestMediaRelayDownProceed: with media.on_down: proceed a call goes
// through unrelayed when rtpengine is down: bob gets alice's own SDP.
func TestMediaRelayDownProceed(t *testing.T) {
	n := startRelayedNet(t, "proceed")
	n.rtp.Kill()
	alice := n.call(t, 0)
	r := alice.Wait(t)
	if r.ExitCode != testutil.SippExitOK || len(r.LogValues("answered")) != 1 {
		t.Fatalf("call with rtpengine down and on_down proceed failed:\n%s", r.Report())
	}
	offers := n.bob.LogValues("offer_media")
	if len(offers) != 1 || mustAddrPort(t, "offer", offers[0]).Addr() != n.nat.DeviceAddr {
		t.Errorf("bob got offers %q, want alice's own address %s", offers, n.nat.DeviceAddr)
	}
	if got := n.metric(t, `pinhole_media_unrelayed_total{why="down"}`); got != 1 {
		t.Errorf(`pinhole_media_unrelayed_total{why="down"} = %v, want 1`, got)
	}
}

// TestMediaLateOfferBehindNAT: alice behind NAT calls with an INVITE
// without SDP. bob's offer in the 200 reaches alice pointing at rtpengine,
// her answer in the ACK reaches bob pointing at rtpengine too, and her BYE
// deletes the call in rtpengine.
func TestMediaLateOfferBehindNAT(t *testing.T) {
	n := startRelayedNet(t, "503")
	alice := n.callWith(t, "uac_media_late.xml", 500*time.Millisecond)
	if !alice.WaitLog("answer_media:", 8*time.Second) {
		t.Fatalf("alice's call was not answered:\n%s", alice.Wait(t).Report())
	}
	callID := alice.LogValues("answered")[0]
	if !n.bob.WaitLog("ack_media:", 5*time.Second) {
		t.Fatal("bob logged no ACK")
	}
	iface := n.rtp.Interface
	for what, got := range map[string]string{
		"offer in the 200 to alice": alice.LogValues("answer_media")[0],
		"answer in the ACK to bob":  n.bob.LogValues("ack_media")[0],
	} {
		if ap := mustAddrPort(t, what, got); ap.Addr() != iface {
			t.Errorf("%s sends media to %s, want rtpengine's %s", what, ap, iface)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.client.Query(ctx, callID); err != nil {
		t.Errorf("query during the call: %v", err)
	}
	if r := alice.Wait(t); r.ExitCode != testutil.SippExitOK {
		t.Fatalf("alice's call failed:\n%s", r.Report())
	}
	var ce *ng.CommandError
	if _, err := n.client.Query(ctx, callID); !errors.As(err, &ce) {
		t.Errorf("query after the BYE: %v, want rtpengine to have deleted the call", err)
	}
}

// TestMediaRelayedFarmFailover: alice behind NAT calls the farm through
// the dispatcher; the first node (by priority) answers 503, the call
// fails over to the second, which answers and echoes RTP (sipp
// -rtp_echo). The relay is kept across the failover: rtpengine got one
// offer and one answer for the Call-ID (the second node's), both nodes
// were offered the same body pointing at rtpengine, alice's answer points
// there too, and media flows through it after the failover: rtpengine
// counts alice's RTP and the node's echo, which reaches alice back
// through her NAT. Her BYE deletes the call.
func TestMediaRelayedFarmFailover(t *testing.T) {
	var nodes [2]netip.AddrPort
	n := startRelayedNetOpts(t, relayedOpts{edit: func(c *testutil.Config) {
		core := netip.MustParseAddr(strings.Split(c.Listen.UDP[0], ":")[0])
		nodes = [2]netip.AddrPort{netip.AddrPortFrom(core, 5081), netip.AddrPortFrom(core, 5082)}
		c.Dispatch.Sets = []config.DispatchSet{{Name: "fs", Algorithm: "round_robin", Destinations: []config.DispatchDestination{
			// Lower priority first: the failing node is always tried first.
			{URI: "sip:" + nodes[0].String(), Priority: 0},
			{URI: "sip:" + nodes[1].String(), Priority: 1},
		}}}
		c.Dispatch.Rules = []config.DispatchRule{{Set: "fs", Domains: []string{farmDomain}}}
		c.Dispatch.Probe.Interval = 0
		c.Dispatch.Failover.DownOn503 = true
		c.Dispatch.Failover.Timeout = time.Second
	}})
	node := func(i int, scen string, args ...string) *testutil.SippProcess {
		return testutil.Sipp{
			Scenario: scenario(t, scen), NS: n.core,
			LocalIP: nodes[i].Addr(), LocalPort: int(nodes[i].Port()),
			Service: "fs", Timeout: 30 * time.Second, Args: args,
		}.Start(t)
	}
	down := node(0, "uas_503.xml")
	up := node(1, "uas_media.xml", "-rtp_echo", "-mp", "6200")

	alice := testutil.Sipp{
		Scenario: scenario(t, "uac_media.xml"),
		Remote:   n.sip,
		NS:       n.nat.Device,
		LocalIP:  n.nat.DeviceAddr,
		Service:  "conf",
		Vars:     map[string]string{"domain": farmDomain, "from_user": "alice", "talk_ms": "2500"},
		Timeout:  15 * time.Second,
	}.Start(t)
	if !alice.WaitLog("answer_media:", 8*time.Second) {
		t.Fatalf("alice's call to the farm was not answered:\n%s", alice.Wait(t).Report())
	}
	callID := alice.LogValues("answered")[0]
	iface := n.rtp.Interface
	toRelay := mustAddrPort(t, "answer alice got", alice.LogValues("answer_media")[0])
	if toRelay.Addr() != iface {
		t.Errorf("alice's answer sends media to %s, want rtpengine's %s", toRelay, iface)
	}
	downOffers, upOffers := down.LogValues("offer_media"), up.LogValues("offer_media")
	if len(downOffers) != 1 || len(upOffers) != 1 {
		down.Stop()
		t.Fatalf("offers at the nodes: first %q, second %q; want one each (the first answered 503); the first:\n%s",
			downOffers, upOffers, down.Wait(t).Report())
	}
	if downOffers[0] != upOffers[0] || mustAddrPort(t, "offer", upOffers[0]).Addr() != iface {
		t.Errorf("offers at the nodes: first %s, second %s; want the same, at rtpengine %s", downOffers[0], upOffers[0], iface)
	}

	// Media after the failover: alice's RTP through rtpengine to the
	// second node, echoed back through rtpengine and her NAT.
	sock := n.nat.Device.ListenUDP(t, netip.AddrPortFrom(n.nat.DeviceAddr, 0))
	const packets = 50
	echoed := make(chan int, 1)
	go func() {
		got, buf := 0, make([]byte, 1500)
		_ = sock.SetReadDeadline(time.Now().Add(packets*20*time.Millisecond + 2*time.Second))
		for got < packets {
			k, _, err := sock.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if k > 12 && strings.HasPrefix(string(buf[12:k]), "alice-") {
				got++
			}
		}
		echoed <- got
	}()
	for seq := uint16(1); seq <= packets; seq++ {
		if _, err := sock.WriteToUDPAddrPort(rtpPacket(0x1111, seq, "alice"), toRelay); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	const minPackets = packets / 2
	if got := <-echoed; got < minPackets {
		t.Errorf("alice got %d of her %d packets back from the second node through rtpengine, want at least %d", got, packets, minPackets)
	}

	legs := requireTwoLegs(t, n, callID, minPackets, "alice's and the second node's only")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// One call at rtpengine: one offer (kept across the failover) and one
	// answer, the second node's; the 503 carried no SDP.
	commands := map[string]int{}
	for _, l := range strings.Split(n.rtp.Log(), "\n") {
		if cmd, ok := strings.CutPrefix(ngCommandIn(l, callID), "Received command '"); ok {
			cmd, _, _ = strings.Cut(cmd, "'")
			commands[cmd]++
		}
	}
	t.Logf("rtpengine counted RTP packets per leg %v and received commands %v", legs, commands)
	if commands["offer"] != 1 || commands["answer"] != 1 {
		t.Errorf("rtpengine received commands %v for %s, want one offer and one answer", commands, callID)
	}
	for _, m := range []struct {
		name string
		want float64
	}{
		{`pinhole_media_steps_total{step="offer",result="ok"}`, 1},
		{`pinhole_media_steps_total{step="answer",result="ok"}`, 1},
		{`pinhole_dispatch_failovers_total`, 1},
	} {
		if got := n.metric(t, m.name); got != m.want {
			t.Errorf("%s = %v, want %v", m.name, got, m.want)
		}
	}

	if r := alice.Wait(t); r.ExitCode != testutil.SippExitOK || len(r.LogValues("hangup")) != 1 {
		t.Fatalf("alice's call did not end with her BYE:\n%s", r.Report())
	}
	var ce *ng.CommandError
	if _, err := n.client.Query(ctx, callID); !errors.As(err, &ce) {
		t.Errorf("query after the BYE: %v, want rtpengine to have deleted the call", err)
	}
}

// ngCommandIn returns the part of an rtpengine log line from "Received
// command" on when the line is about call callID (rtpengine prefixes a
// call's lines with "[CALL-ID" ...), and "" otherwise.
func ngCommandIn(line, callID string) string {
	if !strings.Contains(line, "["+callID) {
		return ""
	}
	if i := strings.Index(line, "Received command '"); i >= 0 {
		return line[i:]
	}
	return ""
}

// requireTwoLegs asks rtpengine for callID: it must know exactly two legs
// (named by want, for the message), each with at least min RTP packets.
// It returns the packets per leg.
func requireTwoLegs(t *testing.T, n *relayedNet, callID string, min int64, want string) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := n.client.Query(ctx, callID)
	if err != nil {
		t.Fatalf("query %s: %v", callID, err)
	}
	legs := legPackets(q)
	if len(legs) != 2 {
		t.Errorf("rtpengine knows legs %v, want %s", legs, want)
	}
	for tag, got := range legs {
		if got < min {
			t.Errorf("leg %s: rtpengine counted %d RTP packets, want at least %d", tag, got, min)
		}
	}
	return legs
}
