package media

import (
	"net/netip"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/slowpath/media/ng"
	"github.com/pinhole-sip/pinhole/slowpath/media/sdp"
	"github.com/pinhole-sip/pinhole/slowpath/nat"
)

func body(t *testing.T, name string) *sdp.Session {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sdp.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDecide(t *testing.T) {
	var (
		public  = netip.MustParseAddr("203.0.113.5")
		private = netip.MustParseAddr("192.168.1.20")
		all     = config.MediaRules{NAT: true, WebRTC: true, PrivateSDP: true}
	)
	plainPublic := Side{Transport: "UDP", Source: public, SDP: body(t, "public.sdp")}
	plainNATed := Side{Transport: "UDP", NAT: nat.ViaMismatch, Source: public, SDP: body(t, "public.sdp")}
	privateSDP := Side{Transport: "UDP", Source: public, SDP: body(t, "private.sdp")}
	sameLAN := Side{Transport: "UDP", Source: private, SDP: body(t, "private.sdp")}
	tcpPrivate := Side{Transport: "TCP", NAT: nat.Stream, Source: public, SDP: body(t, "private.sdp")}
	tcpPublic := Side{Transport: "TLS", NAT: nat.Stream, Source: public, SDP: body(t, "public.sdp")}
	browser := Side{Transport: "WSS", NAT: nat.Stream, Source: public, SDP: body(t, "webrtc.sdp")}
	wsNoSDP := Side{Transport: "ws", NAT: nat.Stream, Source: public}
	webrtcOverUDP := Side{Transport: "UDP", Source: public, SDP: body(t, "webrtc.sdp")}
	sdes := Side{Transport: "UDP", Source: public, SDP: body(t, "sdes.sdp")}
	calleeUnknown := Side{Transport: "UDP", Source: public}

	for _, tc := range []struct {
		name              string
		rules             config.MediaRules
		offerer, answerer Side
		want              Reason
		offWebRTC, ansWeb bool
	}{
		{"two public phones", all, plainPublic, plainPublic, NoRelay, false, false},
		{"caller behind NAT", all, plainNATed, plainPublic, NAT, false, false},
		{"callee behind NAT", all, plainPublic, plainNATed, NAT, false, false},
		{"NAT rule off", config.MediaRules{WebRTC: true}, plainNATed, plainPublic, NoRelay, false, false},
		{"private SDP from a public source", all, privateSDP, calleeUnknown, PrivateSDP, false, false},
		{"private SDP rule off", config.MediaRules{NAT: true}, privateSDP, calleeUnknown, NoRelay, false, false},
		{"both on pinhole's LAN", all, sameLAN, sameLAN, NoRelay, false, false},
		{"TCP says nothing of NAT, its SDP does", all, tcpPrivate, plainPublic, PrivateSDP, false, false},
		{"TLS with a public SDP", all, tcpPublic, plainPublic, NoRelay, false, false},
		{"browser calls a phone", all, browser, plainPublic, WebRTC, true, false},
		{"phone calls a browser registered over WS", all, plainPublic, wsNoSDP, WebRTC, false, true},
		{"WebRTC SDP over UDP", all, webrtcOverUDP, plainPublic, WebRTC, true, false},
		{"SDES SRTP without AVPF is not WebRTC", all, sdes, plainPublic, NoRelay, false, false},
		{"webrtc rule off, browser's NAT says Stream", config.MediaRules{NAT: true}, browser, plainPublic, NoRelay, true, false},
		{"webrtc rule off, private_sdp sees 0.0.0.0", config.MediaRules{PrivateSDP: true}, browser, plainPublic, PrivateSDP, true, false},
		{"always", config.MediaRules{Always: true}, plainPublic, plainPublic, Always, false, false},
		{"no rules", config.MediaRules{}, plainNATed, browser, NoRelay, false, true},
		{"webrtc named before nat", all, plainNATed, browser, WebRTC, false, true},
	} {
		got := Decide(tc.rules, tc.offerer, tc.answerer)
		want := Decision{Relay: tc.want != NoRelay, Reason: tc.want, OffererWebRTC: tc.offWebRTC, AnswererWebRTC: tc.ansWeb}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}

func TestBridgeOptions(t *testing.T) {
	from := netip.MustParseAddr("203.0.113.5")
	replace := []string{"origin", "session-connection"}
	toBrowser := &ng.Options{Replace: replace, ReceivedFrom: from, TransportProtocol: "UDP/TLS/RTP/SAVPF", ICE: "force", DTLS: "passive", RTCPMux: []string{"offer", "require"}}
	toPhone := &ng.Options{Replace: replace, ReceivedFrom: from, TransportProtocol: "RTP/AVP", ICE: "remove", RTCPMux: []string{"demux"}}
	same := &ng.Options{Replace: replace, ReceivedFrom: from}
	browsers := &ng.Options{Replace: replace, ReceivedFrom: from, ICE: "force"}
	for _, tc := range []struct {
		name          string
		d             Decision
		offer, answer *ng.Options
	}{
		{"phone to phone", Decision{}, same, same},
		{"phone to browser", Decision{AnswererWebRTC: true}, toBrowser, toPhone},
		{"browser to phone", Decision{OffererWebRTC: true}, toPhone, toBrowser},
		{"browser to browser", Decision{OffererWebRTC: true, AnswererWebRTC: true}, browsers, browsers},
	} {
		cmpAddr := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
		if d := cmp.Diff(tc.offer, tc.d.OfferOptions(from), cmpAddr); d != "" {
			t.Errorf("%s: offer (-want +got):\n%s", tc.name, d)
		}
		if d := cmp.Diff(tc.answer, tc.d.AnswerOptions(from), cmpAddr); d != "" {
			t.Errorf("%s: answer (-want +got):\n%s", tc.name, d)
		}
	}
}

func TestClientConfig(t *testing.T) {
	cfg, err := config.Parse([]byte("media:\n  enabled: true\n  instances: [{address: \"127.0.0.1:2223\", weight: 2}, {address: \"[::1]:2224\"}]\n  timeout: 100ms\n  retries: 1\n  ping_interval: 1s\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ClientConfig(cfg.Media)
	if err != nil {
		t.Fatal(err)
	}
	want := ng.Config{
		Instances: []ng.Instance{{Addr: netip.MustParseAddrPort("127.0.0.1:2223"), Weight: 2}, {Addr: netip.MustParseAddrPort("[::1]:2224"), Weight: 1}},
		Timeout:   100e6, Retries: 1, PingInterval: 1e9,
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
