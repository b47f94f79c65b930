// Command benchtable prints the comparison table of bench/compare.sh from
// the JSON results sipload wrote: for each scenario, each server's
// succeeded actions per second, its ratio to pinhole's, success and
// latency, and the generator's own ceiling against the echo responder.
//
//	benchtable DIR
//
// reads DIR/<server>-<scenario>.json for every file present.
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
var servers = []string{"echo", "pinhole", "kamailio", "opensips"}

// mainAction is the action a scenario is judged by.
var mainAction = map[string]string{
	load.ScenarioRegister: "register", load.ScenarioRefresh: "refresh", load.ScenarioKeepalive: "keepalive",
	load.ScenarioFlood: "refresh", load.ScenarioCalls: "call", load.ScenarioMix: "refresh",
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtable DIR")
		os.Exit(2)
	}
	if err := table(os.Args[1]); err != nil {
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
			pct := 0.0
			if a.Started > 0 {
				pct = 100 * float64(a.Succeeded) / float64(a.Started)
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
ok/s: succeeded actions per second after warm-up (keepalive: replies seen per second; pinhole answers
keepalives only once its XDP program is attached). vs ph: ok/s over pinhole's. ceiling: the same load
against bench/cmd/echo-responder, which does no work; a server at the ceiling is limited by the generator.`))
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
