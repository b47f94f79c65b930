package slowpath

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/vip"
)

// TestActsFor: a box alone acts for every binding; a box of a pair acts
// only while the virtual address is on it.
func TestActsFor(t *testing.T) {
	b := location.Binding{AOR: "a@x", Contact: "sip:a@192.168.1.2"}
	if !(&Server{}).ActsFor(b) {
		t.Fatal("a box alone does not act")
	}
	var held atomic.Bool
	addr := netip.MustParseAddr("10.0.0.10")
	w, err := vip.Start(vip.Options{Addr: addr, Interval: 5 * time.Millisecond, Local: func() ([]netip.Addr, error) {
		if held.Load() {
			return []netip.Addr{addr}, nil
		}
		return nil, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{vip: w}
	defer s.stopVIP()
	if s.ActsFor(b) {
		t.Error("standby acts")
	}
	held.Store(true)
	deadline := time.Now().Add(2 * time.Second)
	for !s.ActsFor(b) {
		if time.Now().After(deadline) {
			t.Fatal("holding the address, the box still does not act")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
