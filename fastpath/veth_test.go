//go:build integration

package fastpath_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// vethServer is the pinhole binary in the server's namespace.
type vethServer struct {
	addr    string // SIP, UDP
	metrics string // HTTP, reached from the devices' namespace
	devices *testutil.NetNS
}

// scrape fetches /metrics over a connection made on the calling thread,
// which is inside the devices' namespace (net/http would dial from a
// goroutine of its own, in whichever namespace its thread is).
func (s vethServer) scrape() (string, error) {
	c, err := net.DialTimeout("tcp", s.metrics, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", s.metrics); err != nil {
		return "", err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", res.Status)
	}
	b, err := io.ReadAll(res.Body)
	return string(b), err
}

// lines reads the server's metric lines that keep reports true.
func (s vethServer) lines(t *testing.T, keep func(string) bool) []string {
	t.Helper()
	var out []string
	err := s.devices.Do(func() error {
		body, err := s.scrape()
		if err != nil {
			return err
		}
		for l := range strings.Lines(body) {
			if l = strings.TrimSuffix(l, "\n"); keep(l) {
				out = append(out, l)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("metrics of %s: %v", s.addr, err)
	}
	return out
}

// metric reads one unlabelled counter (or the sum of a labelled one's
// series).
func (s vethServer) metric(t *testing.T, name string) float64 {
	t.Helper()
	var sum float64
	for _, l := range s.lines(t, func(l string) bool { return strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") }) {
		v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		sum += v
	}
	return sum
}

// counters lists the fast path's metrics that are not 0.
func (s vethServer) counters(t *testing.T) string {
	return strings.Join(s.lines(t, func(l string) bool {
		return strings.HasPrefix(l, "pinhole_fastpath_") && !strings.HasSuffix(l, " 0")
	}), "\n")
}

// settle waits for the fill that follows a slow-path 200 (see
// server.settle): the fill count moves once the entry is stored.
func (s vethServer) settle(t *testing.T, absorbedBefore, fillsBefore float64) {
	t.Helper()
	if s.metric(t, "pinhole_fastpath_absorbed_total") > absorbedBefore {
		return
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if s.metric(t, "pinhole_fastpath_fills_total") > fillsBefore {
			time.Sleep(20 * time.Millisecond) // ristretto applies its Sets asynchronously
			return
		}
	}
}

// TestVethAuthCorpus is TestAuthCorpus across a network: every device
// format of the corpus lives in one namespace, the pinhole binary (fast
// path off, and on) in another, joined by a veth pair whose server end
// does its receive work in a threaded NAPI thread pinned to the core
// pinhole runs on, as a NIC queue's interrupt would be. Each device goes
// through the same life as in TestAuthCorpus — challenges, SHA-256 and
// MD5 answers, refreshes with the next nc, a retransmission, a replayed
// nc, a wrong password, fresh challenges — and every answer must be the
// same header for header (To tag, Date, nonce and the device's port
// aside). The formats the loop vouches for must have been absorbed, as
// pinhole's own metrics count them, or the comparison proves nothing.
func TestVethAuthCorpus(t *testing.T) {
	corpus := loadCorpus(t)
	devNS, srvNS := testutil.NewNetNS(t), testutil.NewNetNS(t)
	sub := testutil.HostSubnet(t)
	devPrefix, srvPrefix := testutil.HostAddr(sub, 1), testutil.HostAddr(sub, 2)
	link := testutil.Veth(t, devNS, srvNS, devPrefix, srvPrefix)
	threadedNAPI(t, srvNS, link.NameB, "0")

	var lines strings.Builder
	seen := map[string]bool{}
	for _, e := range corpus {
		u := corpusUser.FindStringSubmatch(e.tmpl)[1]
		if !seen[u] {
			seen[u] = true
			fmt.Fprintf(&lines, "%s pinhole %s %s\n", u, digest.HA1(digest.MD5, u, "pinhole", u), digest.HA1(digest.SHA256, u, "pinhole", u))
		}
	}
	creds := filepath.Join(t.TempDir(), "users.conf")
	if err := os.WriteFile(creds, []byte(lines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	srvIP := srvPrefix.Addr().String()
	start := func(fast bool, sipPort, metricsPort int) vethServer {
		cfg := testutil.DefaultConfig(t)
		cfg.Listen = config.Listen{UDP: []string{fmt.Sprintf("%s:%d", srvIP, sipPort)}}
		cfg.Domains = []string{"example.com"}
		cfg.Auth.Credentials = creds
		cfg.Auth.Algorithms = []string{"SHA-256", "MD5"}
		cfg.Auth.NonceTTL = time.Minute
		cfg.Metrics.Listen = fmt.Sprintf("%s:%d", srvIP, metricsPort)
		cfg.NATPing.Interval = 0
		cfg.FastPath.Enabled = fast
		cfg.FastPath.Loops = 1
		cfg.Log.Level = "info"
		p := testutil.StartPinhole(t, srvNS, cfg)
		// Every thread of pinhole on core 0, with the NAPI thread.
		if out, err := exec.Command("taskset", "-a", "-pc", "0", strconv.Itoa(p.PID())).CombinedOutput(); err != nil {
			t.Fatalf("pin pinhole: %v: %s", err, out)
		}
		return vethServer{addr: cfg.Listen.UDP[0], metrics: cfg.Metrics.Listen, devices: devNS}
	}
	slow, fast := start(false, 5060, 9060), start(true, 5062, 9062)

	dialFrom := func(t *testing.T, to string) *device {
		ra := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(to))
		var c *net.UDPConn
		if err := devNS.Do(func() (err error) {
			c, err = net.DialUDP("udp", &net.UDPAddr{IP: devPrefix.Addr().AsSlice()}, ra)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		la := c.LocalAddr().(*net.UDPAddr)
		return &device{t: t, c: c, host: la.IP.String(), port: strconv.Itoa(la.Port)}
	}
	for i, e := range corpus {
		t.Run(e.name, func(t *testing.T) {
			ds, df := &authDevice{d: dialFrom(t, slow.addr)}, &authDevice{d: dialFrom(t, fast.addr)}
			callID := fmt.Sprintf("veth-%d-%s@device", i, e.name)
			absorbed, challenged := fast.metric(t, "pinhole_fastpath_absorbed_total"), fast.metric(t, "pinhole_fastpath_challenges_total")
			liveAuthLife(t, e, callID, ds, df, func() func() {
				a, fl := fast.metric(t, "pinhole_fastpath_absorbed_total"), fast.metric(t, "pinhole_fastpath_fills_total")
				return func() { fast.settle(t, a, fl) }
			})
			gotA := fast.metric(t, "pinhole_fastpath_absorbed_total") - absorbed
			gotC := fast.metric(t, "pinhole_fastpath_challenges_total") - challenged
			// As in TestAuthCorpus: the refresh, its retransmission, the
			// MD5 refresh and the answers to two fresh challenges; the two
			// fresh challenges.
			if e.absorb && (gotA != 5 || gotC != 2) {
				t.Errorf("absorbed %v of 5, challenged %v of 2 (%s); fast path counters:\n%s", gotA, gotC, e.why, fast.counters(t))
			}
			if !e.absorb && gotA+gotC != 0 {
				t.Errorf("absorbed %v, challenged %v, want none (%s)", gotA, gotC, e.why)
			}
		})
	}
}

// threadedNAPI gives a veth end NAPI (GRO on) in a kernel thread of its
// own and pins that thread to cpus, so that the packets' receive work runs
// on the server's core as a NIC queue's would.
func threadedNAPI(t *testing.T, ns *testutil.NetNS, dev, cpus string) {
	t.Helper()
	ns.MustRun(t, "ethtool", "-K", dev, "gro", "on")
	ns.MustRun(t, "sh", "-c", "echo 1 > /sys/class/net/"+dev+"/threaded")
	var pids []string
	for deadline := time.Now().Add(2 * time.Second); len(pids) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ents, _ := os.ReadDir("/proc")
		for _, ent := range ents {
			comm, err := os.ReadFile("/proc/" + ent.Name() + "/comm")
			if err == nil && strings.HasPrefix(strings.TrimSpace(string(comm)), "napi/"+dev+"-") {
				pids = append(pids, ent.Name())
			}
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no threaded NAPI thread for %s", dev)
	}
	for _, pid := range pids {
		if out, err := exec.Command("taskset", "-pc", cpus, pid).CombinedOutput(); err != nil {
			t.Fatalf("pin napi thread %s: %v: %s", pid, err, out)
		}
	}
}
