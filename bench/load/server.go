package load

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-sip/pinhole/internal/promtext"
)

// ServerCounts is what the server itself counted over the run (from the
// start of the run to the end of the drain), next to the generator's counts
// of the same span, and whether they agree.
type ServerCounts struct {
	Metrics string `json:"metrics,omitempty"` // where they were read
	// pinhole's own counters
	Absorbed      float64 `json:"absorbed"`       // refreshes the fast path answered
	HandedOff     float64 `json:"handed_off"`     // datagrams the fast path passed to the slow path
	Shed          float64 `json:"shed"`           // datagrams the hand-off queue refused (full)
	RegistrarSeen float64 `json:"registrar_seen"` // REGISTERs the slow path answered
	SanityRefused float64 `json:"sanity_refused"`
	Keepalives    float64 `json:"keepalives_answered"`
	// BindingsAdded: the avalanche's bindings the server holds at the end
	// (pinhole_location_bindings, after less before).
	BindingsAdded float64 `json:"bindings_added,omitempty"`
	// After a restart (Config.Reregister): the bindings the restarted
	// server held when the avalanche began (read back from its disk) and
	// at the end (pinhole_location_bindings).
	BindingsBefore float64 `json:"bindings_before,omitempty"`
	BindingsHeld   float64 `json:"bindings_held,omitempty"`
	// the kernel's, for the server's network namespace (/proc/PID/net/snmp)
	KernelDropped float64 `json:"kernel_dropped"` // UDP InErrors: receive queue full, bad checksum
	// the generator's, same span
	RegisterSent    uint64             `json:"gen_register_sent"`
	RegisterRetrans uint64             `json:"gen_register_retransmitted"`
	Moved           map[string]float64 `json:"moved,omitempty"` // every server counter that moved
	OK              bool               `json:"ok"`
	Check           string             `json:"check"`
}

type serverSnap struct {
	metrics map[string]float64
	udp     map[string]float64
	err     error
}

// readServer reads the server's metrics and its namespace's UDP counters,
// or returns nil when the configuration names neither.
func readServer(cfg *Config) *serverSnap {
	if cfg.ServerMetrics == "" && cfg.ServerPID == 0 {
		return nil
	}
	s := &serverSnap{}
	if cfg.ServerMetrics != "" {
		c := http.Client{Timeout: 3 * time.Second}
		resp, err := c.Get(cfg.ServerMetrics)
		if err == nil {
			var b []byte
			b, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s: %s", cfg.ServerMetrics, resp.Status)
			}
			s.metrics = promtext.Parse(string(b))
		}
		if err != nil {
			s.err = fmt.Errorf("read the server's metrics: %w", err)
		}
	}
	if cfg.ServerPID != 0 {
		s.udp = udpCounters(fmt.Sprintf("/proc/%d/net/snmp", cfg.ServerPID))
	}
	return s
}

// udpCounters reads the Udp: lines of a /proc/net/snmp file.
func udpCounters(path string) map[string]float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		m := map[string]float64{}
		for i, v := range f[1:] {
			if i < len(names) {
				n, _ := strconv.ParseFloat(v, 64)
				m[names[i]] = n
			}
		}
		return m
	}
	return nil
}

// compareServer sets the server's counts over the span and checks them
// against the generator's: every REGISTER the generator sent is answered
// by the slow path or absorbed by the fast path once, give or take the
// retransmissions (a lost request is sent again; a retransmission may be
// answered again), the requests that timed out and those still in flight
// when the drain ended; the flood's well-formed REGISTERs may be answered
// too (a challenge), or dropped before the registrar.
func compareServer(before, after *serverSnap, span *Phase, inflight uint64) *ServerCounts {
	sc := &ServerCounts{Moved: map[string]float64{}, OK: true}
	if before.err != nil || after.err != nil {
		sc.OK, sc.Check = false, fmt.Sprint(before.err, after.err)
		return sc
	}
	sum := func(prefix string) float64 {
		var t float64
		for k, v := range after.metrics {
			if strings.HasPrefix(k, prefix) {
				t += v - before.metrics[k]
			}
		}
		return t
	}
	for k, v := range after.metrics {
		if d := v - before.metrics[k]; d != 0 && strings.HasPrefix(k, "pinhole_") && !strings.Contains(k, "_bucket") {
			sc.Moved[k] = d
		}
	}
	sc.Absorbed = sum("pinhole_fastpath_absorbed_total")
	sc.HandedOff = sum("pinhole_fastpath_handoff_total")
	sc.Shed = sum("pinhole_fastpath_handoff_shed_total")
	sc.RegistrarSeen = sum("pinhole_registrar_replies_total")
	sc.SanityRefused = sum("pinhole_sanity_refused_total")
	sc.Keepalives = sum("pinhole_keepalive_answered_total")
	if after.udp != nil && before.udp != nil {
		sc.KernelDropped = after.udp["InErrors"] - before.udp["InErrors"]
	}
	var timeouts uint64
	for _, n := range []string{"register_initial", "register_auth", "register_refresh"} {
		k := span.Kinds[n]
		sc.RegisterSent += k.Sent
		sc.RegisterRetrans += k.Retransmitted
		timeouts += k.Timeouts
	}
	var why []string
	if after.metrics != nil && sc.RegisterSent > 0 {
		seen := sc.RegistrarSeen + sc.Absorbed
		lo := float64(sc.RegisterSent) - float64(sc.RegisterRetrans+timeouts+inflight)
		hi := float64(sc.RegisterSent + sc.RegisterRetrans + span.FloodRegs)
		if seen < lo || seen > hi {
			sc.OK = false
		}
		flood := ""
		if span.FloodRegs > 0 {
			flood = fmt.Sprintf(" and the flood %d", span.FloodRegs)
		}
		why = append(why, fmt.Sprintf("REGISTER: generator sent %d (+%d retransmitted, %d timed out, %d in flight)%s, server answered %.0f and absorbed %.0f",
			sc.RegisterSent, sc.RegisterRetrans, timeouts, inflight, flood, sc.RegistrarSeen, sc.Absorbed))
	}
	if ka := span.Kinds["keepalive"]; after.metrics != nil && ka.Sent > 0 && sc.Keepalives > 0 {
		// Every pong was answered by the server; the server answered no
		// more keepalives than were sent.
		if float64(ka.Replies) > sc.Keepalives || sc.Keepalives > float64(ka.Sent) {
			sc.OK = false
		}
		why = append(why, fmt.Sprintf("keepalive: generator sent %d and saw %d pongs, server answered %.0f", ka.Sent, ka.Replies, sc.Keepalives))
	}
	if after.udp != nil {
		why = append(why, fmt.Sprintf("kernel dropped %.0f at the server", sc.KernelDropped))
	}
	sc.Check = strings.Join(why, "; ")
	return sc
}

// checkAvalancheBindings adds the avalanche's own check to sc: every
// device the generator saw registered is a binding the server holds, one
// each (a device that started over replaced its binding, it did not add
// one). On a fresh server (restarted false) that is what the avalanche
// added; after a restart (the devices registered before it and their
// bindings read back) it is what the server holds at the end, since a
// re-registration replaces the binding it had. A server that answered 200
// without storing, or stored twice, fails the run. Servers without
// pinhole's metrics are not checked here.
func checkAvalancheBindings(sc *ServerCounts, before, after *serverSnap, registered int, restarted bool) {
	const name = "pinhole_location_bindings"
	if sc == nil || before == nil || after == nil || after.metrics == nil {
		return
	}
	b, ok := after.metrics[name]
	if !ok {
		return
	}
	var msg string
	if restarted {
		sc.BindingsBefore, sc.BindingsHeld = before.metrics[name], b
		if sc.BindingsHeld != float64(registered) {
			sc.OK = false
		}
		msg = fmt.Sprintf("avalanche after a restart: the server began with %.0f bindings, %d devices registered again, it holds %.0f",
			sc.BindingsBefore, registered, sc.BindingsHeld)
	} else {
		sc.BindingsAdded = b - before.metrics[name]
		if sc.BindingsAdded != float64(registered) {
			sc.OK = false
		}
		msg = fmt.Sprintf("avalanche: %d devices registered, server holds %.0f new bindings", registered, sc.BindingsAdded)
	}
	if sc.Check == "" {
		sc.Check = msg
	} else {
		sc.Check += "; " + msg
	}
}
