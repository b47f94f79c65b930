//go:build integration

package testutil

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// deviceNATPort is the port a phone binds; the router must not keep it.
const deviceNATPort = 5060

// TestNATDeviceTranslatesSourcePort proves the premise of every NAT test:
// a datagram from the device reaches the host from the router's address and
// from a port other than the one the device bound.
func TestNATDeviceTranslatesSourcePort(t *testing.T) {
	nat := NATDevice(t, nil)

	host, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(nat.UpstreamAddr, 0)))
	if err != nil {
		t.Fatalf("listen on the host end of the NAT link: %v", err)
	}
	t.Cleanup(func() { host.Close() })
	dst := host.LocalAddr().(*net.UDPAddr).AddrPort()

	var dev *net.UDPConn
	err = nat.Device.Do(func() error {
		var err error
		dev, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(nat.DeviceAddr, deviceNATPort)))
		return err
	})
	if err != nil {
		t.Fatalf("bind the device socket: %v", err)
	}
	t.Cleanup(func() { dev.Close() })

	// A few packets, in case the first is lost while neighbours resolve; each
	// reuses the conntrack entry of the first, so all carry one mapping.
	var src netip.AddrPort
	buf := make([]byte, 64)
	for i := range 5 {
		if _, err := dev.WriteToUDPAddrPort([]byte("ping"), dst); err != nil {
			t.Fatalf("send from the device: %v", err)
		}
		_ = host.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := host.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && i < 4 {
				continue
			}
			t.Fatalf("receive on the host: %v", err)
		}
		if string(buf[:n]) != "ping" {
			t.Fatalf("received %q, want ping", buf[:n])
		}
		src = from
		break
	}
	if src.Addr() != nat.RouterAddr {
		t.Errorf("source address = %s, want the router's %s", src.Addr(), nat.RouterAddr)
	}
	if src.Port() == deviceNATPort {
		t.Errorf("source port = %d, the device's own: the router did not translate it", src.Port())
	}

	// The reply to the translated address must find its way back to the
	// device's socket, or no SIP response would.
	if _, err := host.WriteToUDPAddrPort([]byte("pong"), src); err != nil {
		t.Fatalf("reply from the host: %v", err)
	}
	_ = dev.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := dev.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("device did not get the reply through the NAT: %v", err)
	}
	if string(buf[:n]) != "pong" || from != dst {
		t.Errorf("device got %q from %s, want pong from %s", buf[:n], from, dst)
	}
}

// TestNetNSCleanup proves namespaces and links are gone after their test,
// including after a failing one.
func TestNetNSCleanup(t *testing.T) {
	var names, links []string
	t.Run("topology", func(t *testing.T) {
		nat := NATDevice(t, nil)
		names = append(names, nat.Device.Name, nat.Router.Name)
		// Only this topology's own host-side link: other tests in other
		// packages create links with the same prefix at the same time.
		links = append(links, nat.Uplink.NameA)
		if _, err := run(nil, "ip", "link", "show", nat.Uplink.NameA); err != nil {
			t.Fatalf("host-side veth end %s not found for the NAT link: %v", nat.Uplink.NameA, err)
		}
		listed := mustRun(t, nil, "ip", "netns", "list")
		for _, n := range names {
			if !strings.Contains(listed, n) {
				t.Errorf("namespace %s not listed while the test runs:\n%s", n, listed)
			}
		}
	})
	listed := mustRun(t, nil, "ip", "netns", "list")
	for _, n := range names {
		if strings.Contains(listed, n) {
			t.Errorf("namespace %s still exists after its test ended", n)
		}
	}
	for _, l := range links {
		if out, err := run(nil, "ip", "link", "show", l); err == nil {
			t.Errorf("link %s still exists after its test ended:\n%s", l, out)
		}
	}
}

// TestNetNSCleanupOnFatal runs a subtest that fails after making a namespace
// and checks the namespace is removed anyway. The failing subtest runs in a
// fake testing.TB so this test itself passes.
func TestNetNSCleanupOnFatal(t *testing.T) {
	ft := &fatalTB{TB: t}
	var name string
	func() {
		defer ft.runCleanups()
		defer func() {
			if r := recover(); r != nil && r != errFatal {
				panic(r)
			}
		}()
		name = NewNetNS(ft).Name
		ft.Fatal("simulated failure")
	}()
	if !ft.failed {
		t.Fatal("the simulated test did not fail")
	}
	if strings.Contains(mustRun(t, nil, "ip", "netns", "list"), name) {
		t.Errorf("namespace %s survived a failed test", name)
	}
}

var errFatal = errors.New("fatal")

// fatalTB records failures instead of failing the real test and keeps its
// own cleanups, so a failure can be simulated.
type fatalTB struct {
	testing.TB
	failed   bool
	cleanups []func()
}

func (f *fatalTB) Helper()               {}
func (f *fatalTB) Cleanup(fn func())     { f.cleanups = append(f.cleanups, fn) }
func (f *fatalTB) Failed() bool          { return f.failed }
func (f *fatalTB) Errorf(string, ...any) { f.failed = true }
func (f *fatalTB) Fatal(...any)          { f.failed = true; panic(errFatal) }
func (f *fatalTB) Fatalf(string, ...any) {
	f.failed = true
	panic(errFatal)
}

func (f *fatalTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestHostSubnetIsUnused(t *testing.T) {
	p := HostSubnet(t)
	if !netip.MustParsePrefix("10.0.0.0/8").Contains(p.Addr()) || p.Bits() != 24 {
		t.Fatalf("HostSubnet() = %s, want a /24 inside 10.0.0.0/8", p)
	}
	if got, want := HostAddr(p, 1).Addr().As4()[3], byte(1); got != want {
		t.Errorf("HostAddr(%s, 1) ends in %d", p, got)
	}
}
