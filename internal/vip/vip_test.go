package vip

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeAddrs is a box's address list a test changes as keepalived would.
type fakeAddrs struct {
	mu    sync.Mutex
	addrs []netip.Addr
	err   error
}

func (f *fakeAddrs) set(err error, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs, f.err = nil, err
	for _, a := range addrs {
		f.addrs = append(f.addrs, netip.MustParseAddr(a))
	}
}

func (f *fakeAddrs) local() ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addrs, f.err
}

// waitActive polls w until Active reports want, failing after 2 s (ten
// times the poll interval's worst case under load).
func waitActive(t *testing.T, w *Watcher, want bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for w.Active() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Active() stayed %v, want %v", !want, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWatcher: Active is right from Start's return, follows the address
// on and off the box, and a failed read keeps the last answer.
func TestWatcher(t *testing.T) {
	var f fakeAddrs
	f.set(nil, "10.0.0.11", "127.0.0.1")
	w, err := Start(Options{Addr: netip.MustParseAddr("10.0.0.10"), Interval: 10 * time.Millisecond, Local: f.local})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Active() {
		t.Fatal("active without the address")
	}
	before := transitionsTotal.Get()
	f.set(nil, "10.0.0.11", "10.0.0.10")
	waitActive(t, w, true)
	f.set(errors.New("netlink: no buffer space"))
	time.Sleep(50 * time.Millisecond)
	if !w.Active() {
		t.Fatal("a failed read made the box standby")
	}
	f.set(nil, "10.0.0.11")
	waitActive(t, w, false)
	if got := transitionsTotal.Get() - before; got != 2 {
		t.Errorf("transitions counted %d, want 2", got)
	}
}

// TestWatcherMapped: an IPv4 address the interfaces list as IPv4-mapped
// IPv6 still counts.
func TestWatcherMapped(t *testing.T) {
	var f fakeAddrs
	f.set(nil, "::ffff:10.0.0.10")
	w, err := Start(Options{Addr: netip.MustParseAddr("10.0.0.10"), Local: f.local})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if !w.Active() {
		t.Error("not active with the address mapped")
	}
}

// TestWatcherStartError: a box that cannot read its addresses at start
// does not guess.
func TestWatcherStartError(t *testing.T) {
	var f fakeAddrs
	f.set(errors.New("no netlink"))
	if _, err := Start(Options{Addr: netip.MustParseAddr("10.0.0.10"), Local: f.local}); err == nil {
		t.Error("Start succeeded without reading the addresses")
	}
	if _, err := Start(Options{}); err == nil {
		t.Error("Start succeeded without an address")
	}
}

// TestInterfaceAddrs: the real reader finds loopback.
func TestInterfaceAddrs(t *testing.T) {
	as, err := interfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a == netip.MustParseAddr("127.0.0.1") {
			return
		}
	}
	t.Errorf("127.0.0.1 not among %v", as)
}
