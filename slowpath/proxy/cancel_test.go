package proxy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"
)

// cancelOf is the CANCEL of an INVITE a device sent (RFC 3261 §9.1).
func cancelOf(inv *sip.Request, dest netip.AddrPort) *sip.Request {
	cancel := sip.NewRequest(sip.CANCEL, inv.Recipient)
	cancel.AppendHeader(inv.Via().Clone())
	cancel.AppendHeader(sip.HeaderClone(inv.From()))
	cancel.AppendHeader(sip.HeaderClone(inv.To()))
	cancel.AppendHeader(sip.HeaderClone(inv.CallID()))
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	cancel.SetDestination(dest.String())
	return cancel
}

// TestStrayCancel: a CANCEL no transaction takes is forwarded to the
// targets its INVITE would reach, from the proxy's socket, under the
// branch that INVITE got there, repeating the INVITE as forwarded (RFC
// 3261 §9.1), and answered 200.
func TestStrayCancel(t *testing.T) {
	tp := startProxy(t, func(c *Config) { c.Keys = testKeys })
	bob := newDevice(t, "bob", "sip:bob@192.0.2.1:5999", nil)
	tp.loc.add("bob@example.com", bob.binding(tp, 1000))
	alice := newDevice(t, "alice", "sip:alice@192.0.2.2:5998", nil)

	var ruri sip.Uri
	if err := sip.ParseUri("sip:bob@example.com", &ruri); err != nil {
		t.Fatal(err)
	}
	inv := sip.NewRequest(sip.INVITE, ruri)
	inv.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
		Host: "192.0.2.2", Port: 5998, Params: sip.HeaderParams{{K: "branch", V: sip.GenerateBranch()}, {K: "rport"}}})
	inv.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}, Params: sip.HeaderParams{{K: "tag", V: "a1"}}})
	inv.AppendHeader(&sip.ToHeader{Address: ruri})
	inv.AppendHeader(sip.NewHeader("Call-ID", "stray-"+sip.GenerateTagN(8)))
	inv.AppendHeader(&sip.CSeqHeader{SeqNo: 7, MethodName: sip.INVITE})
	inv.SetSource(alice.addr.String())

	name := `pinhole_proxy_stray_cancels_total{result="forwarded"}`
	before := metrics.GetOrCreateCounter(name).Get()
	if res := alice.do(cancelOf(inv, tp.udp)); res.StatusCode != 200 {
		t.Errorf("CANCEL answered %d, want 200", res.StatusCode)
	}
	if got := metrics.GetOrCreateCounter(name).Get() - before; got != 1 {
		t.Errorf("%s went up by %d, want 1", name, got)
	}
	got := bob.expect(sip.CANCEL)
	if got.Source() != tp.udp.String() {
		t.Errorf("CANCEL reached bob from %s, want the proxy's %s", got.Source(), tp.udp)
	}
	// The INVITE as the proxy would have sent it has the same branch.
	wantBranch := signedBranchFor(t, tp.p, inv, bob.binding(tp, 1000))
	if b := got.Via().Params.GetOr("branch", ""); b != wantBranch {
		t.Errorf("CANCEL's branch %q, want the INVITE's %q", b, wantBranch)
	}
	if got.Recipient.String() != bob.contact.String() || got.CallID().Value() != inv.CallID().Value() ||
		got.CSeq().SeqNo != 7 || got.CSeq().MethodName != sip.CANCEL ||
		got.From().Params.GetOr("tag", "") != "a1" || len(got.GetHeaders("Via")) != 2 {
		t.Errorf("CANCEL does not repeat the INVITE as forwarded (§9.1):\n%s", got)
	}
}

// TestStrayCancelRefused: a CANCEL whose INVITE would not have reached a
// binding under a signed branch, or would have needed credentials, is
// answered as before (481; 483 for Max-Forwards), counted, and not
// forwarded.
func TestStrayCancelRefused(t *testing.T) {
	deny := AuthorizerFunc(func(*sip.Request) Verdict {
		return Verdict{Status: 407, Reason: "Proxy Authentication Required"}
	})
	bob := paperBinding("sip:bob@192.0.2.1:5999", "203.0.113.1:40001")
	for _, tc := range []struct {
		name   string
		req    string
		mutate func(*Proxy, *fakeLocator)
		code   int
		result string // "": no stray CANCEL counted
	}{
		{name: "unknown user", req: msg("CANCEL", "sip:nobody@example.com"), code: 481, result: "not_located"},
		{name: "foreign domain", req: msg("CANCEL", "sip:bob@example.net"), code: 481, result: "not_located"},
		{
			// A re-INVITE's CANCEL: in-dialog requests are not located.
			name: "in a dialog",
			req: strings.Replace(msg("CANCEL", "sip:bob@example.com", "Route: <sip:edge.example.com;lr;ftag=a1;sig=aaaaaaaaaaaaaaaa>"),
				"To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=b1", 1),
			code: 481, result: "not_located",
		},
		{
			name: "INVITE would be challenged", req: msg("CANCEL", "sip:bob@example.com"), code: 481, result: "unauthenticated",
			mutate: func(p *Proxy, _ *fakeLocator) { p.auth = deny },
		},
		{
			// The unit proxy has no socket: nothing can leave.
			name: "no socket", req: msg("CANCEL", "sip:bob@example.com"), code: 481, result: "unsent",
		},
		{name: "max-forwards zero", req: msg("CANCEL", "sip:bob@example.com", "Max-Forwards: 0"), code: 483},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, loc := unitProxy(t, nil)
			loc.add("bob@example.com", bob)
			if tc.mutate != nil {
				tc.mutate(p, loc)
			}
			name := `pinhole_proxy_stray_cancels_total{result="` + tc.result + `"}`
			before := metrics.GetOrCreateCounter(name).Get()
			fwd := metrics.GetOrCreateCounter(`pinhole_proxy_stray_cancels_total{result="forwarded"}`).Get()
			tx := &fakeTx{}
			p.Handle(request(t, tc.req), tx)
			if len(tx.res) != 1 || tx.res[0].StatusCode != tc.code {
				t.Fatalf("answered %v, want one %d", codes(tx.res), tc.code)
			}
			if tc.result != "" {
				if got := metrics.GetOrCreateCounter(name).Get() - before; got != 1 {
					t.Errorf("%s went up by %d, want 1", name, got)
				}
			}
			if got := metrics.GetOrCreateCounter(`pinhole_proxy_stray_cancels_total{result="forwarded"}`).Get(); got != fwd {
				t.Errorf("counted as forwarded")
			}
		})
	}
}

// TestStrayAckRefused: an ACK no transaction or dialog takes whose INVITE
// would not reach a binding is dropped and counted twice: as a dropped
// ACK, and why it was not forwarded.
func TestStrayAckRefused(t *testing.T) {
	p, _ := unitProxy(t, nil)
	ack := strings.Replace(msg("ACK", "sip:nobody@example.com"), "To: <sip:nobody@example.com>", "To: <sip:nobody@example.com>;tag=b1", 1)
	dropped := mAckDropped.Get()
	notLocated := mStrayAcks.notLocated.Get()
	tx := &fakeTx{}
	p.Handle(request(t, ack), tx)
	if len(tx.res) != 0 {
		t.Errorf("ACK answered %v", codes(tx.res))
	}
	if mAckDropped.Get()-dropped != 1 || mStrayAcks.notLocated.Get()-notLocated != 1 {
		t.Errorf("ACKs dropped +%d, stray ACKs not located +%d; want +1 and +1",
			mAckDropped.Get()-dropped, mStrayAcks.notLocated.Get()-notLocated)
	}
}

// TestStrayAckThroughOurRoute: the caller's ACK for a non-2xx repeats its
// INVITE's Route (RFC 3261 §17.1.1.3); a phone that preloads pinhole as
// its outbound proxy sends it unsigned. With no transaction to take it
// the ACK goes on as a stray ACK and is not counted as a forged dialog
// Route; the same ACK whose INVITE would reach nobody is dropped and is.
func TestStrayAckThroughOurRoute(t *testing.T) {
	tp := startProxy(t, func(c *Config) { c.Keys = testKeys })
	bob := newDevice(t, "bob", "sip:bob@192.0.2.1:5999", nil)
	tp.loc.add("bob@example.com", bob.binding(tp, 1000))
	alice := newDevice(t, "alice", "sip:alice@192.0.2.2:5998", nil)

	ack := func(user string) *sip.Request {
		var ruri sip.Uri
		if err := sip.ParseUri("sip:"+user+"@example.com", &ruri); err != nil {
			t.Fatal(err)
		}
		req := sip.NewRequest(sip.ACK, ruri)
		req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
			Host: "192.0.2.2", Port: 5998, Params: sip.HeaderParams{{K: "branch", V: sip.GenerateBranch()}, {K: "rport"}}})
		req.AppendHeader(sip.NewHeader("Route", "<sip:"+tp.udp.String()+";lr>"))
		req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}, Params: sip.HeaderParams{{K: "tag", V: "a1"}}})
		req.AppendHeader(&sip.ToHeader{Address: ruri, Params: sip.HeaderParams{{K: "tag", V: "b486"}}})
		req.AppendHeader(sip.NewHeader("Call-ID", "stray-ack-"+sip.GenerateTagN(8)))
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 7, MethodName: sip.ACK})
		req.SetSource(alice.addr.String())
		req.SetDestination(tp.udp.String())
		return req
	}

	forged := mForgedDialog.Get()
	forwarded := mStrayAcks.forwarded.Get()
	if err := alice.cli.WriteRequest(ack("bob")); err != nil {
		t.Fatal(err)
	}
	got := bob.expect(sip.ACK)
	if got.CallID() == nil || !strings.HasPrefix(got.CallID().Value(), "stray-ack-") {
		t.Fatalf("bob got another ACK:\n%s", got)
	}
	// Counted after it was sent: wait for the count, not only the ACK.
	for deadline := time.Now().Add(5 * time.Second); mStrayAcks.forwarded.Get() == forwarded && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := mStrayAcks.forwarded.Get() - forwarded; n != 1 {
		t.Errorf("stray ACKs forwarded +%d, want +1", n)
	}
	if n := mForgedDialog.Get() - forged; n != 0 {
		t.Errorf("a forwarded ACK counted as a forged Route (+%d)", n)
	}

	// Parsed, as from the wire: a Route built with sip.NewHeader is not
	// a RouteHeader.
	m, err := sip.ParseMessage([]byte(ack("nobody").String()))
	if err != nil {
		t.Fatal(err)
	}
	tp.p.Handle(m.(*sip.Request), &fakeTx{})
	if n := mForgedDialog.Get() - forged; n != 1 {
		t.Errorf("an ACK through an unsigned Route of ours that went nowhere: forged +%d, want +1", n)
	}
}
