//go:build integration

package load_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinhole-sip/pinhole/bench/digest"
	"github.com/pinhole-sip/pinhole/bench/echo"
	"github.com/pinhole-sip/pinhole/bench/load"
	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBinaries()
	os.Exit(code)
}

const smokeDevices = 40

// smokeConfig is a run of a second at a low rate: enough for every message
// of the scenario to cross, with nothing timed.
func smokeConfig(t *testing.T, server netip.AddrPort, scenario string, sources string) load.Config {
	t.Helper()
	c := load.Defaults()
	c.Server, c.Domain = server, server.Addr().String()
	c.Devices, c.Scenario = smokeDevices, scenario
	c.Sources = netip.MustParsePrefix(sources)
	// Batch io binds the wildcard address on PortBase and PortBase+1: a
	// port the kernel just gave out is free, and its neighbour almost
	// always.
	c.Sockets = 2
	c.PortBase = testutil.FreePort(t, netip.IPv4Unspecified())
	if c.PortBase >= 65535 {
		c.PortBase = 40000
	}
	c.Rate, c.PrepareRate = 40, 400
	c.Duration, c.Warmup = 1500*time.Millisecond, 200*time.Millisecond
	c.CallHold = 50 * time.Millisecond
	c.FloodRate, c.FloodSources = 200, 2
	c.Refresh, c.Keepalive, c.CallRate = 2*time.Second, time.Second, 5
	c.RegisterRate = 5
	c.RetryAfter = 200 * time.Millisecond
	if scenario == load.ScenarioAvalanche {
		// The longest it may take: the run ends when every device holds
		// a 200, a second or so here.
		c.Duration = 10 * time.Second
	}
	return c
}

// writeCredentials writes a credentials file (realm pinhole, MD5) for the
// load's first devices users and returns its path.
func writeCredentials(t *testing.T, devices int) string {
	t.Helper()
	var b strings.Builder
	c0 := load.Defaults()
	for i := range devices {
		u := c0.User(i)
		fmt.Fprintf(&b, "%s pinhole %s\n", u, digest.HA1(digest.MD5, u, "pinhole", load.Password(u)))
	}
	creds := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(creds, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return creds
}

// TestSmokeAgainstPinhole runs every scenario against a real pinhole with
// digest authentication and checks that each did what it says, not how
// fast; register, refresh and the avalanche also read pinhole's metrics
// (-server-metrics), whose counts must agree with the generator's.
func TestSmokeAgainstPinhole(t *testing.T) {
	cfg := testutil.DefaultConfig(t)
	cfg.Log.Level = "info" // the ready line is logged at info
	cfg.Auth.Credentials, cfg.Auth.NonceTTL = writeCredentials(t, smokeDevices), 300*time.Second
	// The load's AORs are in the server's address, and its HA1s in realm
	// pinhole: one domain, so that realm serves it (with several, only the
	// first domain's realm is auth.realm, docs/auth.md).
	cfg.Domains = []string{"127.0.0.1"}
	cfg.Listen.TCP = nil
	cfg.Metrics.Listen = fmt.Sprintf("%s:%d", testutil.Loopback, testutil.FreePort(t, testutil.Loopback))
	ph := testutil.StartPinhole(t, nil, cfg)
	server := netip.MustParseAddrPort(ph.Config.Listen.UDP[0])
	metrics := "http://" + cfg.Metrics.Listen + "/metrics"

	for k, sc := range load.Scenarios {
		t.Run(sc, func(t *testing.T) {
			// Each scenario on its own source addresses: pinhole may still
			// retransmit to the previous one's devices.
			c := smokeConfig(t, server, sc, fmt.Sprintf("127.78.%d.0/24", k))
			checked := sc == load.ScenarioRegister || sc == load.ScenarioRefresh || sc == load.ScenarioAvalanche
			if checked {
				c.ServerMetrics = metrics
			}
			res, err := load.Run(context.Background(), c)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if res.Prepare != nil {
				if got := res.Prepare.Actions["register"].Succeeded; got != smokeDevices {
					t.Errorf("prepare registered %d of %d devices: %+v", got, smokeDevices, res.Prepare.Actions["register"])
				}
			}
			if checked && (res.ServerSide == nil || !res.ServerSide.OK || res.ServerSide.RegistrarSeen+res.ServerSide.Absorbed == 0) {
				t.Errorf("pinhole's own counts: %+v", res.ServerSide)
			}
			if res.Run.Refused > 0 || res.Run.Unparsable > 0 {
				t.Errorf("refused %d, unparsable %d", res.Run.Refused, res.Run.Unparsable)
			}
			ok := func(action string) {
				t.Helper()
				a := res.Run.Actions[action]
				if a.Succeeded == 0 || a.Failed > 0 {
					t.Errorf("%s: %d succeeded, %d failed; run: %+v", action, a.Succeeded, a.Failed, res.Run)
				}
			}
			switch sc {
			case load.ScenarioRegister:
				ok("register")
				if k := res.Run.Messages("register_initial"); k.Challenged == 0 {
					t.Errorf("first registrations were not challenged: %+v", k)
				}
			case load.ScenarioRefresh, load.ScenarioFlood:
				ok("refresh")
				if sc == load.ScenarioFlood && res.Run.Messages("flood").Sent == 0 {
					t.Errorf("no flood sent")
				}
			case load.ScenarioKeepalive:
				// pinhole's XDP program is not attached by the daemon yet:
				// keepalives are sent, replies are counted, none required.
				if res.Run.Messages("keepalive").Sent == 0 {
					t.Errorf("no keepalive sent")
				}
			case load.ScenarioCalls:
				ok("call")
				if res.Run.Messages("invite_in").OK == 0 || res.Run.Messages("bye_in").OK == 0 {
					t.Errorf("callee side not reached: %+v", res.Run.Kinds)
				}
			case load.ScenarioMix:
				ok("refresh")
				ok("keepalive")
				ok("register")
			case load.ScenarioAvalanche:
				ok("register")
				if a := res.Avalanche; a == nil || a.Registered != smokeDevices || a.AllSeconds <= 0 {
					t.Errorf("avalanche: %+v", a)
				}
				if sc := res.ServerSide; sc == nil || sc.BindingsAdded != smokeDevices {
					t.Errorf("avalanche: pinhole holds %+v new bindings, want %d", sc, smokeDevices)
				}
			}
		})
	}
}

// TestSmokeAvalancheRetries runs an avalanche in which some devices have no
// credentials: pinhole refuses them, they start over after RetryAfter until
// the run's limit, and the others all register.
func TestSmokeAvalancheRetries(t *testing.T) {
	cfg := testutil.DefaultConfig(t)
	cfg.Log.Level = "info"
	cfg.Listen.TCP = nil
	cfg.Domains = []string{"127.0.0.1"}
	known := smokeDevices - 4
	cfg.Auth.Credentials, cfg.Auth.NonceTTL = writeCredentials(t, known), 300*time.Second
	ph := testutil.StartPinhole(t, nil, cfg)
	server := netip.MustParseAddrPort(ph.Config.Listen.UDP[0])

	c := smokeConfig(t, server, load.ScenarioAvalanche, "127.78.101.0/24")
	c.Duration = 2 * time.Second
	res, err := load.Run(context.Background(), c)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	a := res.Avalanche
	if a == nil || a.Registered != known || a.AllSeconds != 0 || a.Retries == 0 {
		t.Errorf("avalanche with %d of %d devices known: %+v", known, smokeDevices, a)
	}
}

// TestSmokeAvalancheRestart runs the avalanche after a restart against a
// real pinhole: a few hundred devices register, pinhole is killed
// (SIGKILL, an outage) and started again on the same data directory, and
// every device registers again at once. Pinhole must have read every
// binding back from disk, every device must hold a 200 of the avalanche,
// and pinhole must then hold one binding per device. With the same
// Call-ID (the default: a refresh that failed while the server was down)
// and digest; with a new Call-ID (after a reboot) and without digest.
func TestSmokeAvalancheRestart(t *testing.T) {
	const devices = 300
	for k, tc := range []struct {
		name        string
		auth, fresh bool
	}{
		{name: "same-call-id", auth: true},
		{name: "fresh-call-id-noauth", fresh: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testutil.DefaultConfig(t)
			cfg.Log.Level = "info"
			cfg.Listen.TCP = nil
			cfg.Domains = []string{"127.0.0.1"}
			if tc.auth {
				cfg.Auth.Credentials, cfg.Auth.NonceTTL = writeCredentials(t, devices), 300*time.Second
			}
			cfg.Metrics.Listen = fmt.Sprintf("%s:%d", testutil.Loopback, testutil.FreePort(t, testutil.Loopback))
			ph := testutil.StartPinhole(t, nil, cfg)
			server := netip.MustParseAddrPort(ph.Config.Listen.UDP[0])

			c := smokeConfig(t, server, load.ScenarioAvalanche, fmt.Sprintf("127.78.%d.0/24", 110+k))
			c.Devices, c.Rate, c.PrepareRate = devices, 3000, 1000
			c.Reregister, c.FreshCallID = true, tc.fresh
			c.ServerMetrics = "http://" + cfg.Metrics.Listen + "/metrics"
			restarts := 0
			c.Restart = func(context.Context) error {
				restarts++
				ph.Kill()
				ph.Restart()
				return nil
			}
			res, err := load.Run(context.Background(), c)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if restarts != 1 {
				t.Fatalf("the restart hook ran %d times, want once", restarts)
			}
			a := res.Avalanche
			if a == nil || a.Prepared != devices || a.Registered != devices || a.AllSeconds <= 0 {
				t.Fatalf("avalanche after a restart: %+v", a)
			}
			want := map[bool]string{false: "reregister", true: "reregister-fresh"}[tc.fresh]
			if a.Mode != want {
				t.Errorf("mode %q, want %q", a.Mode, want)
			}
			sc := res.ServerSide
			if sc == nil {
				t.Fatalf("no server counts")
			}
			if !sc.OK || sc.BindingsBefore != devices || sc.BindingsHeld != devices {
				t.Errorf("pinhole began the avalanche with %v bindings and holds %v, want %d and %d: %+v",
					sc.BindingsBefore, sc.BindingsHeld, devices, devices, sc)
			}
			// What the devices sent: a refresh of the registration they had
			// (same Call-ID, next CSeq), or a first contact.
			initial, refresh := res.Run.Messages("register_initial"), res.Run.Messages("register_refresh")
			if tc.fresh && (initial.Sent < devices || refresh.Sent != 0) || !tc.fresh && (refresh.Sent < devices || initial.Sent != 0) {
				t.Errorf("sent %d first contacts and %d refreshes", initial.Sent, refresh.Sent)
			}
			if res.Run.Refused > 0 || res.Run.Unparsable > 0 {
				t.Errorf("refused %d, unparsable %d", res.Run.Refused, res.Run.Unparsable)
			}
		})
	}
}

// TestSmokeFastPathOneProc runs first registrations through the fast
// path of a pinhole whose environment says GOMAXPROCS=1 and whose threads
// share one CPU, as a pinned process or a container limited to one CPU
// gets from Go. pinhole must raise it (fastpath.reserveProcs): with one P,
// every REGISTER the loop hands to the slow path waits for the runtime's
// monitor to take that P back from the loop's epoll_wait (before the fix,
// 2 000 registrations/s on one core got no 200 within 2 s and the
// hand-off shed half of them; docs/fastpath.md, "Threads and Ps"). What
// is checked: pinhole runs with a P for its loop and four spare, and
// registrations at a rate the race-enabled build has room for all
// complete, none shed, neither by the hand-off nor by the registrar's
// queue (where the loop's read filter puts REGISTERs).
func TestSmokeFastPathOneProc(t *testing.T) {
	const devices = 1000
	t.Setenv("GOMAXPROCS", "1") // inherited by pinhole's process
	cfg := testutil.DefaultConfig(t)
	cfg.Log.Level = "info"
	cfg.Listen.TCP = nil
	cfg.Domains = []string{"127.0.0.1"}
	cfg.FastPath.Enabled, cfg.FastPath.Loops = true, 1
	cfg.Auth.Credentials, cfg.Auth.NonceTTL = writeCredentials(t, devices), 300*time.Second
	cfg.Metrics.Listen = fmt.Sprintf("%s:%d", testutil.Loopback, testutil.FreePort(t, testutil.Loopback))
	ph := testutil.StartPinhole(t, nil, cfg)
	// Every thread on one CPU, as compare.sh pins it (taskset): sysmon
	// then shares that CPU too, and the wait shows.
	if out, err := exec.Command("taskset", "-a", "-p", "-c", "0", strconv.Itoa(ph.PID())).CombinedOutput(); err != nil {
		t.Fatalf("pin pinhole to CPU 0: %v\n%s", err, out)
	}
	if got := testutil.Metrics(t, nil, cfg.Metrics.Listen)["go_gomaxprocs"]; got != 5 {
		t.Errorf("pinhole runs with GOMAXPROCS %v, want 5 (one loop and four spare Ps)", got)
	}

	c := smokeConfig(t, netip.MustParseAddrPort(ph.Config.Listen.UDP[0]), load.ScenarioRegister, "127.78.120.0/22")
	c.Devices, c.Rate = devices, 400
	c.Duration, c.Warmup = 2*time.Second, 200*time.Millisecond
	c.ServerMetrics = "http://" + cfg.Metrics.Listen + "/metrics"
	res, err := load.Run(context.Background(), c)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	a := res.Run.Actions["register"]
	// Busy: a device whose registration was still out when its next was
	// due, which happens only when answers take longer than the
	// devices' turn (a second here).
	if a.Succeeded == 0 || a.Failed > 0 || a.Late > 0 || a.Busy > 0 {
		t.Errorf("first registrations through the fast path: %d succeeded, %d failed, %d late, %d skipped while the last was out; run: %+v",
			a.Succeeded, a.Failed, a.Late, a.Busy, res.Run)
	}
	if sc := res.ServerSide; sc == nil || !sc.OK || sc.Shed > 0 {
		t.Errorf("pinhole's own counts: %+v", sc)
	}
	if shed := testutil.Metrics(t, nil, cfg.Metrics.Listen)["pinhole_registrar_shed_total"]; shed > 0 {
		t.Errorf("the registrar's queue shed %v REGISTERs", shed)
	}
}

// TestSmokeNATPings registers devices that look NAT'd (a private address in
// Contact) with a pinhole that pings every second, and checks that the
// pings arrive at the devices' sockets and are answered.
func TestSmokeNATPings(t *testing.T) {
	cfg := testutil.DefaultConfig(t)
	cfg.Log.Level = "info"
	cfg.Listen.TCP = nil
	cfg.NATPing = config.NATPing{Interval: time.Second, Method: "options", MaxMissed: 3}
	ph := testutil.StartPinhole(t, nil, cfg)
	server := netip.MustParseAddrPort(ph.Config.Listen.UDP[0])

	c := smokeConfig(t, server, load.ScenarioIdle, "127.78.100.0/24")
	c.ContactHost = netip.MustParseAddr("192.168.1.2")
	c.Duration, c.Warmup = 3*time.Second, 500*time.Millisecond
	res, err := load.Run(context.Background(), c)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Run.NATPings == 0 {
		t.Errorf("no NAT ping answered in %.1fs: %+v", res.Run.Seconds, res.Run)
	}
	if k := res.Run.Messages("options_in"); k.Replies != res.Run.NATPings {
		t.Errorf("%d OPTIONS answered, %d of them NAT pings: other OPTIONS reached the devices", k.Replies, res.Run.NATPings)
	}
}

// startEcho serves the echo responder on a free loopback port until the
// test ends, and returns its address and counters.
func startEcho(t *testing.T) (netip.AddrPort, *echo.Stats) {
	t.Helper()
	addr := netip.AddrPortFrom(testutil.Loopback, uint16(testutil.FreePort(t, testutil.Loopback)))
	ctx, cancel := context.WithCancel(context.Background())
	st := new(echo.Stats)
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- echo.Serve(ctx, addr, echo.Blocking, st, ready) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("echo: %v", err)
		}
	})
	<-ready
	return addr, st
}

// TestSmokeAgainstEcho runs the generator against the trivial responder,
// as the comparison does to report the generator's ceiling.
func TestSmokeAgainstEcho(t *testing.T) {
	addr, st := startEcho(t)
	for _, sc := range []string{load.ScenarioRegister, load.ScenarioRefresh, load.ScenarioCalls, "refresh/socket"} {
		c := smokeConfig(t, addr, strings.TrimSuffix(sc, "/socket"), "127.79.0.0/24")
		if strings.HasSuffix(sc, "/socket") { // one connected socket per device
			// Ports below the kernel's ephemeral range, at a random base:
			// 10000, the default, is where a generator started by hand
			// (or sipp) on the same machine is likely to sit.
			c.IO, c.PortBase = load.IOSocket, 20000+rand.IntN(10000)
		}
		res, err := load.Run(context.Background(), c)
		if err != nil {
			t.Fatalf("%s: %v", sc, err)
		}
		var succeeded uint64
		for _, a := range res.Run.Actions {
			succeeded += a.Succeeded
		}
		if succeeded == 0 {
			t.Errorf("%s against echo: nothing succeeded: %+v", sc, res.Run)
		}
	}
	if st.Answered.Load() == 0 {
		t.Errorf("echo answered nothing")
	}
}

// TestSmokeOKLog: with Config.OKLog the refresh scenario writes one line
// per refresh answered 200, each naming a device and a wall-clock time
// within the run, as many as the refreshes it counted successful; the
// preparation's registrations are not among them.
func TestSmokeOKLog(t *testing.T) {
	addr, _ := startEcho(t)
	c := smokeConfig(t, addr, load.ScenarioRefresh, "127.79.1.0/24")
	var log bytes.Buffer
	c.OKLog = &log
	began := time.Now().UnixMilli()
	res, err := load.Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	ended := time.Now().UnixMilli()
	users := map[string]bool{}
	for i := range c.Devices {
		users[c.User(i)] = true
	}
	lines := strings.Split(strings.TrimSuffix(log.String(), "\n"), "\n")
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 2 || !users[f[0]] {
			t.Fatalf("OK log line %q: want a device's user and a time", l)
		}
		ms, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || ms < began || ms > ended {
			t.Errorf("OK log line %q: time not within the run (%d..%d)", l, began, ended)
		}
	}
	want := res.Span.Actions["refresh"].Succeeded
	if want == 0 || uint64(len(lines)) != want {
		t.Errorf("OK log has %d lines, the run counted %d refreshes answered 200", len(lines), want)
	}
}

// TestSmokeVeth runs the batched generator in one network namespace
// against the echo responder in another, across a veth pair, as
// compare.sh's veth mode does: every device's source address (routed
// local to lo in the generator's namespace) must reach the server and
// its answer come back to that device.
func TestSmokeVeth(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip(8)")
	}
	id := fmt.Sprintf("%04x", os.Getpid()&0xffff)
	gen, srv := "phbtg-"+id, "phbts-"+id
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", gen).Run()
		exec.Command("ip", "netns", "del", srv).Run()
	})
	ip("netns", "add", gen)
	ip("netns", "add", srv)
	ip("link", "add", "ptg"+id, "netns", gen, "type", "veth", "peer", "name", "pts"+id, "netns", srv)
	ip("-n", srv, "addr", "add", "10.203.0.1/24", "dev", "pts"+id)
	ip("-n", gen, "addr", "add", "10.203.0.2/24", "dev", "ptg"+id)
	for _, x := range [][2]string{{gen, "ptg" + id}, {srv, "pts" + id}} {
		ip("-n", x[0], "link", "set", "lo", "up")
		ip("-n", x[0], "link", "set", x[1], "up")
	}
	ip("-n", gen, "route", "add", "local", "10.77.0.0/16", "dev", "lo")
	ip("-n", srv, "route", "add", "10.77.0.0/16", "via", "10.203.0.2")

	addr := netip.MustParseAddrPort("10.203.0.1:5060")
	ctx, cancel := context.WithCancel(context.Background())
	var st echo.Stats
	ready, done := make(chan struct{}), make(chan error, 1)
	go inNetns(srv, done, func() error { return echo.Serve(ctx, addr, echo.Blocking, &st, ready) })
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("echo: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("echo: %v", err)
	}
	c := smokeConfig(t, addr, load.ScenarioRefresh, "10.77.0.0/16")
	c.AllowNonLoopback, c.PortBase = true, 10000 // a fresh namespace: every port is free
	var res *load.Result
	ran := make(chan error, 1)
	go inNetns(gen, ran, func() (err error) {
		res, err = load.Run(context.Background(), c)
		return err
	})
	if err := <-ran; err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := res.Prepare.Actions["register"].Succeeded; got != smokeDevices {
		t.Errorf("prepare registered %d of %d devices across the veth", got, smokeDevices)
	}
	if a := res.Run.Actions["refresh"]; a.Succeeded == 0 || a.Failed > 0 {
		t.Errorf("refresh across the veth: %+v", a)
	}
	if res.Run.Unmatched > 0 {
		t.Errorf("%d answers matched no device", res.Run.Unmatched)
	}
}

// inNetns runs f on a thread of its own moved into network namespace name
// and sends f's error to done. The thread is never unlocked, so the
// runtime discards it instead of reusing a thread in another namespace.
func inNetns(name string, done chan<- error, f func() error) {
	runtime.LockOSThread()
	ns, err := os.Open("/run/netns/" + name)
	if err != nil {
		done <- err
		return
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		done <- fmt.Errorf("setns %s: %w", name, err)
		return
	}
	done <- f()
}
