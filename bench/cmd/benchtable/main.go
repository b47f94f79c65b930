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
// passed, from DIR/cap-<server>-<scenario>-<rate>.json.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pinhole-sip/pinhole/bench/load"
)

// servers in the order of the table; echo is the generator's ceiling.
var servers = []string{"echo", "pinhole", "fastpath", "kamailio", "opensips"} // fastpath: pinhole with fastpath.enabled (bench/fastpath)

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
		err = capacity(os.Args[2])
	case len(os.Args) == 2:
		err = table(os.Args[1])
	default:
		fmt.Fprintln(os.Stderr, "usage: benchtable DIR | benchtable -pass FILE | benchtable -capacity DIR")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func table(dir string) error {
	fmt.Printf("%-10s %-9s %9s %10s %8s %8s %9s %9s %8s %8s\n",
		"scenario", "server", "offered/s", "ok/s", "vs ph", "ok %", "p50 ms", "p99 ms", "gen cpu", "backlog")
	for _, sc := range load.Scenarios {
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
			a := r.Run.Actions[mainAction[sc]]
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
			if sc == load.ScenarioKeepalive {
				k := r.Run.Kinds["keepalive"]
				pct = 0
				if k.Sent > 0 {
					pct = 100 * float64(k.Replies) / float64(k.Sent)
				}
				p50, p99 = k.Latency.P50, k.Latency.P99
			}
			name := srv
			if srv == "echo" {
				name = "ceiling"
			}
			fmt.Printf("%-10s %-9s %9.0f %10.0f %8s %7.1f%% %9.2f %9.2f %7.0f%% %8d\n",
				sc, name, r.Rate, ok, ratio, pct, float64(p50)/1000, float64(p99)/1000, 100*r.CPU, r.MaxBacklog)
		}
	}
	fmt.Println(strings.TrimSpace(`
ok/s: succeeded actions per second after warm-up (keepalive: replies seen per second). vs ph: ok/s over
pinhole's. ok %: succeeded / (succeeded + failed + skipped because the device's last transaction was
still out). ceiling: the same load against bench/cmd/echo-responder, which does no work.`))
	return nil
}

// rate is the scenario's measure: succeeded main actions per second, or
// keepalive replies per second.
func rate(r *load.Result, sc string) float64 {
	if r == nil || r.Run.Seconds <= 0 {
		return 0
	}
	if sc == load.ScenarioKeepalive {
		return float64(r.Run.Kinds["keepalive"].Replies) / r.Run.Seconds
	}
	return float64(r.Run.Actions[mainAction[sc]].Succeeded) / r.Run.Seconds
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
	a := r.Run.Actions[mainAction[sc]]
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

func capacity(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "cap-*.json"))
	if err != nil {
		return err
	}
	type key struct{ srv, sc string }
	best := map[key]*load.Result{}
	failed := map[key]float64{}
	for _, f := range files {
		r, err := read(f)
		if err != nil {
			return err
		}
		srv := strings.TrimPrefix(filepath.Base(f), "cap-")
		srv = srv[:strings.IndexByte(srv, '-')]
		k := key{srv, r.Scenario}
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
	fmt.Printf("%-10s %-9s %14s %10s %9s %9s %8s %14s\n", "scenario", "server", "sustained/s", "vs ph", "p50 ms", "p99 ms", "gen cpu", "failed at/s")
	for _, sc := range load.Scenarios {
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
			if srv == "echo" {
				name = "ceiling"
			}
			fail := "-"
			if failed[k] > 0 {
				fail = fmt.Sprintf("%.0f", failed[k])
			}
			if r == nil {
				fmt.Printf("%-10s %-9s %14s %10s %9s %9s %8s %14s\n", sc, name, "< lowest", "-", "-", "-", "-", fail)
				continue
			}
			a := r.Run.Actions[mainAction[sc]]
			ratio := "-"
			if base > 0 {
				ratio = fmt.Sprintf("%.2f", r.Rate/base)
			}
			fmt.Printf("%-10s %-9s %14.0f %10s %9.2f %9.2f %7.0f%% %14s\n", sc, name, r.Rate, ratio,
				float64(a.Latency.P50)/1000, float64(a.Latency.P99)/1000, 100*r.CPU, fail)
		}
	}
	fmt.Println("sustained/s: the highest offered rate of the search with >= 97% of it succeeding per second,")
	fmt.Println("<= 1% failed and p99 <= 200 ms; failed at/s: the lowest rate that did not. ceiling: the generator against echo-responder.")
	return nil
}
