//go:build integration

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/cmd/pinhole/mgmt"
	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/promtext"
	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// opsToken is the management API's bearer token in these tests.
const opsToken = "e2e-0123456789abcdef"

// scrape reads pinhole's /metrics at addr on the host.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("scrape metrics: %d %v", res.StatusCode, err)
	}
	return promtext.Parse(string(b))
}

// opsServer starts pinhole with metrics and the API on free loopback ports.
func opsServer(t *testing.T, passwords map[string]string, auth bool, edit func(*testutil.Config)) (s *server, api, metricsAddr string) {
	t.Helper()
	metricsAddr = fmt.Sprintf("%s:%d", testutil.Loopback, testutil.FreePort(t, testutil.Loopback))
	s = startServer(t, passwords, auth, func(c *testutil.Config) {
		c.Metrics.Listen = metricsAddr
		api = testutil.EnableAPI(t, c, opsToken)
		c.Log.Level = "info"
		if edit != nil {
			edit(c)
		}
	})
	return s, api, metricsAddr
}

// TestMetricsCountSippRun: after a scripted run the metrics hold exactly
// what it produced: 20 registrations accepted, 3 refused with 423, the
// bindings and AORs they left, one duration sample per REGISTER and
// nothing in flight. The stats call and `pinhole ctl stats` agree.
func TestMetricsCountSippRun(t *testing.T) {
	const n = 20
	s, api, metricsAddr := opsServer(t, nil, false, nil)
	users := make([]testutil.User, n)
	for i := range users {
		users[i] = testutil.User{Name: fmt.Sprintf("m%02d", i), Password: "-", Expires: 600}
	}
	r := testutil.Sipp{
		Scenario: scenario(t, "register.xml"), Remote: s.Addr, LocalIP: testutil.Loopback,
		Users: users, Calls: n, Rate: 50, Limit: 10,
		AuthURI: domain, Vars: map[string]string{"domain": domain},
		Timeout: 30 * time.Second,
	}.Run(t)
	if r.ExitCode != testutil.SippExitOK || r.Successful != n {
		t.Fatalf("registrations: want %d:\n%s", n, r.Report())
	}
	for i := range 3 {
		if got := s.register(t, fmt.Sprintf("short%d", i), "", "Contact: <sip:short@127.0.0.1:7300>", "Expires: 10"); got.Code != "423" {
			t.Fatalf("REGISTER with Expires 10 got %s, want 423", got.Code)
		}
	}
	want := map[string]float64{
		`pinhole_registrar_replies_total{code="200"}`:                   n,
		`pinhole_registrar_replies_total{code="423"}`:                   3,
		`pinhole_location_bindings`:                                     n,
		`pinhole_location_aors`:                                         n,
		`pinhole_location_writes_total`:                                 n,
		`pinhole_sip_request_duration_seconds_count{method="REGISTER"}`: n + 3,
		`pinhole_sip_transactions_active`:                               0,
		`pinhole_draining`:                                              0,
	}
	// A handler's duration is recorded just after its answer left.
	var got map[string]float64
	deadline := time.Now().Add(3 * time.Second)
	for {
		m := scrape(t, metricsAddr)
		got = map[string]float64{}
		for k := range want {
			got[k] = m[k]
		}
		if cmp.Equal(want, got) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics after the run (-want +got):\n%s", diff)
	}

	out, errOut, code := testutil.Ctl(t, nil, api, opsToken, "-json", "stats", "pinhole_registrar_replies_total")
	var st mgmt.Stats
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("ctl stats: exit %d\n%s%s", code, out, errOut)
	}
	replies := map[string]float64{}
	for _, code := range []string{"400", "401", "403", "500", "503"} {
		replies[`pinhole_registrar_replies_total{code="`+code+`"}`] = 0 // exported from the start
	}
	replies[`pinhole_registrar_replies_total{code="200"}`] = n
	replies[`pinhole_registrar_replies_total{code="423"}`] = 3
	if diff := cmp.Diff(replies, st.Metrics); diff != "" {
		t.Errorf("stats call (-want +got):\n%s", diff)
	}
	out, _, _ = testutil.Ctl(t, nil, api, opsToken, "stats", "pinhole_location_bindings")
	if !strings.Contains(out, "pinhole_location_bindings  20") {
		t.Errorf("ctl stats table:\n%s", out)
	}
}

// ctlWant is one `pinhole ctl` run and what it must print.
type ctlWant struct {
	name   string
	token  string
	args   []string
	code   int
	stdout []string // fragments of standard output
	stderr string   // fragment of standard error
}

func runCtl(t *testing.T, ns *testutil.NetNS, api string, tests []ctlWant) {
	t.Helper()
	for _, c := range tests {
		out, errOut, code := testutil.Ctl(t, ns, api, c.token, c.args...)
		ok := code == c.code && strings.Contains(errOut, c.stderr)
		for _, f := range c.stdout {
			ok = ok && strings.Contains(out, f)
		}
		if !ok {
			t.Errorf("%s: pinhole ctl %v: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit %d, stdout with %q, stderr with %q",
				c.name, c.args, code, out, errOut, c.code, c.stdout, c.stderr)
		}
	}
}

// TestAPIAndCtl runs every call through `pinhole ctl` against a running
// pinhole: bindings, dispatch, stats and reload, with wrong and missing
// tokens (401), bad input (400 with a message), unknown bindings and
// destinations (404), and the blocklist answering 409 without XDP. A
// binding removed by the API is gone for SIP too, and a reload of the
// dispatch sets keeps a node an operator took out.
func TestAPIAndCtl(t *testing.T) {
	nodes := []string{
		fmt.Sprintf("sip:127.0.0.1:%d", testutil.FreePort(t, testutil.Loopback)),
		fmt.Sprintf("sip:127.0.0.1:%d", testutil.FreePort(t, testutil.Loopback)),
	}
	farm := func(d *config.Dispatch, uris ...string) {
		var ds []config.DispatchDestination
		for _, u := range uris {
			ds = append(ds, config.DispatchDestination{URI: u})
		}
		d.Sets = []config.DispatchSet{{Name: "fs", Algorithm: "round_robin", Destinations: ds}}
		d.Rules = []config.DispatchRule{{Set: "fs", Methods: []string{"INVITE"}, Domains: []string{"farm.example"}}}
		d.Probe.Interval = 0
	}
	s, api, _ := opsServer(t, nil, false, func(c *testutil.Config) { farm(&c.Dispatch, nodes...) })
	const (
		a1 = "sip:alice@127.0.0.1:7401"
		a2 = "sip:alice@127.0.0.1:7402"
	)
	for _, c := range []string{a1, a2} {
		if got := s.register(t, "alice", "", "Contact: <"+c+">", "Expires: 600"); got.Code != "200" {
			t.Fatalf("register %s: %s", c, got.Code)
		}
	}
	if got := s.register(t, "bob", "", "Contact: <sip:bob@127.0.0.1:7403>", "Expires: 600"); got.Code != "200" {
		t.Fatalf("register bob: %s", got.Code)
	}

	runCtl(t, nil, api, []ctlWant{
		{"no token", "", []string{"bindings", "list"}, 1, nil, "401 Unauthorized: missing or wrong bearer token"},
		{"wrong token", "e2e-0123456789abcdeX", []string{"stats"}, 1, nil, "401 Unauthorized"},
		{"wrong token on reload", "nope", []string{"reload"}, 1, nil, "401 Unauthorized"},
		{"list", opsToken, []string{"bindings", "list"}, 0, []string{"alice@localhost", a1, a2, "bob@localhost", "3 binding(s) shown; 2 AOR(s), 3 binding(s) held"}, ""},
		{"list page", opsToken, []string{"bindings", "list", "-limit", "1"}, 0, []string{"alice@localhost", "more: pinhole ctl bindings list -after alice@localhost"}, ""},
		{"list next page", opsToken, []string{"bindings", "list", "-limit", "1", "-after", "alice@localhost"}, 0, []string{"bob@localhost", "1 binding(s) shown"}, ""},
		{"list bad limit", opsToken, []string{"bindings", "list", "-limit", "0"}, 1, nil, "400 Bad Request: limit \"0\": want a number from 1 to 1000"},
		{"show", opsToken, []string{"bindings", "show", "bob@localhost"}, 0, []string{"sip:bob@127.0.0.1:7403", "UDP"}, ""},
		{"show unknown", opsToken, []string{"bindings", "show", "zoe@localhost"}, 1, nil, "404 Not Found: no bindings for zoe@localhost"},
		{"show not an aor", opsToken, []string{"bindings", "show", "alice"}, 1, nil, "400 Bad Request: aor \"alice\": want user@domain"},
		{"rm unknown", opsToken, []string{"bindings", "rm", "zoe@localhost"}, 1, nil, "404 Not Found: no bindings for zoe@localhost"},
		{"rm unknown contact", opsToken, []string{"bindings", "rm", "alice@localhost", "sip:alice@127.0.0.1:9"}, 1, nil, "404 Not Found: no binding of alice@localhost with contact"},
		{"rm one", opsToken, []string{"bindings", "rm", "alice@localhost", a1}, 0, []string{"removed 1 binding(s)", a1}, ""},
		{"rm usage", opsToken, []string{"bindings", "rm"}, 2, nil, "bindings rm takes an AOR"},

		{"dispatch list", opsToken, []string{"dispatch", "list"}, 0, []string{nodes[0], nodes[1], "up", "never"}, ""},
		{"dispatch down", opsToken, []string{"dispatch", "down", "fs", nodes[1]}, 0, []string{nodes[1], "disabled"}, ""},
		{"dispatch unknown node", opsToken, []string{"dispatch", "up", "fs", "sip:10.9.9.9:5080"}, 1, nil, "404 Not Found: no destination sip:10.9.9.9:5080 in set fs"},
		{"dispatch unknown set", opsToken, []string{"dispatch", "up", "pbx", nodes[0]}, 1, nil, "404 Not Found"},
		{"dispatch usage", opsToken, []string{"dispatch", "sideways", "fs", nodes[0]}, 2, nil, "unknown command"},
		{"dispatch json", opsToken, []string{"-json", "dispatch", "list"}, 0, []string{`"state": "disabled"`, `"state": "up"`}, ""},

		{"blocklist without xdp", opsToken, []string{"blocklist", "list"}, 1, nil, "409 Conflict: the XDP program is not running"},
		{"blocklist bad prefix", opsToken, []string{"blocklist", "add", "192.0.2.0/33"}, 1, nil, "400 Bad Request: prefix \"192.0.2.0/33\""},
		{"blocklist bad duration", opsToken, []string{"blocklist", "add", "192.0.2.1", "soon"}, 1, nil, "400 Bad Request: duration \"soon\""},
		{"unblock bad prefix", opsToken, []string{"blocklist", "rm", "nope"}, 1, nil, "400 Bad Request"},

		{"stats", opsToken, []string{"stats", "pinhole_location_"}, 0, []string{"pinhole_location_bindings", "uptime"}, ""},
		{"reload unchanged", opsToken, []string{"reload"}, 0, []string{"applied:        (none)", "restart needed: (none)"}, ""},
	})

	// The removed contact is gone for SIP too: a query lists what remains.
	if got := s.query(t, "alice"); !cmp.Equal(got.Contacts, []string{a2}) {
		t.Errorf("after ctl bindings rm, alice's REGISTER query lists %v, want [%s]", got.Contacts, a2)
	}

	// A reload that adds a destination and changes a restart-only key.
	third := fmt.Sprintf("sip:127.0.0.1:%d", testutil.FreePort(t, testutil.Loopback))
	cfg := s.Config
	farm(&cfg.Dispatch, nodes[0], nodes[1], third)
	cfg.Registrar.MaxContacts = 5
	s.Rewrite(cfg)
	runCtl(t, nil, api, []ctlWant{
		{"reload dispatch", opsToken, []string{"reload"}, 0, []string{"applied:        dispatch", "restart needed: registrar.max_contacts"}, ""},
	})
	ds := destinations(t, api)
	if diff := cmp.Diff(map[string]string{nodes[0]: "up", nodes[1]: "disabled", third: "up"}, ds); diff != "" {
		t.Errorf("destinations after the reload (-want +got):\n%s", diff)
	}

	// An invalid file is refused with its line and key; nothing changes.
	cfg.Registrar.MinExpires, cfg.Registrar.MaxExpires = 100, 50
	s.Rewrite(cfg)
	runCtl(t, nil, api, []ctlWant{
		{"reload invalid", opsToken, []string{"reload"}, 1, nil, "400 Bad Request: reload refused, nothing changed:"},
	})
	if diff := cmp.Diff(map[string]string{nodes[0]: "up", nodes[1]: "disabled", third: "up"}, destinations(t, api)); diff != "" {
		t.Errorf("destinations after a refused reload (-want +got):\n%s", diff)
	}
}

// destinations reads the dispatcher's states through the client.
func destinations(t *testing.T, api string) map[string]string {
	t.Helper()
	c := &mgmt.Client{Base: api, Token: opsToken}
	ds, err := c.Destinations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range ds {
		out[d.URI] = d.State
	}
	return out
}

// TestBlocklistThroughAPI: with XDP attached, a prefix blocked by `pinhole
// ctl` silences a registered phone in the kernel, unblocking brings it
// back, and a prefix added to xdp.blocklist takes effect on SIGHUP.
func TestBlocklistThroughAPI(t *testing.T) {
	edgeNS := testutil.NewNetNS(t)
	peer, l := peerLink(t, edgeNS, 61)
	listen := netip.AddrPortFrom(l.AddrA.Addr(), 5060)
	api := "http://127.0.0.1:9061"
	e := startEdge(t, edgeNS, listen, []string{l.NameA}, func(c *testutil.Config) {
		c.API = config.API{Listen: "127.0.0.1:9061", Token: opsToken}
	})
	ph := newPhone(t, peer, l.AddrB.Addr(), listen)
	if res := ph.register(t, "alice", false); res == nil || res.StatusCode != 200 {
		t.Fatalf("register before any block: %v", res)
	}
	src := l.AddrB.Addr().String()
	runCtl(t, edgeNS, api, []ctlWant{
		{"block", opsToken, []string{"blocklist", "add", src, "1m"}, 0, []string{src + "/32", "in 60s"}, ""},
		{"listed", opsToken, []string{"blocklist", "list"}, 0, []string{src + "/32"}, ""},
	})
	before := e.verdicts(t)["blocklisted"]
	if _, err := ph.exchange([]byte(registerRequest(ph, "alice")), 2*time.Second); err == nil {
		t.Error("a blocked phone got an answer")
	}
	if got := e.verdicts(t)["blocklisted"] - before; got < 1 {
		t.Errorf("blocklisted verdicts grew by %v, want at least 1", got)
	}
	runCtl(t, edgeNS, api, []ctlWant{
		{"unblock", opsToken, []string{"blocklist", "rm", src}, 0, []string{"unblocked " + src + "/32"}, ""},
		{"unblock again", opsToken, []string{"blocklist", "rm", src}, 1, nil, "404 Not Found: " + src + "/32 is not on the blocklist"},
	})
	if res := ph.register(t, "alice", false); res == nil || res.StatusCode != 200 {
		t.Fatalf("register after unblocking: %v", res)
	}

	// Reload: the configured blocklist follows the file on SIGHUP.
	cfg := e.ph.Config
	cfg.XDP.Blocklist = []string{"198.51.100.0/24"}
	e.ph.Rewrite(cfg)
	if err := e.ph.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _, _ := testutil.Ctl(t, edgeNS, api, opsToken, "blocklist", "list")
		if strings.Contains(out, "198.51.100.0/24") && strings.Contains(out, "never") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP the blocklist lacks 198.51.100.0/24:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// registerRequest is a REGISTER from ph with a fresh branch.
func registerRequest(ph *phone, user string) string {
	ph.cseq++
	return fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-blk%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s@%s>;tag=blk\r\nTo: <sip:%s@%s>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\nContact: <sip:%s@%s>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
		domain, ph.local, ph.cseq, user, domain, user, domain, ph.callID, ph.cseq, user, ph.local)
}

// Load of TestReloadUnderLoad: bounded in count and time.
const (
	reloadUsers = 600
	reloadRate  = 150 // REGISTERs per second: a 4 s run
)

// TestReloadUnderLoad reloads pinhole every 100 ms, alternately by SIGHUP
// and the API, while sipp registers 600 authenticated users. Each reload
// swaps the credentials (the file gains a user), the dispatch sets and the
// limits. Counted afterwards: every REGISTER transaction got its 200
// (sipp: none failed; pinhole: 600 answered 200 and 600 challenged), every
// binding is held (the API's list and the gauge), nothing is in flight.
func TestReloadUnderLoad(t *testing.T) {
	passwords := map[string]string{}
	users := make([]testutil.User, reloadUsers)
	for i := range users {
		users[i] = testutil.User{Name: fmt.Sprintf("r%04d", i), Password: fmt.Sprintf("pw%04d", i), Expires: 3600}
		passwords[users[i].Name] = users[i].Password
	}
	s, api, metricsAddr := opsServer(t, passwords, true, func(c *testutil.Config) {
		c.Dispatch.Sets = []config.DispatchSet{{Name: "fs", Algorithm: "round_robin", Destinations: []config.DispatchDestination{{URI: "sip:127.0.0.1:9"}}}}
		c.Dispatch.Rules = []config.DispatchRule{{Set: "fs", Methods: []string{"INVITE"}}}
		c.Dispatch.Probe.Interval = 0
	})
	load := testutil.Sipp{
		Scenario: scenario(t, "register.xml"), Remote: s.Addr, LocalIP: testutil.Loopback,
		Users: users, Calls: reloadUsers, Rate: reloadRate, Limit: 100,
		AuthURI: domain, Vars: map[string]string{"domain": domain},
		Timeout: 60 * time.Second, NoMessageTrace: true,
	}.Start(t)

	c := &mgmt.Client{Base: api, Token: opsToken}
	var reloads, applied int
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		cfg := s.Config
		for i := 0; ; i++ {
			select {
			case <-load.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			if i >= 200 {
				return // bounded even if sipp hangs
			}
			cfg.Limits.MaxHeaders = 100 + i%2
			cfg.Dispatch.Sets[0].Destinations[0].Weight = 1 + i%3
			pw := map[string]string{fmt.Sprintf("extra%d", i): "x"}
			for u, p := range passwords {
				pw[u] = p
			}
			cfg.Auth.Credentials = testutil.WriteCredentials(t, cfg.Auth.Realm, pw)
			s.Rewrite(cfg)
			if i%2 == 0 {
				if err := s.Signal(syscall.SIGHUP); err != nil {
					t.Errorf("SIGHUP: %v", err)
					return
				}
				mu.Lock()
				reloads++
				mu.Unlock()
				continue
			}
			r, err := c.Reload(t.Context())
			if err != nil {
				t.Errorf("reload %d: %v", i, err)
				return
			}
			mu.Lock()
			reloads++
			if len(r.Applied) > 0 {
				applied++
			}
			mu.Unlock()
		}
	}()
	res := load.Wait(t)
	<-done
	mu.Lock()
	t.Logf("%d reloads during the load (%d by the API applied changes)", reloads, applied)
	if reloads < 20 || applied < 10 {
		t.Errorf("only %d reloads (%d applied by the API) during the load; want at least 20 (10)", reloads, applied)
	}
	mu.Unlock()
	if res.Successful != reloadUsers || res.Failed != 0 {
		t.Fatalf("registrations under reloads: %d succeeded, %d failed, want %d and 0:\n%s", res.Successful, res.Failed, reloadUsers, res.Report())
	}

	held := map[string]bool{}
	for after := ""; ; {
		p, err := c.Bindings(t.Context(), after, "r", mgmt.MaxPage)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range p.Bindings {
			held[b.AOR] = true
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	var lost []string
	for _, u := range users {
		if !held[u.Name+"@"+domain] {
			lost = append(lost, u.Name)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d bindings missing after the reloads: %v", len(lost), reloadUsers, lost)
	}
	want := map[string]float64{
		`pinhole_registrar_replies_total{code="200"}`: reloadUsers,
		`pinhole_registrar_replies_total{code="401"}`: reloadUsers,
		`pinhole_location_bindings`:                   reloadUsers,
		`pinhole_sip_transactions_active`:             0,
	}
	m := scrape(t, metricsAddr)
	got := map[string]float64{}
	for k := range want {
		got[k] = m[k]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counts after the reloads (-want +got):\n%s", diff)
	}
}

// TestDashboardMetricsExported keeps the Grafana dashboard true: every
// metric its queries read is exported by a pinhole running with every
// feature the dashboard shows (XDP, NAT pings, mid-registrar, dispatch).
func TestDashboardMetricsExported(t *testing.T) {
	b, err := os.ReadFile("../../scripts/packaging/grafana/pinhole.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	names := map[string]bool{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, n := range dashboardMetric.FindAllString(tg.Expr, -1) {
				names[n] = true
			}
		}
	}
	if len(names) < 20 {
		t.Fatalf("found only %d metric names in the dashboard: %v", len(names), names)
	}

	edgeNS := testutil.NewNetNS(t)
	peer, l := peerLink(t, edgeNS, 62)
	listen := netip.AddrPortFrom(l.AddrA.Addr(), 5060)
	e := startEdge(t, edgeNS, listen, []string{l.NameA}, func(c *testutil.Config) {
		c.API = config.API{Listen: "127.0.0.1:9061"}
		c.NATPing.Interval, c.NATPing.MaxMissed = 30*time.Second, 3
		c.MidRegistrar.Upstreams = []config.Upstream{{Addr: l.AddrB.Addr().String() + ":5070", Transport: "udp"}}
		c.MidRegistrar.Timeout, c.MidRegistrar.RenewalMargin = time.Second, 10
		c.Dispatch.Sets = []config.DispatchSet{{Name: "fs", Algorithm: "round_robin", Destinations: []config.DispatchDestination{{URI: "sip:" + l.AddrB.Addr().String() + ":5080"}}}}
		c.Dispatch.Rules = []config.DispatchRule{{Set: "fs", Methods: []string{"INVITE"}, Domains: []string{"farm.example"}}}
		c.Dispatch.Probe.Interval = 0
	})
	// The mid-registrar's per-upstream and per-code counters appear with
	// the first relay: an upstream that ignores the first REGISTER (one
	// failure, a 503 to the phone) and then accepts it (a 200).
	up := fakeUpstream(t, peer, netip.AddrPortFrom(l.AddrB.Addr(), 5070))
	ph := newPhone(t, peer, l.AddrB.Addr(), listen)
	if res := ph.register(t, "alice", false); res == nil || res.StatusCode != 503 {
		t.Fatalf("REGISTER while the upstream is silent: %v, want 503", res)
	}
	up.setSilent(false)
	if res := ph.register(t, "alice", false); res == nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER relayed to the upstream: %v, want 200", res)
	}
	if got := up.count(); got < 2 {
		t.Fatalf("the upstream saw %d REGISTERs, want 2", got)
	}
	// One API call so that its counters exist the way they do in service.
	testutil.Ctl(t, edgeNS, "http://127.0.0.1:9061", "", "stats")
	exported := testutil.Metrics(t, e.ns, edgeMetrics)
	var missing []string
	for n := range names {
		found := false
		for k := range exported {
			if k == n || strings.HasPrefix(k, n+"{") {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, n)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard reads %d metrics pinhole does not export: %v", len(missing), missing)
	}
}

// dashboardMetric finds metric names in a PromQL expression.
var dashboardMetric = regexp.MustCompile(`\b(?:pinhole|go|process)_[a-z0-9_]+\b`)

// upstream is a main registrar for one test: silent while told so, else
// it answers every REGISTER 200 with its Contact.
type upstream struct {
	mu     sync.Mutex
	n      int
	silent bool
}

func (u *upstream) setSilent(s bool) {
	u.mu.Lock()
	u.silent = s
	u.mu.Unlock()
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n
}

func fakeUpstream(t *testing.T, ns *testutil.NetNS, addr netip.AddrPort) *upstream {
	t.Helper()
	conn := ns.ListenUDP(t, addr)
	u := &upstream{silent: true}
	go func() {
		buf := make([]byte, 8192)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			req, ok := m.(*sip.Request)
			if err != nil || !ok || req.Method != sip.REGISTER {
				continue
			}
			u.mu.Lock()
			u.n++
			silent := u.silent
			u.mu.Unlock()
			if silent {
				continue
			}
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			if c := req.Contact(); c != nil {
				cc := c.Clone()
				cc.Params.Add("expires", "3600")
				res.AppendHeader(cc)
			}
			_, _ = conn.WriteToUDPAddrPort([]byte(res.String()), from)
		}
	}()
	return u
}

// TestStopFinishesTransactions: SIGTERM while an INVITE is ringing. The
// stopping pinhole answers a new REGISTER 503, still relays the callee's
// late 200 to the caller (the transaction in flight finishes) and the
// in-dialog ACK and BYE after it, then exits with status 0 before its
// drain time is up.
func TestStopFinishesTransactions(t *testing.T) {
	s, _, _ := opsServer(t, alicePasswords, false, nil)
	callee := s.startDevice(t, nil, s.Addr, testutil.Loopback, testutil.FreePort(t, testutil.Loopback), "alice", "uas_answer_late.xml")
	caller := testutil.Sipp{
		Scenario: scenario(t, "uac_invite_expect.xml"), Remote: s.Addr, LocalIP: testutil.Loopback,
		Service: "alice", AuthUser: "bob", AuthPassword: s.Passwords["bob"], AuthURI: "alice@" + domain,
		Vars:    map[string]string{"domain": domain, "from_user": "bob"},
		Timeout: 20 * time.Second,
	}.Start(t)
	if !callee.WaitLog("invited: ", 5*time.Second) {
		t.Fatal("the INVITE did not reach the callee")
	}
	if err := s.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := s.register(t, "carol", "", "Contact: <sip:carol@127.0.0.1:7501>", "Expires: 600"); got.Code != "503" {
		t.Errorf("REGISTER while stopping got %s, want 503", got.Code)
	}
	res := caller.Wait(t)
	if codes := res.LogValues("code"); res.ExitCode != testutil.SippExitOK || !slices.Contains(codes, "200") {
		t.Errorf("the caller got final responses %v, want the callee's 200 relayed during the stop\n%s", codes, res.Report())
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if done, err := s.Exited(); done {
			if err != nil {
				t.Errorf("pinhole exited with %v, want status 0", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pinhole still running 15 s after SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := s.Output(); !strings.Contains(out, "in_flight=1") || strings.Contains(out, "stopping with transactions unfinished") {
		t.Errorf("pinhole's stop did not wait for the one transaction in flight:\n%s", out)
	}
}
