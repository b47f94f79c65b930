package testutil

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Farm is a set of sipp UAS processes playing FreeSWITCH nodes, one per
// loopback port: they answer OPTIONS probes, REGISTER and calls with the
// scenario given, and each can be killed and started again on its port.
type Farm struct {
	t        testing.TB
	scenario string
	vars     map[string]string
	Nodes    []*FarmNode
}

// FarmNode is one node of a Farm.
type FarmNode struct {
	Addr netip.AddrPort
	// Runs are the sipp processes this node has had, the current last.
	Runs []*SippProcess
}

// URI is the node's destination URI for pinhole's dispatch section.
func (n *FarmNode) URI() string { return "sip:" + n.Addr.String() }

// StartFarm starts n nodes running scenario (a UAS), each on a free
// loopback port, with the global variables vars.
func StartFarm(t testing.TB, n int, scenario string, vars map[string]string) *Farm {
	t.Helper()
	f := &Farm{t: t, scenario: scenario, vars: vars}
	for range n {
		node := &FarmNode{Addr: netip.AddrPortFrom(Loopback, uint16(FreePort(t, Loopback)))}
		f.Nodes = append(f.Nodes, node)
		f.Start(node)
	}
	return f
}

// farmRunLimit bounds one node's life: a UAS sipp stops by itself after it.
const farmRunLimit = 3 * time.Minute

// Start starts (or restarts) a node's sipp on its port.
func (f *Farm) Start(n *FarmNode) {
	f.t.Helper()
	p := Sipp{
		Scenario: f.scenario,
		LocalIP:  n.Addr.Addr(), LocalPort: int(n.Addr.Port()),
		Calls:   1_000_000, // a UAS ends by its timeout or Stop, not by a count
		Vars:    f.vars,
		Timeout: farmRunLimit,
		// -timeout_error would count the run as failed at its end; a node
		// is judged by what it logged.
		NoMessageTrace: true,
	}.Start(f.t)
	n.Runs = append(n.Runs, p)
}

// Logs returns every value a node's runs logged for key ("call", "register").
func (f *Farm) Logs(n *FarmNode, key string) []string {
	var out []string
	for _, p := range n.Runs {
		out = append(out, p.logValues(key)...)
	}
	return out
}

// logValues reads "key: value" lines of a running or finished sipp.
func (p *SippProcess) logValues(key string) []string {
	r := &SippResult{}
	for l := range strings.SplitSeq(strings.TrimRight(readOr(filepath.Join(p.dir, "logs.log")), "\n"), "\n") {
		r.Logs = append(r.Logs, strings.TrimRight(l, "\r"))
	}
	return r.LogValues(key)
}

// String names the farm's nodes for messages.
func (f *Farm) String() string {
	s := ""
	for i, n := range f.Nodes {
		s += fmt.Sprintf("node%d=%s ", i, n.Addr)
	}
	return s
}
