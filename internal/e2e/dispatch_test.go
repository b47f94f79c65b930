//go:build integration

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// farmDomain is the domain the dispatch rule sends to the farm; pinhole
// does not serve it itself.
const farmDomain = "farm.example"

// startFarmProxy starts pinhole with one set "fs" over the farm's nodes
// and a rule sending every request for farmDomain there. edit may change
// the configuration further.
func startFarmProxy(t *testing.T, f *testutil.Farm, alg string, weights []int, edit func(*testutil.Config)) *server {
	t.Helper()
	set := config.DispatchSet{Name: "fs", Algorithm: alg}
	for i, n := range f.Nodes {
		d := config.DispatchDestination{URI: n.URI()}
		if i < len(weights) {
			d.Weight = weights[i]
		}
		set.Destinations = append(set.Destinations, d)
	}
	return startServer(t, nil, false, func(c *testutil.Config) {
		c.Log.Level = "info"
		c.Dispatch.Sets = []config.DispatchSet{set}
		c.Dispatch.Rules = []config.DispatchRule{{Set: "fs", Domains: []string{farmDomain}}}
		c.Dispatch.Probe.Interval = 0
		c.Dispatch.Failover.DownOn503 = true
		c.Dispatch.Failover.Timeout = time.Second
		if edit != nil {
			edit(c)
		}
	})
}

// placeCalls runs farm_uac.xml once per callee (INVITE, 200, ACK, BYE) and
// fails the test unless every call succeeded.
func (s *server) placeCalls(t *testing.T, callees []string, rate float64) {
	t.Helper()
	s.placeCallsTo(t, farmDomain, callees, rate)
}

// placeCallsTo is placeCalls to callees at domain.
func (s *server) placeCallsTo(t *testing.T, domain string, callees []string, rate float64) {
	t.Helper()
	users := make([]testutil.User, len(callees))
	for i, c := range callees {
		users[i] = testutil.User{Name: c, Password: "-", Expires: 1}
	}
	r := testutil.Sipp{
		Scenario: scenario(t, "farm_uac.xml"),
		Remote:   s.Addr,
		LocalIP:  testutil.Loopback,
		Calls:    len(callees), Rate: rate, Users: users,
		Vars:           map[string]string{"domain": domain},
		Timeout:        time.Duration(float64(len(callees))/rate*float64(time.Second)) + 20*time.Second,
		NoMessageTrace: true,
	}.Run(t)
	if r.ExitCode != testutil.SippExitOK || r.Failed != 0 || r.Successful != len(callees) {
		t.Fatalf("%d calls through pinhole: %d successful, %d failed\n%s", len(callees), r.Successful, r.Failed, r.Report())
	}
}

// nodeCalls returns, per node, the request-URI users of the calls it took.
func nodeCalls(f *testutil.Farm) [][]string {
	out := make([][]string, len(f.Nodes))
	for i, n := range f.Nodes {
		for _, v := range f.Logs(n, "call") {
			user, _, _ := strings.Cut(strings.TrimPrefix(v, "sip:"), " ")
			out[i] = append(out[i], user)
		}
	}
	return out
}

func repeat(prefix string, keys, times int) []string {
	var out []string
	for range times {
		for k := range keys {
			out = append(out, fmt.Sprintf("%s%d", prefix, k))
		}
	}
	return out
}

// TestDispatchDistribution: three sipp nodes take calls as each
// algorithm promises. Probing is off, so nothing but the algorithm
// decides, and the counts are exact up to the tolerance.
func TestDispatchDistribution(t *testing.T) {
	tests := []struct {
		alg     string
		weights []int
		callees []string
		want    []int // calls per node; nil: check stickiness instead
	}{
		{alg: "round_robin", callees: repeat("u", 30, 1), want: []int{10, 10, 10}},
		{alg: "weighted", weights: []int{3, 2, 1}, callees: repeat("u", 60, 1), want: []int{30, 20, 10}},
		{alg: "hash_user", callees: repeat("conf-", 12, 3)},
	}
	for _, tt := range tests {
		t.Run(tt.alg, func(t *testing.T) {
			f := testutil.StartFarm(t, 3, scenario(t, "farm_node.xml"), nil)
			s := startFarmProxy(t, f, tt.alg, tt.weights, nil)
			s.placeCalls(t, tt.callees, 50)
			got := nodeCalls(f)
			if tt.want != nil {
				const tolerance = 1
				for i, w := range tt.want {
					if n := len(got[i]); n < w-tolerance || n > w+tolerance {
						t.Errorf("node %d took %d calls, want %d±%d (all: %d %d %d)", i, n, w, tolerance, len(got[0]), len(got[1]), len(got[2]))
					}
				}
				return
			}
			// Hash of the request-URI user: every call to one conference on
			// one node, and the conferences spread over the nodes.
			home := map[string]int{}
			used := 0
			for i, users := range got {
				if len(users) > 0 {
					used++
				}
				for _, u := range users {
					if prev, ok := home[u]; ok && prev != i {
						t.Errorf("%s reached nodes %d and %d", u, prev, i)
					}
					home[u] = i
				}
			}
			if len(home) != 12 || used < 2 {
				t.Errorf("%d conferences on %d nodes, want 12 spread over at least 2: %v", len(home), used, got)
			}
		})
	}
}

// metric reads one sample of pinhole's metrics, "" when absent.
func metric(t *testing.T, addr, name string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("read metrics: %v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read metrics: %v", err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

func waitMetric(t *testing.T, addr, name, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := metric(t, addr, name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q after %s, want %s", name, got, within, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDispatchNodeLoss: a node is killed during a run of calls. Calls sent
// to it before the probes notice fail over to the others after a second
// of silence; the caller sees no failure. After down_after failed probes
// pinhole marks it down; restarted, it is put back after up_after probes
// and takes calls again.
func TestDispatchNodeLoss(t *testing.T) {
	f := testutil.StartFarm(t, 3, scenario(t, "farm_node.xml"), nil)
	metricsAddr := fmt.Sprintf("%s:%d", testutil.Loopback, testutil.FreePort(t, testutil.Loopback))
	s := startFarmProxy(t, f, "round_robin", nil, func(c *testutil.Config) {
		c.Metrics.Listen = metricsAddr
		c.Dispatch.Probe = config.DispatchProbe{Interval: time.Second, Timeout: 500 * time.Millisecond, DownAfter: 2, UpAfter: 2}
	})
	victim := f.Nodes[1]
	up := fmt.Sprintf(`pinhole_dispatch_destination_up{set="fs",destination=%q}`, victim.URI())
	waitMetric(t, metricsAddr, up, "1", 5*time.Second)

	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(1500 * time.Millisecond)
		victim.Runs[len(victim.Runs)-1].Stop()
	}()
	s.placeCalls(t, repeat("u", 60, 1), 10)
	<-done
	waitMetric(t, metricsAddr, up, "0", 5*time.Second)
	if got := metric(t, metricsAddr, "pinhole_dispatch_failovers_total"); got == "" || got == "0" {
		t.Errorf("pinhole_dispatch_failovers_total = %q: no call went to the dead node before it was taken out", got)
	}
	before := len(f.Logs(victim, "call"))

	f.Start(victim)
	waitMetric(t, metricsAddr, up, "1", 8*time.Second)
	s.placeCalls(t, repeat("v", 15, 1), 20)
	if after := len(f.Logs(victim, "call")); after-before < 4 {
		t.Errorf("restarted node took %d of 15 calls, want its share (5)", after-before)
	}
}

// TestDispatchChallengeGoesToChallenger: REGISTER is relayed to two
// registrar nodes in round robin; each node challenges with its own nonce,
// and every authenticated retry must reach the node that challenged it,
// the only one that knows its nonce, not the next in turn.
func TestDispatchChallengeGoesToChallenger(t *testing.T) {
	f := testutil.StartFarm(t, 2, scenario(t, "farm_node.xml"), nil)
	s := startFarmProxy(t, f, "round_robin", nil, func(c *testutil.Config) { c.Dispatch.Register = "fs" })
	r := testutil.Sipp{
		Scenario: scenario(t, "device_register.xml"),
		Remote:   s.Addr, LocalIP: testutil.Loopback,
		Service: "alice", AuthUser: "alice", AuthPassword: "x", AuthURI: farmDomain,
		Vars:  map[string]string{"domain": farmDomain, "expires": "600", "hold_ms": "0"},
		Calls: 6, Rate: 20,
	}.Run(t)
	if r.ExitCode != testutil.SippExitOK || r.Successful != 6 {
		t.Fatalf("registrations through pinhole:\n%s", r.Report())
	}
	for i, n := range f.Nodes {
		var challenged, retried []string
		for _, v := range f.Logs(n, "register") {
			kind, rest, _ := strings.Cut(v, " ")
			id, _, _ := strings.Cut(rest, " ")
			if kind == "noauth" {
				challenged = append(challenged, id)
			} else {
				retried = append(retried, id)
			}
		}
		slices.Sort(challenged)
		slices.Sort(retried)
		if diff := cmp.Diff(challenged, retried); diff != "" {
			t.Errorf("node %d: Call-IDs it challenged vs. retries it got (-challenged +retried):\n%s", i, diff)
		}
		if len(challenged) != 3 {
			t.Errorf("node %d challenged %d REGISTERs, want 3 of 6 in round robin", i, len(challenged))
		}
	}
}

// TestDispatchPathToDeviceBehindNAT is the edge-only topology
// (docs/architecture.md, "Edge proxy toward a farm"):
// a device behind a masquerading router registers through pinhole to a
// registrar node, which sees pinhole's Path with the device's translated
// address; another node of the farm calls the device through that Path;
// the device answers and the node's BYE reaches the device's translated
// address. Topology hiding is on: nothing the device receives names a
// node.
func TestDispatchPathToDeviceBehindNAT(t *testing.T) {
	nat := testutil.NATDevice(t, nil)
	reg := testutil.StartFarm(t, 1, scenario(t, "farm_node.xml"), nil)
	callerPort := testutil.FreePort(t, testutil.Loopback)
	callerURI := fmt.Sprintf("sip:%s:%d", testutil.Loopback, callerPort)
	port := testutil.FreePort(t, testutil.Loopback)
	natSide := fmt.Sprintf("%s:%d", nat.UpstreamAddr, port)
	s := startServer(t, nil, false, func(c *testutil.Config) {
		loop := fmt.Sprintf("%s:%d", testutil.Loopback, port)
		c.Listen = config.Listen{UDP: []string{loop, natSide}}
		c.Log.Level = "info"
		c.Dispatch.Sets = []config.DispatchSet{
			{Name: "reg", Algorithm: "round_robin", Destinations: []config.DispatchDestination{{URI: reg.Nodes[0].URI()}}},
			{Name: "media", Algorithm: "round_robin", Destinations: []config.DispatchDestination{{URI: callerURI}}},
		}
		c.Dispatch.Register = "reg"
		c.Dispatch.Probe.Interval = 0
		c.Dispatch.TopologyHiding = true
	})

	dev := testutil.Sipp{
		Scenario:  scenario(t, "device_register.xml"),
		OutOfCall: scenario(t, "uas_answer.xml"),
		Remote:    natSide, NS: nat.Device,
		LocalIP: nat.DeviceAddr, LocalPort: phonePort,
		Service: "alice", AuthUser: "alice", AuthPassword: "x", AuthURI: farmDomain,
		Vars:    map[string]string{"domain": farmDomain, "expires": "600", "hold_ms": "30000"},
		Timeout: 60 * time.Second,
	}.Start(t)
	if !dev.WaitLog("registered: alice", registerWait) {
		t.Fatal("device did not register through pinhole to the registrar node")
	}
	path := strings.TrimSpace(strings.TrimPrefix(last(reg.Logs(reg.Nodes[0], "path")), "Path:"))
	if !strings.Contains(path, ";received=sip:"+nat.RouterAddr.String()+":") || !strings.Contains(path, ";pf=") {
		t.Fatalf("Path at the registrar %q lacks the device's translated address %s and flow", path, nat.RouterAddr)
	}

	contact := fmt.Sprintf("sip:alice@%s:%d;transport=UDP", nat.DeviceAddr, phonePort)
	call := testutil.Sipp{
		Scenario: scenario(t, "farm_node_call.xml"),
		Remote:   s.Addr, LocalIP: testutil.Loopback, LocalPort: callerPort,
		Vars:    map[string]string{"contact": contact, "route": path, "domain": farmDomain},
		Timeout: 20 * time.Second,
	}.Run(t)
	if call.ExitCode != testutil.SippExitOK {
		t.Fatalf("node's call to the device:\n%s", call.Report())
	}
	if diff := cmp.Diff([]string{"200"}, call.LogValues("bye")); diff != "" {
		t.Errorf("node's BYE (-want +got):\n%s", diff)
	}
	dev.WaitLog("hangup:", 5*time.Second)
	dev.Stop()
	res := dev.Wait(t)
	if diff := cmp.Diff([]string{"remote"}, res.LogValues("hangup")); diff != "" {
		t.Errorf("device's hang-up (-want +got): the node's BYE did not reach it\n%s", diff)
	}
	seen := readFile(t, res.Dir+"/messages.log")
	if !strings.Contains(seen, natSide) {
		t.Fatalf("device's message log does not name pinhole's %s: wrong file?", natSide)
	}
	for _, farm := range []string{reg.Nodes[0].Addr.String(), fmt.Sprintf("%s:%d", testutil.Loopback, callerPort)} {
		if i := strings.Index(seen, farm); i >= 0 {
			t.Errorf("device received the farm's address %s (topology hiding is on):\n%s", farm, seen[max(0, i-300):min(len(seen), i+100)])
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := readAll(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

func readAll(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}
