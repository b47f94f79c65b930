//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/promtext"
	"github.com/pinhole-sip/pinhole/internal/testutil"
	"github.com/pinhole-sip/pinhole/slowpath/media"
	"github.com/pinhole-sip/pinhole/slowpath/media/ng"
	"github.com/pinhole-sip/pinhole/slowpath/media/sdp"
)

// mediaNet is rtpengine in a namespace of its own with two links: one to
// a caller's namespace, one to a callee's. Media crosses both veth pairs.
// The namespaces have no other link, so nothing leaves the machine.
type mediaNet struct {
	rtp            *testutil.RTPEngine
	caller, callee *testutil.NetNS
	callerAddr     netip.Addr // 10.19.1.2
	calleeAddr     netip.Addr // 10.19.2.2
	client         *ng.Client
}

func startMediaNet(t testing.TB, cfg ng.Config) *mediaNet {
	t.Helper()
	relay := testutil.NewNetNS(t)
	m := &mediaNet{
		caller: testutil.NewNetNS(t), callee: testutil.NewNetNS(t),
		callerAddr: netip.MustParseAddr("10.19.1.2"), calleeAddr: netip.MustParseAddr("10.19.2.2"),
	}
	testutil.Veth(t, relay, m.caller, netip.MustParsePrefix("10.19.1.1/24"), netip.MustParsePrefix("10.19.1.2/24"))
	testutil.Veth(t, relay, m.callee, netip.MustParsePrefix("10.19.2.1/24"), netip.MustParsePrefix("10.19.2.2/24"))
	m.caller.AddRoute(t, netip.Prefix{}, netip.MustParseAddr("10.19.1.1"))
	m.callee.AddRoute(t, netip.Prefix{}, netip.MustParseAddr("10.19.2.1"))
	m.rtp = testutil.StartRTPEngine(t, relay, netip.MustParseAddr("10.19.1.1"))
	cfg.Instances = []ng.Instance{{Addr: m.rtp.NG, Weight: 1}}
	// The client's socket is made inside rtpengine's namespace, whose
	// loopback the ng port listens on; a socket keeps its namespace.
	if err := relay.Do(func() (err error) {
		m.client, err = ng.New(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.client.Close() })
	return m
}

func plainSDP(addr netip.Addr, port int) []byte {
	return []byte(fmt.Sprintf("v=0\r\no=phone 1 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\n"+
		"m=audio %[2]d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n", addr, port))
}

// browserSDP is a browser's body: DTLS-SRTP, ICE, AVPF, rtcp-mux. setup is
// actpass in an offer, active in an answer to rtpengine's passive offer.
func browserSDP(addr netip.Addr, port int, setup string) []byte {
	return []byte(fmt.Sprintf("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"+
		"m=audio %[2]d UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 %[1]s\r\na=rtcp:%[2]d IN IP4 %[1]s\r\n"+
		"a=candidate:1467250027 1 udp 2122260223 %[1]s %[2]d typ host generation 0\r\n"+
		"a=ice-ufrag:4ZcD\r\na=ice-pwd:2/1muCWoOi3uLifh0NuRHlFV\r\n"+
		"a=fingerprint:sha-256 46:E1:93:53:2A:1F:93:4F:40:22:0B:CF:1A:51:3C:1C:F7:7A:2C:D3:8E:33:5E:1B:2D:8E:16:D7:5B:49:59:B5\r\n"+
		"a=setup:%[3]s\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n", addr, port, setup))
}

// mediaTarget parses a rewritten body and returns where its audio goes.
func mediaTarget(t *testing.T, body []byte) (*sdp.Session, netip.AddrPort) {
	t.Helper()
	s, err := sdp.Parse(body)
	if err != nil {
		t.Fatalf("rtpengine's SDP does not parse: %v\n%s", err, body)
	}
	if len(s.Media) == 0 {
		t.Fatalf("rtpengine's SDP has no media:\n%s", body)
	}
	c, ok := s.ConnectionOf(s.Media[0])
	if !ok || !c.Addr.IsValid() {
		t.Fatalf("rtpengine's SDP has no c= address for its audio:\n%s", body)
	}
	return s, netip.AddrPortFrom(c.Addr, uint16(s.Media[0].Port))
}

// rtpPacket is an RTP header (RFC 3550 §5.1: V=2, PT 0) and 160 bytes of
// payload that name the sender and the sequence number.
func rtpPacket(ssrc uint32, seq uint16, who string) []byte {
	p := make([]byte, 12, 12+160)
	p[0], p[1] = 0x80, 0
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[4:], uint32(seq)*160)
	binary.BigEndian.PutUint32(p[8:], ssrc)
	payload := []byte(fmt.Sprintf("%s-%05d", who, seq))
	return append(p, append(payload, bytes.Repeat([]byte{0xff}, 160-len(payload))...)...)
}

// TestRTPEngineRelaysCall: offer and answer through a real rtpengine put
// its own address in both bodies, RTP sent by each side to the address it
// was given reaches the other side through rtpengine, query counts those
// packets, and delete ends the call.
func TestRTPEngineRelaysCall(t *testing.T) {
	m := startMediaNet(t, ng.Config{Timeout: 200 * time.Millisecond, Retries: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.client.Ping(ctx, m.rtp.NG); err != nil {
		t.Fatalf("ping: %v", err)
	}

	callerRTP := m.caller.ListenUDP(t, netip.AddrPortFrom(m.callerAddr, 0))
	calleeRTP := m.callee.ListenUDP(t, netip.AddrPortFrom(m.calleeAddr, 0))
	callerPort := callerRTP.LocalAddr().(*net.UDPAddr).Port
	calleePort := calleeRTP.LocalAddr().(*net.UDPAddr).Port

	d := media.Decision{Relay: true, Reason: media.Always}
	const callID, fromTag, toTag = "relay-1@e2e", "from-1", "to-1"
	offer, err := m.client.Offer(ctx, callID, fromTag, plainSDP(m.callerAddr, callerPort), d.OfferOptions(m.callerAddr))
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	offerSDP, toRelayFromCallee := mediaTarget(t, offer)
	answer, err := m.client.Answer(ctx, callID, fromTag, toTag, plainSDP(m.calleeAddr, calleePort), d.AnswerOptions(m.calleeAddr))
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	_, toRelayFromCaller := mediaTarget(t, answer)

	iface := m.rtp.Interface
	for _, c := range []struct {
		name string
		got  netip.AddrPort
		peer int
	}{{"offer", toRelayFromCallee, callerPort}, {"answer", toRelayFromCaller, calleePort}} {
		if c.got.Addr() != iface || c.got.Port() < 30000 || c.got.Port() > 30999 {
			t.Errorf("rewritten %s sends media to %s, want rtpengine's %s and a port of its range", c.name, c.got, iface)
		}
	}
	if o := offerSDP.Origin(); o.Address != iface.String() {
		t.Errorf("rewritten offer's o= names %s, want rtpengine's %s (replace origin)", o.Address, iface)
	}
	if toRelayFromCallee == toRelayFromCaller {
		t.Errorf("both sides were given the same relay port %s", toRelayFromCaller)
	}

	// RTP both ways, each side sending from the port its SDP named to the
	// port rtpengine gave it, each expecting the other's packets.
	const packets = 10
	errc := make(chan error, 2)
	exchange := func(conn *net.UDPConn, to netip.AddrPort, me, peer string, ssrc uint32) {
		var got int
		buf := make([]byte, 1500)
		for seq := uint16(1); seq <= packets; seq++ {
			if _, err := conn.WriteToUDPAddrPort(rtpPacket(ssrc, seq, me), to); err != nil {
				errc <- fmt.Errorf("%s sends RTP: %w", me, err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		deadline := time.Now().Add(3 * time.Second)
		for got < packets {
			_ = conn.SetReadDeadline(deadline)
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				errc <- fmt.Errorf("%s received %d of %d RTP packets from %s: %w", me, got, packets, peer, err)
				return
			}
			if n != 172 || !bytes.HasPrefix(buf[12:n], []byte(peer+"-")) {
				errc <- fmt.Errorf("%s received %d bytes that are not %s's RTP: %q", me, n, peer, buf[12:min(n, 30)])
				return
			}
			got++
		}
		errc <- nil
	}
	go exchange(callerRTP, toRelayFromCaller, "caller", "callee", 0x1111)
	go exchange(calleeRTP, toRelayFromCallee, "callee", "caller", 0x2222)
	for range 2 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}

	q, err := m.client.Query(ctx, callID)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if rtp, _ := q.Totals(); rtp.Packets < 2*packets || rtp.Bytes < 2*packets*172 {
		t.Errorf("query counts %+v RTP, want at least the %d packets of %d bytes both sides sent", rtp, 2*packets, 172)
	}

	if _, err := m.client.Delete(ctx, callID, fromTag, ""); err != nil {
		t.Fatalf("delete: %v", err)
	}
	var ce *ng.CommandError
	if _, err := m.client.Query(ctx, callID); !errors.As(err, &ce) {
		t.Errorf("query after delete: %v, want rtpengine to refuse an unknown call", err)
	}
}

// TestRTPEngineBridgesWebRTC: the options media.Decision gives make a real
// rtpengine turn a browser's DTLS-SRTP/ICE body into plain RTP/AVP for a
// phone and the phone's RTP/AVP into a browser's body, in both call
// directions.
func TestRTPEngineBridgesWebRTC(t *testing.T) {
	m := startMediaNet(t, ng.Config{Timeout: 200 * time.Millisecond, Retries: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	wantPlain := func(t *testing.T, what string, body []byte) {
		t.Helper()
		s, to := mediaTarget(t, body)
		p := s.Profile()
		if s.Media[0].Proto != "RTP/AVP" || p.WebRTC() || p.ICE || p.DTLS {
			t.Errorf("%s for the phone is not plain RTP/AVP (%+v):\n%s", what, p, body)
		}
		if to.Addr() != m.rtp.Interface {
			t.Errorf("%s for the phone sends media to %s, not rtpengine", what, to)
		}
	}
	// setups are the a=setup values rtpengine may use toward the browser:
	// with DTLS=passive it never takes the active role itself.
	wantBrowser := func(t *testing.T, what string, body []byte, setups ...string) {
		t.Helper()
		s, to := mediaTarget(t, body)
		p := s.Profile()
		if s.Media[0].Proto != "UDP/TLS/RTP/SAVPF" || !p.ICE || !p.DTLS {
			t.Errorf("%s for the browser is not DTLS-SRTP with ICE (%+v):\n%s", what, p, body)
		}
		cand, _ := s.Media[0].Attribute("candidate")
		if !strings.Contains(cand, " "+m.rtp.Interface.String()+" ") {
			t.Errorf("%s for the browser: candidate %q is not rtpengine's address %s", what, cand, m.rtp.Interface)
		}
		if got, _ := s.Media[0].Attribute("setup"); !slices.Contains(setups, got) {
			t.Errorf("%s for the browser: a=setup:%s, want one of %q", what, got, setups)
		}
		if _, ok := s.Media[0].Attribute("rtcp-mux"); !ok {
			t.Errorf("%s for the browser has no a=rtcp-mux, which browsers require", what)
		}
		if to.Addr() != m.rtp.Interface {
			t.Errorf("%s for the browser sends media to %s, not rtpengine", what, to)
		}
	}

	t.Run("phone calls browser", func(t *testing.T) {
		d := media.Decide(allRules, media.Side{Transport: "UDP", Source: m.callerAddr, SDP: mustParse(t, plainSDP(m.callerAddr, 4000))},
			media.Side{Transport: "WSS"})
		if !d.Relay || d.Reason != media.WebRTC || !d.AnswererWebRTC || d.OffererWebRTC {
			t.Fatalf("Decide = %+v, want a WebRTC relay toward the browser", d)
		}
		offer, err := m.client.Offer(ctx, "bridge-1@e2e", "f1", plainSDP(m.callerAddr, 4000), d.OfferOptions(m.callerAddr))
		if err != nil {
			t.Fatalf("offer: %v", err)
		}
		// ICE=force, UDP/TLS/RTP/SAVPF, DTLS=passive. rtpengine 10.5
		// still offers actpass; the browser, as answerer, then takes the
		// active role (RFC 8842: the answerer of an actpass offer picks its role).
		wantBrowser(t, "offer", offer, "actpass", "passive")
		answer, err := m.client.Answer(ctx, "bridge-1@e2e", "f1", "t1", browserSDP(m.calleeAddr, 5000, "active"), d.AnswerOptions(m.calleeAddr))
		if err != nil {
			t.Fatalf("answer: %v", err)
		}
		wantPlain(t, "answer", answer)
		if _, err := m.client.Delete(ctx, "bridge-1@e2e", "f1", ""); err != nil {
			t.Error(err)
		}
	})
	t.Run("browser calls phone", func(t *testing.T) {
		d := media.Decide(allRules, media.Side{Transport: "WSS", Source: m.callerAddr, SDP: mustParse(t, browserSDP(m.callerAddr, 4002, "actpass"))},
			media.Side{Transport: "UDP"})
		if !d.Relay || !d.OffererWebRTC || d.AnswererWebRTC {
			t.Fatalf("Decide = %+v, want a WebRTC relay from the browser", d)
		}
		offer, err := m.client.Offer(ctx, "bridge-2@e2e", "f2", browserSDP(m.callerAddr, 4002, "actpass"), d.OfferOptions(m.callerAddr))
		if err != nil {
			t.Fatalf("offer: %v", err)
		}
		wantPlain(t, "offer", offer)
		answer, err := m.client.Answer(ctx, "bridge-2@e2e", "f2", "t2", plainSDP(m.calleeAddr, 5002), d.AnswerOptions(m.calleeAddr))
		if err != nil {
			t.Fatalf("answer: %v", err)
		}
		wantBrowser(t, "answer", answer, "passive")
		if _, err := m.client.Delete(ctx, "bridge-2@e2e", "f2", ""); err != nil {
			t.Error(err)
		}
	})
}

var allRules = func() (r config.MediaRules) {
	r.NAT, r.WebRTC, r.PrivateSDP = true, true, true
	return r
}()

func mustParse(t *testing.T, body []byte) *sdp.Session {
	t.Helper()
	s, err := sdp.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// counter reads a sample from the process's metrics as /metrics shows
// them: the per-instance counters live in the client's own set.
func counter(name string) uint64 {
	var b bytes.Buffer
	metrics.WritePrometheus(&b, false)
	return uint64(promtext.Parse(b.String())[name])
}

// TestRTPEngineDown: a killed rtpengine costs one command its tries and
// is marked down; the commands after it fail at once without waiting; the
// health ping finds it back after a restart and calls work again.
func TestRTPEngineDown(t *testing.T) {
	const timeout, retries = 100 * time.Millisecond, 2
	m := startMediaNet(t, ng.Config{Timeout: timeout, Retries: retries, PingInterval: 200 * time.Millisecond})
	ctx := context.Background()
	body := plainSDP(m.callerAddr, 4000)
	if _, err := m.client.Offer(ctx, "before@e2e", "f", body, nil); err != nil {
		t.Fatalf("offer while rtpengine runs: %v", err)
	}

	m.rtp.Kill()
	timeouts := counter(`pinhole_media_ng_commands_total{command="offer",result="timeout"}`)
	unavailable := counter(`pinhole_media_ng_commands_total{command="offer",result="unavailable"}`)
	downs := counter(`pinhole_media_ng_instance_down_total{instance="` + m.rtp.NG.String() + `"}`)

	start := time.Now()
	_, err := m.client.Offer(ctx, "during@e2e", "f", body, nil)
	took := time.Since(start)
	// Unless the pinger saw the kill first and the offer was refused at once.
	switch {
	case errors.Is(err, ng.ErrTimeout):
		if took > (retries+1)*timeout+time.Second {
			t.Errorf("offer to a dead rtpengine took %s, want about %s", took, (retries+1)*timeout)
		}
		if n := counter(`pinhole_media_ng_commands_total{command="offer",result="timeout"}`) - timeouts; n != 1 {
			t.Errorf("offer timeouts counted: %d, want 1", n)
		}
	case errors.Is(err, ng.ErrUnavailable):
	default:
		t.Fatalf("offer to a dead rtpengine: %v, want ErrTimeout or ErrUnavailable", err)
	}
	if m.client.Instances()[0].Up {
		t.Fatal("instance still up after a command found no rtpengine")
	}
	if n := counter(`pinhole_media_ng_instance_down_total{instance="`+m.rtp.NG.String()+`"}`) - downs; n != 1 {
		t.Errorf("instance down changes counted: %d, want 1", n)
	}

	start = time.Now()
	if _, err := m.client.Offer(ctx, "after@e2e", "f", body, nil); !errors.Is(err, ng.ErrUnavailable) {
		t.Errorf("offer with the instance down: %v, want ErrUnavailable", err)
	}
	if _, err := m.client.Delete(ctx, "before@e2e", "f", ""); !errors.Is(err, ng.ErrUnavailable) {
		t.Errorf("delete of a call on the dead instance: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("commands for a down instance took %s; they should fail without sending", took)
	}
	if n := counter(`pinhole_media_ng_commands_total{command="offer",result="unavailable"}`) - unavailable; n < 1 {
		t.Errorf("unavailable offers counted: %d, want at least 1", n)
	}

	m.rtp.Start()
	deadline := time.Now().Add(5 * time.Second)
	for !m.client.Instances()[0].Up {
		if time.Now().After(deadline) {
			t.Fatal("the health ping did not mark the restarted rtpengine up within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := m.client.Offer(ctx, "back@e2e", "f", body, nil); err != nil {
		t.Errorf("offer after the restart: %v", err)
	}
}
