package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NamePrefix starts the name of every namespace and link the harness makes;
// scripts/netns-cleanup.sh removes what a crashed run left with it.
const NamePrefix = "ph"

// nsPrefix and linkPrefix keep namespaces and links apart for the cleanup
// script. A link name must fit IFNAMSIZ-1 = 15 bytes: "phv" + 8 hex + 1 = 12.
const (
	nsPrefix   = NamePrefix + "test-"
	linkPrefix = NamePrefix + "v"
)

// commandTimeout bounds every ip/nft/sysctl call: they answer in
// milliseconds, so a hang means a broken machine and should fail fast.
const commandTimeout = 15 * time.Second

// NetNS is a network namespace made for one test. A nil *NetNS stands for
// the host's namespace, so helpers take "where to run" as one argument.
type NetNS struct {
	Name string
}

// NewNetNS makes a fresh namespace with its loopback up and deletes it when
// the test ends. Processes still running in it must be stopped by cleanups
// registered later (t.Cleanup runs last-in first-out), which is what
// StartPinhole and Sipp.Start do.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	ns := &NetNS{Name: nsPrefix + fmt.Sprintf("%d-", os.Getpid()) + randomHex(t, 3)}
	mustRun(t, nil, "ip", "netns", "add", ns.Name)
	t.Cleanup(func() {
		if out, err := run(nil, "ip", "netns", "delete", ns.Name); err != nil {
			t.Errorf("delete network namespace %s: %v: %s", ns.Name, err, out)
		}
	})
	ns.MustRun(t, "ip", "link", "set", "lo", "up")
	return ns
}

// String names the namespace, "host" for nil.
func (ns *NetNS) String() string {
	if ns == nil {
		return "host"
	}
	return ns.Name
}

// CommandContext returns a command that runs inside the namespace (on the
// host for nil). The context ends the process when it is done.
func (ns *NetNS) CommandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	if ns == nil {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Exec runs a short command inside the namespace and returns its combined
// output; the error includes that output.
func (ns *NetNS) Exec(name string, args ...string) (string, error) {
	return run(ns, name, args...)
}

// MustRun is Exec that fails the test on error.
func (ns *NetNS) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	return mustRun(t, ns, name, args...)
}

// AddRoute routes dst through via inside the namespace; an invalid dst
// (netip.Prefix{}) means the default route.
func (ns *NetNS) AddRoute(t testing.TB, dst netip.Prefix, via netip.Addr) {
	t.Helper()
	to := "default"
	if dst.IsValid() {
		to = dst.String()
	}
	ns.MustRun(t, "ip", "route", "add", to, "via", via.String())
}

// EnableForwarding turns the namespace into a router. Each namespace has its
// own copy of the sysctl, so this never touches the host's.
func (ns *NetNS) EnableForwarding(t testing.TB) {
	t.Helper()
	if ns == nil {
		t.Fatal("refusing to enable IP forwarding on the host")
	}
	ns.MustRun(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
}

// Link is one veth pair: end A in one namespace, end B in another.
type Link struct {
	NameA, NameB string
	NSA, NSB     *NetNS
	AddrA, AddrB netip.Prefix
}

// Veth joins namespaces a and b (nil = host) with a veth pair, gives each end
// its address and brings both up. The pair is deleted when the test ends;
// deleting either namespace would remove it too, this also covers host-host.
func Veth(t testing.TB, a, b *NetNS, addrA, addrB netip.Prefix) *Link {
	t.Helper()
	id := randomHex(t, 4)
	l := &Link{
		NameA: linkPrefix + id + "a", NameB: linkPrefix + id + "b",
		NSA: a, NSB: b, AddrA: addrA, AddrB: addrB,
	}
	args := []string{"link", "add", "name", l.NameA}
	if a != nil {
		args = append(args, "netns", a.Name)
	}
	args = append(args, "type", "veth", "peer", "name", l.NameB)
	if b != nil {
		args = append(args, "netns", b.Name)
	}
	mustRun(t, nil, "ip", args...)
	t.Cleanup(func() {
		// Usually gone already with its namespace; an error here is expected.
		_, _ = run(a, "ip", "link", "delete", l.NameA)
	})
	for _, end := range []struct {
		ns   *NetNS
		name string
		addr netip.Prefix
	}{{a, l.NameA, addrA}, {b, l.NameB, addrB}} {
		if end.addr.IsValid() {
			mustRun(t, end.ns, "ip", "addr", "add", end.addr.String(), "dev", end.name)
		}
		mustRun(t, end.ns, "ip", "link", "set", end.name, "up")
	}
	return l
}

// HostSubnet picks a /24 in 10.0.0.0/8 that no route on the host uses, for a
// link that has one end on the host. The pick is random, so parallel test
// processes rarely race for the same one; a collision fails loudly in
// `ip addr add` rather than misrouting.
func HostSubnet(t testing.TB) netip.Prefix {
	t.Helper()
	routes := mustRun(t, nil, "ip", "-4", "route", "show", "table", "all")
	for range 64 {
		b := randomBytes(t, 2)
		// 10.100.0.0–10.227.255.0: far from the 10.0.x.x that container
		// networks favour.
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100 + b[0]%128, b[1], 0}), 24)
		if !strings.Contains(routes, strings.TrimSuffix(p.Addr().String(), ".0")+".") {
			return p
		}
	}
	t.Fatal("no free 10.x.y.0/24 subnet on the host after 64 tries")
	return netip.Prefix{}
}

// HostAddr returns address n of subnet p with p's length, e.g. 10.1.2.n/24.
func HostAddr(p netip.Prefix, n byte) netip.Prefix {
	a := p.Masked().Addr().As4()
	a[3] = n
	return netip.PrefixFrom(netip.AddrFrom4(a), p.Bits())
}

func run(ns *NetNS, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := ns.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("run %q in %s: %w: %s", cmd.Args, ns, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func mustRun(t testing.TB, ns *NetNS, name string, args ...string) string {
	t.Helper()
	out, err := run(ns, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("read random bytes: %v", err)
	}
	return b
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	return hex.EncodeToString(randomBytes(t, n))
}

// Do runs fn on a goroutine locked to an OS thread that has entered the
// namespace (the host for nil), e.g. to open a socket there: a socket keeps
// the namespace it was made in. fn must not start goroutines that expect to
// be in the namespace, since they run on other threads.
func (ns *NetNS) Do(fn func() error) error {
	if ns == nil {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked on failure to return: the runtime then ends the
		// thread instead of reusing it in the wrong namespace.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("open current network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns.Name))
		if err != nil {
			errc <- fmt.Errorf("open network namespace %s: %w", ns.Name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", ns.Name, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(fnErr, fmt.Errorf("leave network namespace %s: %w", ns.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// ListenUDP opens a UDP socket at addr inside ns (the host for nil),
// closed when the test ends; a port of 0 picks a free one.
func (ns *NetNS) ListenUDP(t testing.TB, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatalf("listen on udp %v in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
