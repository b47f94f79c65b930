package proxy

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
	"github.com/pinhole-sip/pinhole/slowpath/media/ng"
)

// relayCmd is one command the fake relay received.
type relayCmd struct {
	Command, FromTag, ToTag string
	SDP                     string // the c= line of the SDP it was given
}

// fakeRelay is rtpengine as the proxy sees it: it records commands and
// answers an offer or answer with the SDP given, its c= line replaced by
// its own address, as rtpengine does with replace session-connection.
type fakeRelay struct {
	mu   sync.Mutex
	cmds []relayCmd
	opts []*ng.Options // of each offer and answer, in order
	err  error         // every command fails with it when set
	seen chan string
}

const relayAddr = "203.0.113.99"

func newFakeRelay() *fakeRelay { return &fakeRelay{seen: make(chan string, 32)} }

func (f *fakeRelay) record(cmd, callID, from, to string, body []byte) error {
	f.mu.Lock()
	f.cmds = append(f.cmds, relayCmd{Command: cmd, FromTag: from, ToTag: to, SDP: cLine(body)})
	err := f.err
	f.mu.Unlock()
	f.seen <- cmd
	return err
}

func rewrite(body []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(body), "\r\n") {
		if strings.HasPrefix(l, "c=") {
			l = "c=IN IP4 " + relayAddr
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\r\n"))
}

func (f *fakeRelay) Offer(_ context.Context, callID, fromTag string, body []byte, o *ng.Options) ([]byte, error) {
	to, _ := o.Extra["to-tag"].(string)
	f.keep(o)
	if err := f.record("offer", callID, fromTag, to, body); err != nil {
		return nil, err
	}
	return rewrite(body), nil
}

func (f *fakeRelay) Answer(_ context.Context, callID, fromTag, toTag string, body []byte, o *ng.Options) ([]byte, error) {
	f.keep(o)
	if err := f.record("answer", callID, fromTag, toTag, body); err != nil {
		return nil, err
	}
	return rewrite(body), nil
}

func (f *fakeRelay) Delete(_ context.Context, callID, fromTag, toTag string) (ng.Reply, error) {
	return ng.Reply{"result": "ok"}, f.record("delete", callID, fromTag, toTag, nil)
}

func (f *fakeRelay) keep(o *ng.Options) {
	f.mu.Lock()
	f.opts = append(f.opts, o)
	f.mu.Unlock()
}

func (f *fakeRelay) fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *fakeRelay) commands() []relayCmd {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]relayCmd(nil), f.cmds...)
}

// waitFor waits until the relay got cmd.
func (f *fakeRelay) waitFor(t *testing.T, cmd string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case c := <-f.seen:
			if c == cmd {
				return
			}
		case <-timeout:
			t.Fatalf("relay got no %s; got %+v", cmd, f.commands())
		}
	}
}

func cLine(body []byte) string {
	for _, l := range strings.Split(string(body), "\r\n") {
		if strings.HasPrefix(l, "c=") {
			return l
		}
	}
	return ""
}

func readSDP(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/sdp/" + name)
	if err != nil {
		t.Fatal(err)
	}
	// Files keep LF endings for reading; SDP lines end in CRLF (RFC 8866 §5).
	return []byte(strings.ReplaceAll(strings.TrimRight(string(b), "\n"), "\n", "\r\n") + "\r\n")
}

func withSDP(m sip.Message, body []byte) {
	m.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	m.SetBody(body)
}

// answerSDP rings, then answers with the callee's SDP; a re-INVITE keeps
// the dialog's tag.
func answerSDP(d *device, req *sip.Request, tx sip.ServerTransaction) {
	if tag, ok := req.To().Params.Get("tag"); ok {
		d.mu.Lock()
		d.tag = tag
		d.mu.Unlock()
	} else {
		d.respond(req, tx, 180, "Ringing")
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	d.mu.Lock()
	res.To().Params.Add("tag", d.tag)
	d.mu.Unlock()
	res.AppendHeader(&sip.ContactHeader{Address: d.contact})
	own := "callee.sdp"
	if d.name == "alice" {
		own = "caller.sdp"
	}
	withSDP(res, readSDP(d.t, own))
	if err := tx.Respond(res); err != nil {
		d.t.Logf("%s: respond 200: %v", d.name, err)
	}
}

// mediaCall is a caller behind NAT calling a callee registered behind NAT,
// through a proxy that relays NAT'd calls' media through a fake relay.
type mediaCall struct {
	tp         *testProxy
	relay      *fakeRelay
	alice, bob *device
}

func newMediaCall(t *testing.T, bobBehaves func(*device, *sip.Request, sip.ServerTransaction), mutate func(*Media)) *mediaCall {
	t.Helper()
	m := &mediaCall{relay: newFakeRelay()}
	mc := &Media{Relay: m.relay, Rules: config.MediaRules{NAT: true, WebRTC: true}}
	if mutate != nil {
		mutate(mc)
	}
	m.tp = startProxy(t, func(c *Config) {
		c.Media = mc
		c.InviteTimeout = 700 * time.Millisecond
	})
	// Both claim private addresses they are not at: behind NAT.
	m.alice = newDevice(t, "alice", "sip:alice@192.168.1.20:5060", answerSDP)
	m.bob = newDevice(t, "bob", "sip:bob@10.0.0.7:5060", bobBehaves)
	m.tp.loc.add("bob@example.com", m.bob.binding(m.tp, 0))
	return m
}

// invite sends alice's INVITE with her SDP.
func (m *mediaCall) invite(t *testing.T, body []byte) (*sip.Request, sip.ClientTransaction) {
	t.Helper()
	var ct sip.Header = sip.NewHeader("Content-Type", "application/sdp")
	req, tx := m.alice.inviteBody(m.tp, "sip:bob@example.com", body, ct)
	return req, tx
}

// inviteBody is invite with a body.
func (d *device) inviteBody(tp *testProxy, to string, body []byte, hdrs ...sip.Header) (*sip.Request, sip.ClientTransaction) {
	d.t.Helper()
	var ruri sip.Uri
	if err := sip.ParseUri(to, &ruri); err != nil {
		d.t.Fatal(err)
	}
	req := sip.NewRequest(sip.INVITE, ruri)
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: d.name, Host: "example.com"}, Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(8)}}})
	req.AppendHeader(&sip.ToHeader{Address: ruri})
	req.AppendHeader(&sip.ContactHeader{Address: d.contact})
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	req.SetBody(body)
	req.SetDestination(tp.udp.String())
	tx, err := d.cli.TransactionRequest(context.Background(), req)
	if err != nil {
		d.t.Fatalf("%s: send INVITE: %v", d.name, err)
	}
	d.t.Cleanup(tx.Terminate)
	return req, tx
}

// answered sets up a relayed call and checks offer and answer: the callee
// sees the relay's SDP, and so does the caller.
func (m *mediaCall) answered(t *testing.T) (*sip.Request, *sip.Response) {
	t.Helper()
	inv, tx := m.invite(t, readSDP(t, "caller.sdp"))
	got := m.bob.expect(sip.INVITE)
	if c := cLine(got.Body()); c != "c=IN IP4 "+relayAddr {
		t.Errorf("callee got SDP with %q, want the relay's address", c)
	}
	if n := got.ContentLength(); n == nil || int(*n) != len(got.Body()) {
		t.Errorf("callee's INVITE has Content-Length %v for a %d-byte body", n, len(got.Body()))
	}
	rr := got.RecordRoute()
	if rr == nil || rr.Address.UriParams.GetOr(paramMedia, "") != "0" {
		t.Errorf("Record-Route %v does not mark the call relayed (mr=0)", rr)
	}
	rs := responses(t, tx)
	ok := rs[len(rs)-1]
	if ok.StatusCode != 200 {
		t.Fatalf("caller got %v", codes(rs))
	}
	if c := cLine(ok.Body()); c != "c=IN IP4 "+relayAddr {
		t.Errorf("caller got 200 with SDP %q, want the relay's address", c)
	}
	ftag, _ := inv.From().Params.Get("tag")
	ttag, _ := ok.To().Params.Get("tag")
	want := []relayCmd{
		{Command: "offer", FromTag: ftag, SDP: "c=IN IP4 192.168.1.20"},
		{Command: "answer", FromTag: ftag, ToTag: ttag, SDP: "c=IN IP4 10.0.0.7"},
	}
	if diff := cmp.Diff(want, m.relay.commands()); diff != "" {
		t.Errorf("relay commands (-want +got):\n%s", diff)
	}
	return inv, ok
}

func TestMediaByeFromCaller(t *testing.T) {
	m := newMediaCall(t, answerSDP, nil)
	inv, ok := m.answered(t)
	ftag, _ := inv.From().Params.Get("tag")
	if res := m.alice.do(fromCaller(sip.BYE, inv, ok, 2)); res.StatusCode != 200 {
		t.Fatalf("BYE got %d", res.StatusCode)
	}
	cmds := m.relay.commands()
	if diff := cmp.Diff(relayCmd{Command: "delete", FromTag: ftag}, cmds[len(cmds)-1]); diff != "" {
		t.Errorf("after BYE (-want +got):\n%s", diff)
	}
}

func TestMediaByeFromCallee(t *testing.T) {
	m := newMediaCall(t, answerSDP, nil)
	inv, _ := m.answered(t)
	ftag, _ := inv.From().Params.Get("tag")
	bye := m.bob.fromCallee(sip.BYE)
	bye.SetDestination(m.tp.udp.String())
	if res := m.bob.do(bye); res.StatusCode != 200 {
		t.Fatalf("BYE got %d", res.StatusCode)
	}
	cmds := m.relay.commands()
	// The call is deleted by the caller's tag, whoever hangs up.
	if diff := cmp.Diff(relayCmd{Command: "delete", FromTag: ftag}, cmds[len(cmds)-1]); diff != "" {
		t.Errorf("after BYE (-want +got):\n%s", diff)
	}
}

// TestMediaReinvite: a re-INVITE of either party is offered again, with
// its sender's tag as from-tag, and the answer in its 200 goes through
// the relay too.
func TestMediaReinvite(t *testing.T) {
	m := newMediaCall(t, answerSDP, nil)
	inv, ok := m.answered(t)
	atag, _ := inv.From().Params.Get("tag")
	btag, _ := ok.To().Params.Get("tag")
	// Built now, from the dialog-creating INVITE's Record-Route.
	back := m.bob.fromCallee(sip.INVITE)

	re := fromCaller(sip.INVITE, inv, ok, 2)
	re.AppendHeader(&sip.ContactHeader{Address: m.alice.contact})
	withSDP(re, readSDP(t, "caller.sdp"))
	res := m.alice.do(re)
	if res.StatusCode != 200 || cLine(res.Body()) != "c=IN IP4 "+relayAddr {
		t.Fatalf("caller's re-INVITE got %d with SDP %q", res.StatusCode, cLine(res.Body()))
	}
	if c := cLine(m.bob.expect(sip.INVITE).Body()); c != "c=IN IP4 "+relayAddr {
		t.Errorf("callee got the re-INVITE with SDP %q", c)
	}

	back.AppendHeader(&sip.ContactHeader{Address: m.bob.contact})
	back.SetDestination(m.tp.udp.String())
	withSDP(back, readSDP(t, "callee.sdp"))
	res = m.bob.do(back)
	if res.StatusCode != 200 || cLine(res.Body()) != "c=IN IP4 "+relayAddr {
		t.Fatalf("callee's re-INVITE got %d with SDP %q", res.StatusCode, cLine(res.Body()))
	}
	if c := cLine(m.alice.expect(sip.INVITE).Body()); c != "c=IN IP4 "+relayAddr {
		t.Errorf("caller got the re-INVITE with SDP %q", c)
	}
	want := []relayCmd{
		{Command: "reoffer", FromTag: atag, ToTag: btag, SDP: "c=IN IP4 192.168.1.20"},
		{Command: "answer", FromTag: atag, ToTag: btag, SDP: "c=IN IP4 10.0.0.7"},
		{Command: "reoffer", FromTag: btag, ToTag: atag, SDP: "c=IN IP4 10.0.0.7"},
		{Command: "answer", FromTag: btag, ToTag: atag, SDP: "c=IN IP4 192.168.1.20"},
	}
	got := m.relay.commands()[2:]
	for i := range got {
		if got[i].Command == "offer" {
			got[i].Command = "reoffer" // the fake cannot tell them apart; the to-tag does
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("relay commands of the re-INVITEs (-want +got):\n%s", diff)
	}
}

// TestMediaFailedCall: a call no branch answers is deleted once every
// branch is over, whether it was refused, cancelled by the caller or
// stopped by timer C.
func TestMediaFailedCall(t *testing.T) {
	for _, tc := range []struct {
		name   string
		behave func(*device, *sip.Request, sip.ServerTransaction)
		cancel bool
		want   int
	}{
		{"486", busy, false, 486},
		{"cancel", ring, true, 487},
		{"timer C", ring, false, 487}, // cancelled after its 180 (RFC 3261 §16.8)
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMediaCall(t, tc.behave, nil)
			inv, tx := m.invite(t, readSDP(t, "caller.sdp"))
			m.bob.expect(sip.INVITE)
			if tc.cancel {
				waitFor(t, tx, 180)
				cancel := sip.NewRequest(sip.CANCEL, inv.Recipient)
				cancel.AppendHeader(inv.Via().Clone())
				cancel.AppendHeader(sip.HeaderClone(inv.From()))
				cancel.AppendHeader(sip.HeaderClone(inv.To()))
				cancel.AppendHeader(sip.HeaderClone(inv.CallID()))
				cancel.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
				cancel.SetDestination(m.tp.udp.String())
				if res := m.alice.do(cancel); res.StatusCode != 200 {
					t.Errorf("CANCEL answered %d", res.StatusCode)
				}
			}
			rs := responses(t, tx)
			if got := rs[len(rs)-1].StatusCode; got != tc.want {
				t.Fatalf("caller got %v, want final %d", codes(rs), tc.want)
			}
			m.relay.waitFor(t, "delete")
			ftag, _ := inv.From().Params.Get("tag")
			want := []relayCmd{
				{Command: "offer", FromTag: ftag, SDP: "c=IN IP4 192.168.1.20"},
				{Command: "delete", FromTag: ftag},
			}
			if diff := cmp.Diff(want, m.relay.commands()); diff != "" {
				t.Errorf("relay commands (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMediaRelayDown: with the relay down a call that needs it gets 503
// with Retry-After (media.on_down: 503), or goes through with its own SDP
// (proceed); both are counted.
func TestMediaRelayDown(t *testing.T) {
	down := fmt.Errorf("offer: %w", ng.ErrUnavailable)
	t.Run("503", func(t *testing.T) {
		m := newMediaCall(t, answerSDP, nil)
		m.relay.fail(down)
		before := mDown503.Get()
		_, tx := m.invite(t, readSDP(t, "caller.sdp"))
		rs := responses(t, tx)
		res := rs[len(rs)-1]
		if res.StatusCode != 503 || res.GetHeader("Retry-After") == nil {
			t.Fatalf("caller got %v (Retry-After %v), want 503 with Retry-After", codes(rs), res.GetHeader("Retry-After"))
		}
		m.bob.quiet(sip.INVITE, 200*time.Millisecond)
		if mDown503.Get() != before+1 {
			t.Error("pinhole_media_refused_total{why=\"down\"} did not move")
		}
	})
	t.Run("proceed", func(t *testing.T) {
		m := newMediaCall(t, answerSDP, func(mc *Media) { mc.Proceed = true })
		m.relay.fail(down)
		before := mUnrelayed.Get()
		_, tx := m.invite(t, readSDP(t, "caller.sdp"))
		if c := cLine(m.bob.expect(sip.INVITE).Body()); c != "c=IN IP4 192.168.1.20" {
			t.Errorf("callee got SDP %q, want the caller's own", c)
		}
		rs := responses(t, tx)
		if res := rs[len(rs)-1]; res.StatusCode != 200 || cLine(res.Body()) != "c=IN IP4 10.0.0.7" {
			t.Errorf("caller got %v with SDP %q, want 200 with the callee's own", codes(rs), cLine(res.Body()))
		}
		if mUnrelayed.Get() != before+1 {
			t.Error("pinhole_media_unrelayed_total did not move")
		}
		if cmds := m.relay.commands(); len(cmds) != 1 {
			t.Errorf("relay got %+v, want the failed offer only", cmds)
		}
	})
}

// TestMediaMalformedSDP: an INVITE whose SDP does not parse is refused with
// 400 before anything is sent on.
func TestMediaMalformedSDP(t *testing.T) {
	m := newMediaCall(t, answerSDP, nil)
	_, tx := m.invite(t, []byte("v=0\r\nthis is not SDP\r\n"))
	rs := responses(t, tx)
	if got := rs[len(rs)-1].StatusCode; got != 400 {
		t.Fatalf("caller got %v, want 400", codes(rs))
	}
	m.bob.quiet(sip.INVITE, 200*time.Millisecond)
	if cmds := m.relay.commands(); len(cmds) != 0 {
		t.Errorf("relay got %+v for a malformed SDP", cmds)
	}
}

// TestMediaNotRelayed: a call no rule picks keeps its SDP and its
// Record-Route carries no mark; its BYE deletes nothing.
func TestMediaNotRelayed(t *testing.T) {
	m := newMediaCall(t, answerSDP, func(mc *Media) { mc.Rules = config.MediaRules{WebRTC: true} })
	inv, tx := m.invite(t, readSDP(t, "caller.sdp"))
	got := m.bob.expect(sip.INVITE)
	if c := cLine(got.Body()); c != "c=IN IP4 192.168.1.20" {
		t.Errorf("callee got SDP %q, want the caller's own", c)
	}
	if rr := got.RecordRoute(); rr == nil || rr.Address.UriParams.Has(paramMedia) {
		t.Errorf("Record-Route %v: want one without mr", rr)
	}
	rs := responses(t, tx)
	ok := rs[len(rs)-1]
	// A re-INVITE of the unrelayed dialog stays unrelayed, whatever the
	// rules would say of it as a new call.
	re := fromCaller(sip.INVITE, inv, ok, 2)
	re.AppendHeader(&sip.ContactHeader{Address: m.alice.contact})
	withSDP(re, readSDP(t, "browser.sdp"))
	if res := m.alice.do(re); res.StatusCode != 200 || cLine(res.Body()) != "c=IN IP4 10.0.0.7" {
		t.Errorf("re-INVITE got %d with SDP %q, want 200 with the callee's own", res.StatusCode, cLine(res.Body()))
	}
	if res := m.alice.do(fromCaller(sip.BYE, inv, ok, 3)); res.StatusCode != 200 {
		t.Fatalf("BYE got %d", res.StatusCode)
	}
	if cmds := m.relay.commands(); len(cmds) != 0 {
		t.Errorf("relay got %+v for a call it does not relay", cmds)
	}
}

// TestMediaForgedMark: the relay mark is covered by the Record-Route
// signature, so nobody can make pinhole re-offer or delete a call it
// did not relay.
func TestMediaForgedMark(t *testing.T) {
	m := newMediaCall(t, answerSDP, func(mc *Media) { mc.Rules = config.MediaRules{WebRTC: true} })
	inv, tx := m.invite(t, readSDP(t, "caller.sdp"))
	m.bob.expect(sip.INVITE)
	rs := responses(t, tx)
	ok := rs[len(rs)-1]
	bye := fromCaller(sip.BYE, inv, ok, 2)
	rt := bye.Route()
	rt.Address.UriParams.Add(paramMedia, "0")
	if res := m.alice.do(bye); res.StatusCode != 403 {
		t.Fatalf("BYE with a forged relay mark got %d, want 403", res.StatusCode)
	}
	if cmds := m.relay.commands(); len(cmds) != 0 {
		t.Errorf("relay got %+v", cmds)
	}
}

// TestMediaLateOffer: an INVITE without SDP gets its offer in the 2xx and
// its answer in the ACK (RFC 3261 §13.2.1): the 2xx's SDP is offered with
// the callee's tag as from-tag, the ACK's answered, and both reach the
// other side rewritten.
func TestMediaLateOffer(t *testing.T) {
	m := newMediaCall(t, answerSDP, nil)
	inv, tx := m.alice.inviteBody(m.tp, "sip:bob@example.com", nil)
	if rr := m.bob.expect(sip.INVITE).RecordRoute(); rr == nil || !rr.Address.UriParams.Has(paramMedia) {
		t.Errorf("Record-Route %v of a relayed late-offer call has no mr", rr)
	}
	rs := responses(t, tx)
	ok := rs[len(rs)-1]
	if ok.StatusCode != 200 || cLine(ok.Body()) != "c=IN IP4 "+relayAddr {
		t.Fatalf("caller got %v with SDP %q, want 200 with the relay's", codes(rs), cLine(ok.Body()))
	}
	ack := fromCaller(sip.ACK, inv, ok, inv.CSeq().SeqNo)
	withSDP(ack, readSDP(t, "caller.sdp"))
	if err := m.alice.cli.WriteRequest(ack); err != nil {
		t.Fatal(err)
	}
	if c := cLine(m.bob.expect(sip.ACK).Body()); c != "c=IN IP4 "+relayAddr {
		t.Errorf("callee got the ACK with SDP %q, want the relay's", c)
	}
	atag, _ := inv.From().Params.Get("tag")
	btag, _ := ok.To().Params.Get("tag")
	want := []relayCmd{
		{Command: "offer", FromTag: btag, ToTag: atag, SDP: "c=IN IP4 10.0.0.7"},
		{Command: "answer", FromTag: btag, ToTag: atag, SDP: "c=IN IP4 192.168.1.20"},
	}
	if diff := cmp.Diff(want, m.relay.commands()); diff != "" {
		t.Errorf("relay commands (-want +got):\n%s", diff)
	}
}

// nodeSDP answers an INVITE with each of codes in turn, a To tag of tag,
// and the callee's SDP in every 18x and 2xx. The responses are 20 ms
// apart, as a real node's are much more: sipgo hands each response it
// reads to its transaction on a goroutine of its own
// (handleResponseBackground), so a 183 and a 503 sent back to back may
// reach the transaction in either order, and a 183 after the 503 is
// dropped there (RFC 3261 §17.1.1.2); CI saw it once under load.
func nodeSDP(tag string, codes ...int) func(*node, *sip.Request, sip.ServerTransaction) {
	return func(n *node, req *sip.Request, tx sip.ServerTransaction) {
		for i, code := range codes {
			if i > 0 {
				time.Sleep(20 * time.Millisecond)
			}
			res := sip.NewResponseFromRequest(req, code, "", nil)
			res.To().Params.Add("tag", tag)
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "fs", Host: n.addr.Addr().String(), Port: int(n.addr.Port())}})
			if code < 300 {
				withSDP(res, readSDP(n.t, "callee.sdp"))
			}
			_ = tx.Respond(res)
		}
	}
}

// TestMediaFarmFailover: a relayed call to the farm keeps its one offer
// when it fails over: the next node gets the same relayed SDP, and the
// answer of each node that answers goes to the relay under its own To tag
// (rtpengine keeps one dialogue per tag), the last one being the call's.
func TestMediaFarmFailover(t *testing.T) {
	first := newNode(t, nodeSDP("early", 183, 503))
	second := newNode(t, nodeSDP("taken", 200))
	farm := newFarm(t, dispatch.RoundRobin, false, first.uri(), second.uri())
	relay := newFakeRelay()
	tp := startProxy(t, func(c *Config) {
		c.Farm = farm
		c.Media = &Media{Relay: relay, Rules: config.MediaRules{NAT: true}}
	})
	alice := newDevice(t, "alice", "sip:alice@192.168.1.20:5060", nil)
	inv, tx := alice.inviteBody(tp, "sip:conf-1@farm.example", readSDP(t, "caller.sdp"), sip.NewHeader("Content-Type", "application/sdp"))
	rs := responses(t, tx)
	ok := rs[len(rs)-1]
	if ok.StatusCode != 200 || cLine(ok.Body()) != "c=IN IP4 "+relayAddr {
		t.Fatalf("caller got %v with SDP %q, want 200 with the relay's", codes(rs), cLine(ok.Body()))
	}
	a, b := first.expect(sip.INVITE), second.expect(sip.INVITE)
	if string(a.Body()) != string(b.Body()) || cLine(b.Body()) != "c=IN IP4 "+relayAddr {
		t.Errorf("nodes got different or unrelayed offers:\n%s\n---\n%s", a.Body(), b.Body())
	}
	atag, _ := inv.From().Params.Get("tag")
	want := []relayCmd{
		{Command: "offer", FromTag: atag, SDP: "c=IN IP4 192.168.1.20"},
		{Command: "answer", FromTag: atag, ToTag: "early", SDP: "c=IN IP4 10.0.0.7"},
		{Command: "answer", FromTag: atag, ToTag: "taken", SDP: "c=IN IP4 10.0.0.7"},
	}
	if diff := cmp.Diff(want, relay.commands()); diff != "" {
		t.Errorf("relay commands (-want +got):\n%s", diff)
	}
}

// TestMediaWebRTCCaller: a caller whose SDP is WebRTC (DTLS-SRTP, ICE)
// calling a plain phone is relayed for the webrtc rule; the offer asks
// rtpengine for plain RTP/AVP without ICE toward the phone, the answer for
// DTLS-SRTP with ICE back toward the browser (rtpengine the DTLS client,
// answering), and the Record-Route marks
// the caller as the WebRTC party (mr=1) so re-offers bridge the same way.
func TestMediaWebRTCCaller(t *testing.T) {
	m := newMediaCall(t, answerSDP, func(mc *Media) { mc.Rules = config.MediaRules{WebRTC: true} })
	_, tx := m.invite(t, readSDP(t, "browser.sdp"))
	if rr := m.bob.expect(sip.INVITE).RecordRoute(); rr == nil || rr.Address.UriParams.GetOr(paramMedia, "") != "1" {
		t.Errorf("Record-Route %v: want mr=1 (the caller is WebRTC)", rr)
	}
	if rs := responses(t, tx); rs[len(rs)-1].StatusCode != 200 {
		t.Fatalf("caller got %v", codes(rs))
	}
	m.relay.mu.Lock()
	opts := m.relay.opts
	m.relay.mu.Unlock()
	if len(opts) != 2 {
		t.Fatalf("relay got %d offers and answers, want 2", len(opts))
	}
	type bridge struct{ Proto, ICE, DTLS string }
	got := []bridge{{opts[0].TransportProtocol, opts[0].ICE, opts[0].DTLS}, {opts[1].TransportProtocol, opts[1].ICE, opts[1].DTLS}}
	want := []bridge{{"RTP/AVP", "remove", ""}, {"UDP/TLS/RTP/SAVPF", "force", "active"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("offer and answer options (-want +got):\n%s", diff)
	}
	if n := mRelayedReason("webrtc"); n == 0 {
		t.Error(`pinhole_media_calls_relayed_total{reason="webrtc"} did not move`)
	}
}

func mRelayedReason(r string) uint64 {
	return metrics.GetOrCreateCounter(`pinhole_media_calls_relayed_total{reason="` + r + `"}`).Get()
}
