// Command benchtable prints the comparison table of bench/compare.sh from
// the JSON results sipload wrote: for each scenario, each server's
// succeeded actions per second, its ratio to pinhole's, success and
// latency, and the generator's own ceiling against the echo responder.
//
//	benchtable DIR
//
// reads DIR/<server>-<scenario>.json for every file present.
//
//	benchtable -pass FILE
//
// exits 0 when the run in FILE sustained its offered rate (see passes), 1
// otherwise: compare.sh's capacity search climbs rates until it fails.
//
//	benchtable -capacity DIR
//
// prints, for each server and scenario, the highest rate of the search that
// passed, from DIR/cap-<server>-<scenario>-<rate>.json, and what it
// delivered when offered twice that (DIR/over-<server>-<scenario>-<rate>.json).
//
//	benchtable -plot DIR
//
// draws DIR/capacity-<scenario>.png (delivered against offered, every
// server on the same axes) and DIR/capacity-<scenario>-latency.png (p50
// and p99 against offered) from the same files.
//
//	benchtable -ceiling DIR
//
// prints the generator's ceiling (DIR/ceiling-*.json) against the best
// server figure of the run, in messages per second, and their ratio.
//
//	benchtable -carrier DIR
//
// prints the avalanche (time until every device registered, memory) and
// the mixed day (success and latency per kind) of every server run;
// -memory FILE one server's avalanche memory line.
//
//	benchtable -docs DIR FILE
//
// replaces the part of FILE between the benchtable markers with the run's
// machine, tables, ceiling and capacity plots (copied next to FILE, in
// bench/), so docs/benchmarks.md is regenerated, not edited.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pinhole-sip/pinhole/bench/load"
	"github.com/pinhole-sip/pinhole/bench/plot"
)

// servers in the order of the table; echo is the generator's ceiling.
// fastpath: pinhole with fastpath.enabled; fastpath-nobatch: the same
// with fastpath.batch 1 (gnet's one system call per datagram). A name
// ending in redisSuffix is the server without it, with location.backend
// redis on a Redis Cluster sharing its core.
var servers = []string{"echo", "pinhole", "pinhole-redis", "fastpath", "fastpath-redis", "fastpath-nobatch", "kamailio", "opensips"}

const redisSuffix = "-redis"

// scenarios in the order of the tables: load.Scenarios and the variants
// compare.sh runs (refresh-noauth: every server without digest auth).
var scenarios = []string{load.ScenarioRegister, load.ScenarioRefresh, "refresh-noauth", load.ScenarioKeepalive,
	load.ScenarioFlood, load.ScenarioCalls, load.ScenarioIdle, load.ScenarioMix}

func baseScenario(sc string) string { return strings.TrimSuffix(sc, "-noauth") }

// mainAction is the action a scenario is judged by.
var mainAction = map[string]string{
	load.ScenarioRegister: "register", load.ScenarioRefresh: "refresh", load.ScenarioKeepalive: "keepalive",
	load.ScenarioFlood: "refresh", load.ScenarioCalls: "call", load.ScenarioMix: "refresh",
}

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "-pass":
		var r *load.Result
		if r, err = read(os.Args[2]); err == nil {
			ok, why := passes(r)
			fmt.Printf("%s at %.0f/s: %s\n", r.Scenario, r.Rate, why)
			if !ok {
				os.Exit(1)
			}
			return
		}
	case len(os.Args) == 3 && os.Args[1] == "-capacity":
		err = capacity(os.Stdout, os.Args[2])
	case len(os.Args) == 3 && os.Args[1] == "-plot":
		err = plotCapacity(os.Args[2])
	case len(os.Args) == 3 && os.Args[1] == "-ceiling":
		err = ceiling(os.Stdout, os.Args[2])
	case len(os.Args) == 3 && os.Args[1] == "-carrier":
		err = carrier(os.Stdout, os.Args[2])
	case len(os.Args) == 3 && os.Args[1] == "-memory":
		fmt.Println(memoryLine(os.Args[2]))
	case len(os.Args) == 4 && os.Args[1] == "-docs":
		err = docs(os.Args[2], os.Args[3])
	case len(os.Args) == 2:
		err = table(os.Stdout, os.Args[1])
	default:
		fmt.Fprintln(os.Stderr, "usage: benchtable DIR | -pass FILE | -capacity DIR | -plot DIR | -ceiling DIR | -carrier DIR | -docs DIR FILE")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func table(w io.Writer, dir string) error {
	fmt.Fprintf(w, "%-14s %-16s %9s %10s %8s %8s %9s %9s %8s %8s  %s\n",
		"scenario", "server", "offered/s", "ok/s", "vs ph", "ok %", "p50 ms", "p99 ms", "gen core", "backlog", "server")
	for _, sc := range scenarios {
		rows := map[string]*load.Result{}
		for _, srv := range servers {
			b, err := os.ReadFile(filepath.Join(dir, srv+"-"+sc+".json"))
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				return err
			}
			var r load.Result
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("%s-%s.json: %w", srv, sc, err)
			}
			rows[srv] = &r
		}
		if len(rows) == 0 {
			continue
		}
		base := rate(rows["pinhole"], sc)
		for _, srv := range servers {
			r := rows[srv]
			if r == nil {
				continue
			}
			a := r.Run.Actions[mainAction[baseScenario(sc)]]
			ok := rate(r, sc)
			ratio := "-"
			if base > 0 && srv != "pinhole" {
				ratio = fmt.Sprintf("%.2f", ok/base)
			} else if srv == "pinhole" {
				ratio = "1.00"
			}
			// Skipped actions count against the server: a device skips
			// its turn only while its previous transaction is still out.
			pct := 0.0
			if n := a.Succeeded + a.Failed + a.Busy; n > 0 {
				pct = 100 * float64(a.Succeeded) / float64(n)
			}
			p50, p99 := a.Latency.P50, a.Latency.P99
			name := srv
			if srv == "echo" {
				name = "echo"
			}
			check := ""
			if s := r.ServerSide; s != nil {
				check = fmt.Sprintf("abs %.0f shed %.0f drop %.0f", s.Absorbed, s.Shed, s.KernelDropped)
				if !s.OK {
					check += " DISAGREE"
				}
			}
			fmt.Fprintf(w, "%-14s %-16s %9.0f %10.0f %8s %7.1f%% %9.2f %9.2f %7.0f%% %8d  %s\n",
				sc, name, r.Rate, ok, ratio, pct, float64(p50)/1000, float64(p99)/1000, 100*r.CoreBusy, r.MaxBacklog, check)
		}
	}
	fmt.Fprintln(w, strings.TrimSpace(`
ok/s: actions started in the measured window and answered within the deadline, per second of the
window (keepalive: pongs). vs ph: ok/s over pinhole's. ok %: succeeded / (succeeded + failed +
skipped because the device's last transaction was still out). gen cpu: the generator core's busy
share. abs/shed/drop: pinhole's absorbed refreshes and shed datagrams, the kernel's UDP drops in the
server's namespace; DISAGREE: the server's counts differ from the generator's beyond retransmissions.
echo: the same load against bench/cmd/echo-responder, which does no work.`))
	return nil
}

// rate is the scenario's measure: succeeded main actions per second, or
// keepalive replies per second.
func rate(r *load.Result, sc string) float64 {
	if r == nil || r.Run.Seconds <= 0 {
		return 0
	}
	return float64(r.Run.Actions[mainAction[baseScenario(sc)]].Succeeded) / r.Run.Seconds
}

func read(path string) (*load.Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r load.Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// Pass criteria of the capacity search: a rate is sustained when at least
// 97 % of it succeeded per second, at most 1 % of the actions started failed
// or timed out, and the 99th percentile stayed under maxP99. Past its
// capacity a UDP server queues (latency climbs into seconds) and then drops
// (retransmissions, timeouts), so both are checked.
const (
	minRateShare = 0.97
	maxFailShare = 0.01
	maxP99us     = 200_000
)

func passes(r *load.Result) (bool, string) {
	sc := r.Scenario
	a := r.Run.Actions[mainAction[baseScenario(sc)]]
	ok := rate(r, sc)
	fail := 0.0
	if a.Started > 0 {
		fail = float64(a.Failed) / float64(a.Started)
	}
	why := fmt.Sprintf("%.0f ok/s, %.2f%% failed, p99 %.1f ms, generator %.0f%% cpu", ok, 100*fail, float64(a.Latency.P99)/1000, 100*r.CPU)
	switch {
	case ok < minRateShare*r.Rate:
		return false, why + ": below 97% of the offered rate"
	case fail > maxFailShare:
		return false, why + ": more than 1% failed"
	case a.Latency.P99 > maxP99us:
		return false, why + ": p99 above 200 ms"
	}
	return true, why + ": sustained"
}

type capKey struct{ srv, sc string }

// capRuns reads DIR/cap-<server>-<scenario>-<rate>.json, by server and
// scenario (named by the file: refresh-noauth is a refresh run).
func capRuns(dir string) (map[capKey][]*load.Result, error) {
	runs := map[capKey][]*load.Result{}
	err := eachRun(dir, "cap", func(k capKey, r *load.Result) { runs[k] = append(runs[k], r) })
	if err != nil {
		return nil, err
	}
	for k, rs := range runs {
		runs[k] = lastPerRate(rs)
	}
	return runs, nil
}

// eachRun calls add with every DIR/<kind>-<server>-<scenario>-<rate>.json
// and its server and scenario; files whose server it does not know are
// left out.
func eachRun(dir, kind string, add func(capKey, *load.Result)) error {
	files, err := filepath.Glob(filepath.Join(dir, kind+"-*.json"))
	if err != nil {
		return err
	}
	for _, f := range files {
		r, err := read(f)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), kind+"-"), ".json")
		srv := serverOf(name)
		last := strings.LastIndexByte(name, '-')
		if srv == "" || last <= len(srv) {
			continue
		}
		add(capKey{srv, name[len(srv)+1 : last]}, r)
	}
	return nil
}

// serverOf is the server a run's name starts with ("<server>-..."): the
// longest of servers that fits, since one name (fastpath-nobatch) holds
// another and a dash.
func serverOf(name string) string {
	best := ""
	for _, srv := range servers {
		if strings.HasPrefix(name, srv+"-") && len(srv) > len(best) {
			best = srv
		}
	}
	return best
}

// lastPerRate sorts a server's rungs by offered rate and keeps one run per
// rate, the one started last: a rung is retried once before it counts as
// failed, and only its final attempt is a point of the curve.
func lastPerRate(rs []*load.Result) []*load.Result {
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].Rate != rs[j].Rate {
			return rs[i].Rate < rs[j].Rate
		}
		return rs[i].Started.Before(rs[j].Started)
	})
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].Rate == r.Rate {
			out[n-1] = r
			continue
		}
		out = append(out, r)
	}
	return out
}

func capacity(w io.Writer, dir string) error {
	runs, err := capRuns(dir)
	if err != nil {
		return err
	}
	best := map[capKey]*load.Result{}
	failed := map[capKey]float64{}
	for k, rs := range runs {
		for _, r := range rs {
			if ok, _ := passes(r); !ok {
				if failed[k] == 0 || r.Rate < failed[k] {
					failed[k] = r.Rate
				}
				continue
			}
			if best[k] == nil || r.Rate > best[k].Rate {
				best[k] = r
			}
		}
	}
	type key = capKey
	fmt.Fprintf(w, "%-14s %-16s %14s %10s %9s %9s %8s %14s\n", "scenario", "server", "sustained/s", "vs ph", "p50 ms", "p99 ms", "gen cpu", "failed at/s")
	for _, sc := range scenarios {
		base := 0.0
		if r := best[key{"pinhole", sc}]; r != nil {
			base = r.Rate
		}
		for _, srv := range servers {
			k := key{srv, sc}
			r := best[k]
			if r == nil && failed[k] == 0 {
				continue
			}
			name := srv
			fail := "-"
			if failed[k] > 0 {
				fail = fmt.Sprintf("%.0f", failed[k])
			}
			if r == nil {
				fmt.Fprintf(w, "%-14s %-16s %14s %10s %9s %9s %8s %14s\n", sc, name, "< lowest", "-", "-", "-", "-", fail)
				continue
			}
			a := r.Run.Actions[mainAction[r.Scenario]]
			ratio := "-"
			if base > 0 {
				ratio = fmt.Sprintf("%.2f", r.Rate/base)
			}
			fmt.Fprintf(w, "%-14s %-16s %14.0f %10s %9.2f %9.2f %7.0f%% %14s\n", sc, name, r.Rate, ratio,
				float64(a.Latency.P50)/1000, float64(a.Latency.P99)/1000, 100*r.CoreBusy, fail)
		}
	}
	fmt.Fprintln(w, "sustained/s: the highest offered rate of the search with >= 97% of it succeeding per second,")
	fmt.Fprintln(w, "<= 1% failed and p99 <= 200 ms; failed at/s: the lowest rate that did not.")
	backendRatios(w, best)
	return pastSaturation(w, dir, best)
}

// minOverloadShare: past saturation a server must keep delivering. Offered
// twice its sustained rate, the answers it still completes per second
// must stay at 90 % of that rate or more; a server that spends its core on
// retransmissions and work it then sheds too late collapses below it.
const minOverloadShare = 0.90

// pastSaturation prints, for each server and scenario with a sustained
// rate, the run offered about twice that rate (DIR/over-*.json, written
// by compare.sh after the search): the actions it completed per second and
// their share of the sustained rate.
func pastSaturation(w io.Writer, dir string, best map[capKey]*load.Result) error {
	over, err := overRuns(dir)
	if err != nil || len(over) == 0 {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "past saturation: offered about twice the sustained rate")
	fmt.Fprintf(w, "%-14s %-16s %12s %10s %12s %8s %9s %9s\n", "scenario", "server", "sustained/s", "offered/s", "delivered/s", "share", "p99 ms", "")
	for _, sc := range scenarios {
		for _, srv := range servers {
			k := capKey{srv, sc}
			r, b := over[k], best[k]
			if r == nil || b == nil {
				continue
			}
			got := rate(r, sc)
			share := got / b.Rate
			verdict := "holds"
			if share < minOverloadShare {
				verdict = "collapses"
			}
			a := r.Run.Actions[mainAction[baseScenario(sc)]]
			fmt.Fprintf(w, "%-14s %-16s %12.0f %10.0f %12.0f %7.0f%% %9.2f %9s\n", sc, srv, b.Rate, r.Rate, got, 100*share,
				float64(a.Latency.P99)/1000, verdict)
		}
	}
	fmt.Fprintf(w, "delivered/s: actions completed per second; share: of the sustained rate (holds: >= %.0f%%).\n", 100*minOverloadShare)
	return nil
}

// overRuns reads DIR/over-<server>-<scenario>-<rate>.json, the last run
// per server and scenario.
func overRuns(dir string) (map[capKey]*load.Result, error) {
	runs := map[capKey]*load.Result{}
	err := eachRun(dir, "over", func(k capKey, r *load.Result) {
		if old := runs[k]; old == nil || r.Started.After(old.Started) {
			runs[k] = r
		}
	})
	if err != nil {
		return nil, err
	}
	return runs, nil
}

// backendRatios prints, for each server run on both location backends,
// its sustained rate on Redis against the same server on bbolt.
func backendRatios(w io.Writer, best map[capKey]*load.Result) {
	header := false
	for _, sc := range scenarios {
		for _, srv := range servers {
			base, ok := strings.CutSuffix(srv, redisSuffix)
			if !ok {
				continue
			}
			r, b := best[capKey{srv, sc}], best[capKey{base, sc}]
			if r == nil || b == nil {
				continue
			}
			if !header {
				fmt.Fprintln(w, "Redis Cluster against bbolt, same server, same core:")
				header = true
			}
			fmt.Fprintf(w, "%-14s %-16s %10.0f/s against %-16s %10.0f/s: %.2f\n", sc, srv, r.Rate, base, b.Rate, r.Rate/b.Rate)
		}
	}
}

// plotCapacity draws the capacity curves of every scenario searched.
func plotCapacity(dir string) error {
	runs, err := capRuns(dir)
	if err != nil {
		return err
	}
	for _, sc := range scenarios {
		var curves []plot.Curve
		for _, srv := range servers {
			rs := runs[capKey{srv, sc}]
			if len(rs) == 0 {
				continue
			}
			c := plot.Curve{Name: srv}
			for _, r := range rs {
				a := r.Run.Actions[mainAction[r.Scenario]]
				c.Points = append(c.Points, plot.CurvePoint{Offered: r.Rate, Delivered: rate(r, sc),
					P50: float64(a.Latency.P50) / 1000, P99: float64(a.Latency.P99) / 1000})
			}
			curves = append(curves, c)
		}
		if len(curves) == 0 {
			continue
		}
		if err := plot.Capacity(sc, curves, filepath.Join(dir, "capacity-"+sc)); err != nil {
			return err
		}
	}
	return nil
}

// ceiling prints the generator's ceiling next to the best server figure of
// the run, both in SIP messages per second (sent plus received), so that a
// reader sees whether a server figure could be the generator's.
func ceiling(w io.Writer, dir string) error {
	var gen float64
	var genFrom string
	files, _ := filepath.Glob(filepath.Join(dir, "ceiling-*.json"))
	for _, f := range files {
		r, err := read(f)
		if err != nil {
			return err
		}
		v := r.MsgsPerBusy
		if v == 0 {
			v = r.MsgsPerCore
		}
		if v > gen {
			gen, genFrom = v, fmt.Sprintf("%s against echo, %.0f%% of core %d busy", r.Scenario, 100*r.CoreBusy, r.GenCore)
		}
	}
	if gen == 0 {
		return fmt.Errorf("no ceiling-*.json in %s", dir)
	}
	var best float64
	var bestFrom string
	all, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range all {
		b := filepath.Base(f)
		if strings.HasPrefix(b, "ceiling-") || strings.HasPrefix(b, "echo-") || strings.HasPrefix(b, "cap-echo-") {
			continue
		}
		r, err := read(f)
		if err != nil || r.Run.Seconds <= 0 {
			continue
		}
		// A figure the server did not sustain, one it disagrees with, or
		// the flood's hostile traffic is not a server figure.
		if ok, _ := passes(r); !ok || r.Scenario == load.ScenarioFlood || r.ServerSide != nil && !r.ServerSide.OK {
			continue
		}
		if v := float64(r.Run.SentMsgs+r.Run.RecvMsgs) / r.Run.Seconds; v > best {
			best, bestFrom = v, strings.TrimSuffix(b, ".json")
		}
	}
	fmt.Fprintf(w, "generator ceiling: %.0f SIP messages/s sent+received per busy core-second (%s)\n", gen, genFrom)
	if best > 0 {
		fmt.Fprintf(w, "best server figure: %.0f messages/s (%s); ceiling / best = %.2f (the instrument can see a limit at >= 2.5)\n",
			best, bestFrom, gen/best)
	}
	return nil
}
