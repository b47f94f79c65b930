package natping

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// TestActs: a box that does not act for a binding (the standby of a pair)
// sends its device nothing, not even to a silent one, and so never
// removes it; the cycle after it starts acting, the device gets its ping.
func TestActs(t *testing.T) {
	var p *Pinger
	conn, socks, _ := edge(t, &p)
	dev := startDevice(t)
	dev.setMute(true)
	b := natBinding("frank@example.com", addrOf(dev.conn), addrOf(conn))
	st := store(t, nil, b)
	var active atomic.Bool
	p = newPinger(t, Config{
		Interval: time.Second, Method: MethodOptions, MaxMissed: 1, Store: st, Sockets: socks, Slots: 1,
		ActsFor: func(location.Binding) bool { return active.Load() },
	})
	before := sentTotal.Get()
	for range 3 {
		p.cycle(context.Background(), time.Now())
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(dev.received()); n != 0 || sentTotal.Get() != before {
		t.Fatalf("standby: device got %d pings (%d counted), want none", n, sentTotal.Get()-before)
	}
	if len(st.Lookup(b.AOR)) != 1 {
		t.Fatal("standby removed a binding it does not act for")
	}
	active.Store(true)
	p.cycle(context.Background(), time.Now())
	waitFor(t, func() bool { return len(dev.received()) == 1 })
}
