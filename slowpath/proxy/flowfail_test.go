package proxy

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// accepts listens where a device's connection came from and counts the
// connections pinhole makes to it.
func accepts(t *testing.T) (netip.AddrPort, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			t.Cleanup(func() { c.Close() })
		}
	}()
	return netip.MustParseAddrPort(l.Addr().String()), &n
}

// TestClosedFlowNotDialled: a device registered over TCP whose connection
// is closed is not dialled at its old address — it listens nowhere a
// connection could reach it (RFC 5626 §5.3) — and the caller gets 480 at
// once. A server that registered from the address its Contact names (a
// PBX connecting from its listening port) is dialled again.
func TestClosedFlowNotDialled(t *testing.T) {
	tp := startProxy(t, func(c *Config) { c.FlowOpen = func(location.Flow) bool { return false } })
	alice := newDevice(t, "alice", "sip:alice@192.0.2.2:5998", nil)
	old, dials := accepts(t)

	tp.loc.add("bob@example.com", location.Binding{
		AOR: "bob@example.com", Contact: "sip:bob@198.51.100.7:40000;transport=tcp", Q: 1000, NAT: true,
		Flow: location.Flow{Transport: location.TransportTCP, Remote: old, Local: tp.tcp},
	})
	failed := mFlowFailed.Get()
	start := time.Now()
	_, itx := alice.invite(tp, "sip:bob@example.com")
	rs := responses(t, itx)
	if last := rs[len(rs)-1].StatusCode; last != sip.StatusTemporarilyUnavailable {
		t.Fatalf("caller got %v, want 480", codes(rs))
	}
	t.Logf("480 after %v", time.Since(start))
	if mFlowFailed.Get() == failed {
		t.Error("pinhole_proxy_flow_failed_total did not move")
	}
	time.Sleep(200 * time.Millisecond)
	if n := dials.Load(); n != 0 {
		t.Fatalf("pinhole connected %d times to the closed flow's address", n)
	}

	tp.loc.add("pbx@example.com", location.Binding{
		AOR: "pbx@example.com", Contact: "sip:pbx@" + old.String() + ";transport=tcp", Q: 1000,
		Flow: location.Flow{Transport: location.TransportTCP, Remote: old, Local: tp.tcp},
	})
	alice.invite(tp, "sip:pbx@example.com")
	deadline := time.Now().Add(5 * time.Second)
	for dials.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if dials.Load() == 0 {
		t.Fatal("a PBX that registered from its listening port was not dialled again")
	}
}

// TestClosedFlowInDialog: an in-dialog request toward a device whose
// connection closed gets 430 Flow Failed (RFC 5626 §5.3) instead of a
// new connection to the device's old port.
func TestClosedFlowInDialog(t *testing.T) {
	var open atomic.Bool
	open.Store(true)
	tp := startProxy(t, func(c *Config) { c.FlowOpen = func(location.Flow) bool { return open.Load() } })
	alice := newDevice(t, "alice", "sip:alice@192.0.2.2:5998", nil)
	got := tcpCallee(t, tp)

	inv, itx := alice.invite(tp, "sip:bob@example.com")
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("bob got no INVITE")
	}
	rs := responses(t, itx)
	ok := rs[len(rs)-1]
	if ok.StatusCode != 200 {
		t.Fatalf("caller got %v", codes(rs))
	}

	open.Store(false)
	failed := mFlowFailed.Get()
	if res := alice.do(fromCaller(sip.BYE, inv, ok, 2)); res.StatusCode != StatusFlowFailed {
		t.Fatalf("BYE to a closed flow: %d, want 430", res.StatusCode)
	}
	if mFlowFailed.Get() == failed {
		t.Error("pinhole_proxy_flow_failed_total did not move")
	}
}

func TestFlowUsable(t *testing.T) {
	remote := netip.MustParseAddrPort("192.0.2.9:5070")
	p := &Proxy{cfg: Config{FlowOpen: func(location.Flow) bool { return false }}}
	open := &Proxy{cfg: Config{FlowOpen: func(location.Flow) bool { return true }}}
	for _, c := range []struct {
		name    string
		p       *Proxy
		tp      location.Transport
		contact string
		nat     bool
		want    bool
	}{
		{"open connection", open, location.TransportWSS, "sip:x@df7jal23ls0d.invalid;transport=ws", false, true},
		{"udp has no connection to lose", p, location.TransportUDP, "sip:x@10.0.0.1:5060", true, true},
		{"ws closed", p, location.TransportWS, "sip:x@192.0.2.9:5070;transport=ws", false, false},
		{"wss closed", p, location.TransportWSS, "sip:x@df7jal23ls0d.invalid;transport=ws", false, false},
		{"tcp closed, contact elsewhere", p, location.TransportTCP, "sip:x@192.0.2.9:5999;transport=tcp", false, false},
		{"tcp closed, behind NAT", p, location.TransportTCP, "sip:x@192.0.2.9:5070;transport=tcp", true, false},
		{"tcp closed, listens where it connected from", p, location.TransportTCP, "sip:x@192.0.2.9:5070;transport=tcp", false, true},
		{"tcp closed, contact a name", p, location.TransportTCP, "sip:x@pbx.example.net:5070;transport=tcp", false, false},
		{"tcp closed, contact over udp", p, location.TransportTCP, "sip:x@192.0.2.9:5070", false, false},
		{"tls closed, default port", p, location.TransportTLS, "sips:x@192.0.2.9", false, false},
	} {
		var u sip.Uri
		if err := sip.ParseUri(c.contact, &u); err != nil {
			t.Fatal(err)
		}
		f := location.Flow{Transport: c.tp, Remote: remote}
		if got := c.p.flowUsable(f, &u, c.nat); got != c.want {
			t.Errorf("%s: flowUsable = %v, want %v", c.name, got, c.want)
		}
	}
	tls := location.Flow{Transport: location.TransportTLS, Remote: netip.MustParseAddrPort("192.0.2.9:5061")}
	var u sip.Uri
	_ = sip.ParseUri("sips:x@192.0.2.9", &u)
	if !p.flowUsable(tls, &u, false) {
		t.Error("a TLS peer on 5061 named by a sips: Contact without port should be dialled again")
	}
}
