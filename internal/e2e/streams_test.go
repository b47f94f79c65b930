//go:build integration

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// The stream attack: pinhole in a namespace with no route out, an attacker
// namespace on a veth pair that opens thousands of TCP connections from
// many addresses and leaves them idle or trickles a byte at a time, and a
// device in the same namespace, on an address of its own, that registers
// over UDP and TCP meanwhile.
//
//	attacker 10.79.1.1-20, device 10.79.200.1 ── 10.79.0.1 [pinhole]

const (
	strEdge   = "10.79.0.1"
	strDevice = "10.79.200.1"
)

type streamLab struct {
	edge, atk *testutil.NetNS
	ph        *testutil.Pinhole
	metrics   string
	sources   []string
}

func newStreamLab(t *testing.T, sources int, edit func(*testutil.Config)) *streamLab {
	t.Helper()
	l := &streamLab{edge: testutil.NewNetNS(t), atk: testutil.NewNetNS(t), metrics: "127.0.0.1:9060"}
	link := testutil.Veth(t, l.edge, l.atk, netip.MustParsePrefix(strEdge+"/16"), netip.MustParsePrefix(strDevice+"/16"))
	for i := 1; i <= sources; i++ {
		a := fmt.Sprintf("10.79.1.%d", i)
		l.atk.MustRun(t, "ip", "addr", "add", a+"/16", "dev", link.NameB)
		l.sources = append(l.sources, a)
	}
	cfg := testutil.DefaultConfig(t)
	cfg.Listen.UDP = []string{strEdge + ":5060"}
	cfg.Listen.TCP = []string{strEdge + ":5060"}
	// Thousands of closed connections would fill the log at debug.
	cfg.Log.Level = "info"
	cfg.Log.Components = map[string]string{"sipgo": "error"}
	cfg.Metrics.Listen = l.metrics
	if edit != nil {
		edit(&cfg)
	}
	l.ph = testutil.StartPinhole(t, l.edge, cfg)
	return l
}

// pid finds the pinhole process by the configuration file it was given.
func (l *streamLab) pid(t *testing.T) int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil || !strings.Contains(string(b), l.ph.ConfigPath()) || strings.Contains(string(b), "netns\x00exec") {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		return pid
	}
	t.Fatal("pinhole's process not found")
	return 0
}

// rssMB is the resident memory of pid in MiB (VmRSS).
func rssMB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return -1
}

// dialFrom opens a TCP connection from src in the attacker namespace.
func (l *streamLab) dialFrom(src string) (net.Conn, error) {
	var c net.Conn
	err := l.atk.Do(func() (err error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err = d.Dial("tcp", strEdge+":5060")
		return err
	})
	return c, err
}

// held is what became of one attacking connection.
type held struct {
	refused bool          // closed before any byte was sent back and at once
	lasted  time.Duration // until pinhole closed it
	trickle bool
}

// TestStreamFlood opens 10 000 TCP connections to pinhole from 20
// addresses, half silent and half trickling a REGISTER one byte every two
// seconds, while a device registers 100 users over UDP and 100 over TCP.
// Every registration must succeed, pinhole must refuse what passes
// max_per_source, close the silent connections at handshake_timeout and
// the trickling ones at message_timeout, and its memory and goroutines
// must stay bounded.
func TestStreamFlood(t *testing.T) {
	const (
		sources   = 20
		perSource = 500 // 10 000 in all
		allowed   = 50  // streams.max_per_source
		handshake = 5 * time.Second
		message   = 8 * time.Second
	)
	l := newStreamLab(t, sources, func(c *testutil.Config) {
		c.Streams.MaxPerSource = allowed
		c.Streams.HandshakeTimeout = handshake
		c.Streams.MessageTimeout = message
	})
	pid := l.pid(t)
	rss0 := rssMB(pid)

	// The flood: every connection is opened, then watched until pinhole
	// closes it.
	results := make(chan held, sources*perSource)
	var wg sync.WaitGroup
	var dialErrs atomic.Int64
	start := time.Now()
	for i, src := range l.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perSource {
				c, err := l.dialFrom(src)
				if err != nil {
					dialErrs.Add(1)
					continue
				}
				trickle := (i+j)%2 == 1
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					opened := time.Now()
					if trickle {
						go func() {
							msg := floodRegister(src)
							for k := 0; k < len(msg); k++ {
								if _, err := c.Write([]byte{msg[k]}); err != nil {
									return
								}
								time.Sleep(2 * time.Second)
							}
						}()
					}
					_ = c.SetReadDeadline(time.Now().Add(40 * time.Second))
					_, err := c.Read(make([]byte, 64))
					d := time.Since(opened)
					var ne net.Error
					if ok := asNetErr(err, &ne); ok && ne.Timeout() {
						d = 40 * time.Second // kept past every limit
					}
					results <- held{refused: d < 500*time.Millisecond, lasted: d, trickle: trickle}
				}()
			}
		}()
	}

	// Meanwhile a device registers 100 users over UDP and 100 over TCP.
	time.Sleep(2 * time.Second)
	users := make([]testutil.User, 100)
	for i := range users {
		users[i] = testutil.User{Name: fmt.Sprintf("dev%03d", i), Password: "-", Expires: 600}
	}
	var peakRSS, peakGo, peakConns float64
	sample := func() {
		m := testutil.Metrics(t, l.edge, l.metrics)
		peakGo = max(peakGo, m["go_goroutines"])
		peakConns = max(peakConns, m[`pinhole_stream_connections{transport="TCP"}`])
		peakRSS = max(peakRSS, rssMB(pid))
	}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			sample()
			select {
			case <-stopSampling:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	for _, tr := range []string{"u1", "t1"} {
		r := testutil.Sipp{
			Scenario: scenario(t, "register.xml"), Remote: strEdge + ":5060", NS: l.atk,
			LocalIP: netip.MustParseAddr(strDevice), Transport: tr,
			Users: users, Calls: len(users), Rate: 20, Limit: 20,
			AuthURI: domain, Vars: map[string]string{"domain": domain},
			Timeout: 30 * time.Second, NoMessageTrace: true,
		}.Run(t)
		pct := 100 * float64(r.Successful) / float64(len(users))
		t.Logf("device over %s during the flood: %d of %d registered (%.0f %%)", tr, r.Successful, len(users), pct)
		if r.ExitCode != testutil.SippExitOK || r.Successful != len(users) {
			t.Errorf("registrations over %s during the flood: %d of %d:\n%s", tr, r.Successful, len(users), r.Report())
		}
	}

	wg.Wait()
	close(stopSampling)
	<-sampled
	close(results)
	var refused, silentKept, trickleKept, accepted int
	var worstSilent, worstTrickle time.Duration
	for h := range results {
		switch {
		case h.refused:
			refused++
		case h.trickle:
			accepted++
			worstTrickle = max(worstTrickle, h.lasted)
			if h.lasted > message+3*time.Second {
				trickleKept++
			}
		default:
			accepted++
			worstSilent = max(worstSilent, h.lasted)
			if h.lasted > handshake+3*time.Second {
				silentKept++
			}
		}
	}
	m := testutil.Metrics(t, l.edge, l.metrics)
	t.Logf("flood of %d connections from %d addresses in %s: %d refused at once, %d accepted (dial errors %d); longest silent %s, longest trickling %s",
		sources*perSource, sources, time.Since(start).Round(time.Second), refused, accepted, dialErrs.Load(), worstSilent.Round(100*time.Millisecond), worstTrickle.Round(100*time.Millisecond))
	t.Logf("pinhole: RSS %.0f MiB before, peak %.0f MiB; peak goroutines %.0f; peak open TCP connections %.0f", rss0, peakRSS, peakGo, peakConns)
	t.Logf("counters: refused max_per_source %.0f, closed handshake_timeout %.0f, message_timeout %.0f",
		m[`pinhole_stream_refused_total{reason="max_per_source"}`], m[`pinhole_stream_closed_total{reason="handshake_timeout"}`], m[`pinhole_stream_closed_total{reason="message_timeout"}`])

	if accepted > sources*allowed+len(users) || refused < sources*(perSource-allowed)/2 {
		t.Errorf("%d accepted and %d refused: max_per_source %d from %d addresses should refuse most of %d", accepted, refused, allowed, sources, sources*perSource)
	}
	if silentKept > 0 || trickleKept > 0 {
		t.Errorf("connections kept past their deadline: %d silent (handshake %s), %d trickling (message %s)", silentKept, handshake, trickleKept, message)
	}
	if m[`pinhole_stream_refused_total{reason="max_per_source"}`] < 1 || m[`pinhole_stream_closed_total{reason="message_timeout"}`] < 1 || m[`pinhole_stream_closed_total{reason="handshake_timeout"}`] < 1 {
		t.Error("refusals and closes were not counted")
	}
	if limit := float64(300 * memoryScale); peakRSS > limit {
		t.Errorf("peak RSS %.0f MiB, want under %.0f", peakRSS, limit)
	}
	if peakGo > 4000 {
		t.Errorf("peak goroutines %.0f, want under 4000", peakGo)
	}
}

// floodRegister is a REGISTER over TCP from src, for trickling.
func floodRegister(src string) string {
	return "REGISTER sip:" + domain + " SIP/2.0\r\nVia: SIP/2.0/TCP " + src + ":5060;branch=z9hG4bK-flood\r\n" +
		"From: <sip:flood@" + domain + ">;tag=f\r\nTo: <sip:flood@" + domain + ">\r\nCall-ID: flood-" + src + "\r\n" +
		"CSeq: 1 REGISTER\r\nContact: <sip:flood@" + src + ":5060;transport=tcp>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
}

func asNetErr(err error, ne *net.Error) bool {
	if e, ok := err.(net.Error); ok {
		*ne = e
		return true
	}
	return false
}

// TestStreamDescriptorBudget gives pinhole few file descriptors
// (RLIMIT_NOFILE 600, fd_reserve 200) and holds more TCP connections than
// it may take: those past the reserve are refused and counted, the metrics
// endpoint answers throughout, and once the holders let go TCP serves
// again. Without the reserve the TCP listener stopped for good at the
// first EMFILE (sipgo's accept loop ends on any error).
func TestStreamDescriptorBudget(t *testing.T) {
	const nofile, reserve, hold = 600, 200, 700
	l := newStreamLab(t, 10, func(c *testutil.Config) {
		c.Streams.FDReserve = reserve
		c.Streams.HandshakeTimeout = time.Minute // held, not timed out
	})
	// Soft and hard alike, so nothing in pinhole can raise it back; a
	// test process without CAP_SYS_RESOURCE could not raise its own limit
	// again after lowering it for pinhole to inherit, hence prlimit(2).
	lim := unix.Rlimit{Cur: nofile, Max: nofile}
	if err := unix.Prlimit(l.pid(t), unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatalf("lower pinhole's RLIMIT_NOFILE: %v", err)
	}

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range hold {
		c, err := l.dialFrom(l.sources[i%len(l.sources)])
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%100 == 0 {
			testutil.Metrics(t, l.edge, l.metrics) // fails the test if it does not answer
		}
	}
	time.Sleep(500 * time.Millisecond)
	m := testutil.Metrics(t, l.edge, l.metrics)
	open, limit := m[`pinhole_stream_connections{transport="TCP"}`], m["pinhole_stream_connections_limit"]
	t.Logf("RLIMIT_NOFILE %d, fd_reserve %d: cap %.0f, open %.0f, refused for the reserve %.0f, accept errors %.0f",
		nofile, reserve, limit, open, m[`pinhole_stream_refused_total{reason="fd_reserve"}`], m[`pinhole_stream_accept_errors_total{error="fd_exhausted"}`])
	if limit != nofile-reserve || open != limit {
		t.Errorf("cap %.0f with %.0f open, want %d and full", limit, open, nofile-reserve)
	}
	if m[`pinhole_stream_refused_total{reason="fd_reserve"}`] < hold-(nofile-reserve) {
		t.Errorf("refused for the reserve: %.0f, want at least %d", m[`pinhole_stream_refused_total{reason="fd_reserve"}`], hold-(nofile-reserve))
	}

	for _, c := range conns {
		c.Close()
	}
	conns = nil
	time.Sleep(time.Second)
	users := []testutil.User{{Name: "after", Password: "-", Expires: 600}}
	r := testutil.Sipp{
		Scenario: scenario(t, "register.xml"), Remote: strEdge + ":5060", NS: l.atk,
		LocalIP: netip.MustParseAddr(strDevice), Transport: "t1",
		Users: users, Calls: 1, AuthURI: domain, Vars: map[string]string{"domain": domain},
		Timeout: 15 * time.Second,
	}.Run(t)
	if r.ExitCode != testutil.SippExitOK || r.Successful != 1 {
		t.Errorf("REGISTER over TCP after the holders let go:\n%s", r.Report())
	}
}
