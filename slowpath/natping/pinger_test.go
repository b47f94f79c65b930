package natping

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// listen opens a UDP socket on loopback, closed when the test ends.
func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// device plays a phone behind NAT: it answers OPTIONS with 200 OK while
// answering is on, and counts what it received.
type device struct {
	conn *net.UDPConn
	mu   sync.Mutex
	mute bool
	got  [][]byte
}

func startDevice(t *testing.T) *device {
	t.Helper()
	d := &device{conn: listen(t)}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := d.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			msg := append([]byte(nil), buf[:n]...)
			d.mu.Lock()
			d.got = append(d.got, msg)
			mute := d.mute
			d.mu.Unlock()
			if mute || !bytes.HasPrefix(msg, []byte("OPTIONS ")) {
				continue
			}
			m, err := sip.ParseMessage(msg)
			if err != nil {
				continue
			}
			res := sip.NewResponseFromRequest(m.(*sip.Request), 200, "OK", nil)
			_, _ = d.conn.WriteToUDPAddrPort([]byte(res.String()), from)
		}
	}()
	return d
}

func (d *device) setMute(m bool) {
	d.mu.Lock()
	d.mute = m
	d.mu.Unlock()
}

func (d *device) received() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.got...)
}

// edge is pinhole's listening socket: what reaches it goes to Reply, as the
// slow path's read filter does without XDP.
func edge(t *testing.T, p **Pinger) (*net.UDPConn, Sockets, *int) {
	t.Helper()
	c := listen(t)
	var mu sync.Mutex
	unclaimed := 0
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if !(*p).Reply(addrOf(c), from, buf[:n]) {
				mu.Lock()
				unclaimed++
				mu.Unlock()
			}
		}
	}()
	socks := func(local netip.AddrPort) (syscall.RawConn, error) {
		if local != addrOf(c) {
			return nil, fmt.Errorf("no socket on %v", local)
		}
		return c.SyscallConn()
	}
	return c, socks, &unclaimed
}

func natBinding(aor string, remote, local netip.AddrPort) location.Binding {
	return location.Binding{
		AOR: aor, Contact: "sip:" + aor + ";ob", CallID: "c-" + aor, CSeq: 1, Q: 1000,
		Expires: time.Now().Add(time.Hour),
		Flow:    location.Flow{Transport: location.TransportUDP, Remote: remote, Local: local},
		NAT:     true,
	}
}

func store(t *testing.T, onExpire func(location.Binding), bs ...location.Binding) *location.Memory {
	t.Helper()
	m, err := location.Open(location.Options{OnExpire: onExpire})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	for _, b := range bs {
		if _, err := m.Update(b.AOR, func(cur []location.Binding) ([]location.Binding, error) {
			return append(cur, b), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// TestSilentDeviceRemoved: a device that answers keeps its binding; one that
// stops answering loses it after MaxMissed pings, through the store's expiry
// with OnExpire, exactly once.
func TestSilentDeviceRemoved(t *testing.T) {
	var p *Pinger
	conn, socks, unclaimed := edge(t, &p)
	local := addrOf(conn)
	alive, silent := startDevice(t), startDevice(t)
	silent.setMute(true)
	nonNAT := natBinding("carol@example.com", addrOf(startDevice(t).conn), local)
	nonNAT.NAT = false

	var mu sync.Mutex
	var expired []string
	st := store(t, func(b location.Binding) {
		mu.Lock()
		expired = append(expired, b.AOR)
		mu.Unlock()
	},
		natBinding("alice@example.com", addrOf(alive.conn), local),
		natBinding("bob@example.com", addrOf(silent.conn), local),
		nonNAT,
	)
	const interval = 150 * time.Millisecond
	p = newPinger(t, Config{Interval: interval, Method: MethodOptions, MaxMissed: 2, Store: st, Sockets: socks})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// Two missed pings are judged at the third: ~3 intervals, then the
	// store's expiry pass (once a second) reports it.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(expired)
		mu.Unlock()
		if n > 0 && len(st.Lookup("bob@example.com")) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := st.Lookup("bob@example.com"); len(got) != 0 {
		t.Fatalf("silent device's binding still held: %+v", got)
	}
	if got := st.Lookup("alice@example.com"); len(got) != 1 {
		t.Fatalf("answering device's binding was removed")
	}
	time.Sleep(1100 * time.Millisecond) // one more expiry pass: no second OnExpire
	mu.Lock()
	if diff := cmp.Diff([]string{"bob@example.com"}, expired); diff != "" {
		t.Errorf("OnExpire calls (-want +got):\n%s", diff)
	}
	mu.Unlock()
	if n := len(silent.received()); n < 2 {
		t.Errorf("silent device got %d pings, want at least 2 before removal", n)
	}
	if n := len(alive.received()); n < 3 {
		t.Errorf("answering device got %d pings, want at least 3", n)
	}
	if *unclaimed != 0 {
		t.Errorf("%d datagrams reached pinhole's socket that Reply did not claim", *unclaimed)
	}
	for _, ping := range alive.received() {
		if !bytes.HasPrefix(ping, []byte("OPTIONS sip:alice@example.com;ob SIP/2.0\r\n")) {
			t.Fatalf("ping to alice:\n%s", ping)
		}
	}
}

// TestReRegisteredDeviceKept: a device that does not answer OPTIONS but
// refreshes its registration is alive.
func TestReRegisteredDeviceKept(t *testing.T) {
	var p *Pinger
	conn, socks, _ := edge(t, &p)
	dev := startDevice(t)
	dev.setMute(true)
	b := natBinding("dave@example.com", addrOf(dev.conn), addrOf(conn))
	st := store(t, nil, b)
	p = newPinger(t, Config{Interval: time.Second, Method: MethodOptions, MaxMissed: 1, Store: st, Sockets: socks, Slots: 1})
	p.cycle(context.Background(), time.Now())
	time.Sleep(1100 * time.Millisecond) // Updated has second precision
	if _, err := st.Update(b.AOR, func(cur []location.Binding) ([]location.Binding, error) {
		cur[0].CSeq++
		cur[0].Updated = time.Time{} // now
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	p.cycle(context.Background(), time.Now())
	time.Sleep(1100 * time.Millisecond)
	if len(st.Lookup(b.AOR)) != 1 {
		t.Fatal("a device that re-registered was removed for not answering OPTIONS")
	}
	p.cycle(context.Background(), time.Now())
	time.Sleep(1100 * time.Millisecond)
	if len(st.Lookup(b.AOR)) != 0 {
		t.Fatal("a device silent for a whole interval was kept with max_missed 1")
	}
}

// TestCRLFKeepsBindings: CRLF pings go out but never remove anything.
func TestCRLFKeepsBindings(t *testing.T) {
	var p *Pinger
	conn, socks, _ := edge(t, &p)
	dev := startDevice(t)
	b := natBinding("erin@example.com", addrOf(dev.conn), addrOf(conn))
	st := store(t, nil, b)
	p = newPinger(t, Config{Interval: time.Second, Method: MethodCRLF, MaxMissed: 1, Store: st, Sockets: socks, Slots: 1})
	for range 3 {
		p.cycle(context.Background(), time.Now())
	}
	waitFor(t, func() bool { return len(dev.received()) == 3 })
	for _, m := range dev.received() {
		if string(m) != "\r\n\r\n" {
			t.Fatalf("CRLF ping = %q", m)
		}
	}
	if len(st.Lookup(b.AOR)) != 1 {
		t.Fatal("CRLF pings removed a binding")
	}
}

// TestBatches: more targets than one sendmmsg carries all get their ping,
// each from the registered socket.
func TestBatches(t *testing.T) {
	var p *Pinger
	conn, socks, _ := edge(t, &p)
	sink := listen(t)
	var bs []location.Binding
	const n = 3*maxBatch + 5
	base := addrOf(sink)
	for i := range n {
		// One real receiver; distinct remote ports on other loopback
		// addresses make distinct flows that go nowhere.
		remote := base
		if i > 0 {
			remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(i)}), 40000+uint16(i))
		}
		bs = append(bs, natBinding(fmt.Sprintf("u%d@example.com", i), remote, addrOf(conn)))
	}
	st := store(t, nil, bs...)
	p = newPinger(t, Config{Interval: time.Second, Method: MethodOptions, Store: st, Sockets: socks, Slots: 1})
	before := sentTotal.Get()
	p.cycle(context.Background(), time.Now())
	if got := sentTotal.Get() - before; got != n {
		t.Errorf("sent %d pings, want %d", got, n)
	}
	buf := make([]byte, 2048)
	_ = sink.SetReadDeadline(time.Now().Add(2 * time.Second))
	k, from, err := sink.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("the real receiver got no ping: %v", err)
	}
	if from != addrOf(conn) {
		t.Errorf("ping came from %v, not the registered socket %v", from, addrOf(conn))
	}
	if _, ok := Token(bytes.Replace(buf[:k], []byte("OPTIONS sip:u0@example.com;ob SIP/2.0"), []byte("SIP/2.0 200 OK"), 1)); !ok {
		t.Errorf("ping carries no token:\n%s", buf[:k])
	}
}

func TestNewRejects(t *testing.T) {
	st := store(t, nil)
	socks := func(netip.AddrPort) (syscall.RawConn, error) { return nil, errors.New("none") }
	for _, c := range []Config{{Interval: 0, Store: st, Sockets: socks}, {Interval: time.Second, Sockets: socks}, {Interval: time.Second, Store: st}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	if _, err := ParseMethod("stun"); err == nil {
		t.Error("ParseMethod accepted stun")
	}
}

func newPinger(t *testing.T, cfg Config) *Pinger {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPingsOwnedOnly: with ActsFor, a binding another edge owns is not
// pinged from here (its NAT would drop the ping, and its owner pings it);
// this edge's own binding and one without an owner are.
func TestPingsOwnedOnly(t *testing.T) {
	var p *Pinger
	conn, socks, _ := edge(t, &p)
	mine, theirs, unowned := startDevice(t), startDevice(t), startDevice(t)
	bm := natBinding("mine@example.com", addrOf(mine.conn), addrOf(conn))
	bm.Edge = "a"
	bt := natBinding("theirs@example.com", addrOf(theirs.conn), addrOf(conn))
	bt.Edge = "b"
	bu := natBinding("old@example.com", addrOf(unowned.conn), addrOf(conn))
	st := store(t, nil, bm, bt, bu)
	acts := func(b location.Binding) bool { return b.Edge == "" || b.Edge == "a" }
	p = newPinger(t, Config{Interval: time.Second, Method: MethodOptions, Store: st, Sockets: socks, Slots: 1, ActsFor: acts})
	before := sentTotal.Get()
	p.cycle(context.Background(), time.Now())
	if got := sentTotal.Get() - before; got != 2 {
		t.Errorf("sent %d pings, want 2 (own and unowned)", got)
	}
	deadline := time.Now().Add(2 * time.Second)
	for (len(mine.received()) == 0 || len(unowned.received()) == 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(mine.received()) == 0 || len(unowned.received()) == 0 {
		t.Errorf("own binding got %d pings, unowned %d; want one each", len(mine.received()), len(unowned.received()))
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(theirs.received()); n != 0 {
		t.Errorf("the binding edge b owns got %d pings from edge a", n)
	}
}
