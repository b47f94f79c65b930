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
// is closed is not dialled at its old address, even when its Contact names
// that address (RFC 5626 §5.3), and the caller gets 480 at once.
func TestClosedFlowNotDialled(t *testing.T) {
	tp := startProxy(t, func(c *Config) { c.FlowOpen = func(location.Flow) bool { return false } })
	alice := newDevice(t, "alice", "sip:alice@192.0.2.2:5998", nil)
	old, dials := accepts(t)

	for _, contact := range []string{"sip:bob@198.51.100.7:40000;transport=tcp", "sip:bob@" + old.String() + ";transport=tcp"} {
		tp.loc.add("bob@example.com", location.Binding{
			AOR: "bob@example.com", Contact: contact, Q: 1000, NAT: true,
			Flow: location.Flow{Transport: location.TransportTCP, Remote: old, Local: tp.tcp},
		})
	}
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
