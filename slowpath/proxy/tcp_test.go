package proxy

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// TestCalleeOnTCP: a callee registered over TCP is reached over its own
// connection, and the call, coming in over UDP, gets two Record-Route
// entries (RFC 5658): the TCP one on top.
func TestCalleeOnTCP(t *testing.T) {
	tp := startProxy(t, nil)
	alice := newDevice(t, "alice", "sip:alice@192.0.2.2:5998", nil)
	got := tcpCallee(t, tp)

	_, itx := alice.invite(tp, "sip:bob@example.com")
	var inv *sip.Request
	select {
	case inv = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("bob got no INVITE")
	}
	if inv.Transport() != "TCP" || inv.Source() != tp.tcp.String() {
		t.Errorf("INVITE came over %s from %s, want TCP from %v", inv.Transport(), inv.Source(), tp.tcp)
	}
	rrs := inv.GetHeaders("Record-Route")
	if len(rrs) != 2 {
		t.Fatalf("Record-Route %v, want two entries", rrs)
	}
	top, second := rrs[0].(*sip.RecordRouteHeader).Address, rrs[1].(*sip.RecordRouteHeader).Address
	if top.UriParams.GetOr("transport", "") != "tcp" || top.Port != int(tp.tcp.Port()) ||
		second.UriParams.GetOr("transport", "") != "udp" || second.Port != int(tp.udp.Port()) {
		t.Errorf("Record-Route %s, %s: want the TCP listener on top, then the UDP one", top.String(), second.String())
	}
	if last := responses(t, itx); last[len(last)-1].StatusCode != 200 {
		t.Errorf("caller got %v", codes(last))
	}
}

// tcpCallee starts bob, who answers INVITE with 200 and has only a client
// connection to pinhole, as after a REGISTER over TCP, and registers him
// over that connection. got receives the INVITEs bob gets.
func tcpCallee(t *testing.T, tp *testProxy) chan *sip.Request {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("bob"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	srv, _ := sipgo.NewServer(ua)
	cli, _ := sipgo.NewClient(ua)
	got := make(chan *sip.Request, 8)
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		got <- req
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "192.0.2.1", Port: 5999, UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}}})
		tx.Respond(res)
	})
	opts := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "example.com", UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}})
	opts.SetDestination(tp.tcp.String())
	opts.SetTransport("TCP")
	tx, err := cli.TransactionRequest(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	rs := responses(t, tx)
	tx.Terminate()
	if rs[0].StatusCode != 200 {
		t.Fatalf("OPTIONS to pinhole: %d", rs[0].StatusCode)
	}
	conn, err := cli.TransportLayer().GetConnection("tcp", tp.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	remote := netip.MustParseAddrPort(conn.(interface{ LocalAddr() net.Addr }).LocalAddr().String())
	tp.loc.add("bob@example.com", location.Binding{
		AOR: "bob@example.com", Contact: "sip:bob@192.0.2.1:5999;transport=tcp", Q: 1000,
		Flow: location.Flow{Transport: location.TransportTCP, Remote: remote, Local: tp.tcp},
	})
	return got
}
