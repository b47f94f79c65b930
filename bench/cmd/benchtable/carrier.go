package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// carrier prints the avalanche (DIR/avalanche-<server>.json, with the
// memory compare.sh read beside it in avalanche-<server>-memory.txt) and
// the mixed day (DIR/mix-<server>.json). It returns an error only when
// neither was run.
func carrier(w io.Writer, dir string) error {
	n := 0
	for _, srv := range servers {
		for _, name := range []string{srv, srv + "-noauth"} {
			r, err := read(filepath.Join(dir, "avalanche-"+name+".json"))
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				return err
			}
			a := r.Avalanche
			if a == nil {
				return fmt.Errorf("avalanche-%s.json: no avalanche result", name)
			}
			if n == 0 {
				fmt.Fprintf(w, "avalanche: %s\n", avalancheTitle(a.Mode))
				fmt.Fprintf(w, "%-16s %8s %9s %11s %16s %10s %9s %9s %8s %9s %7s  %s\n", "server", "devices", "offered/s", "registered",
					"all registered", "200s/s", "p50 s", "p99 s", "retries", "retrans", "failed", "memory")
			}
			n++
			all := fmt.Sprintf("%.2f s", a.AllSeconds)
			if a.AllSeconds == 0 {
				all = fmt.Sprintf("not in %.0f s", r.Duration)
			}
			var retrans uint64
			for _, k := range r.Span.Kinds {
				retrans += k.Retransmitted
			}
			var failed uint64
			for _, x := range r.Run.Actions {
				failed += x.Failed
			}
			delivered := 0.0
			if a.LastSeconds > 0 {
				delivered = float64(a.Registered) / a.LastSeconds
			}
			fmt.Fprintf(w, "%-16s %8d %9.0f %11d %16s %10.0f %9.2f %9.2f %8d %9d %7d  %s\n", name, a.Devices, r.Rate, a.Registered, all,
				delivered, float64(a.Reached.P50)/1e6, float64(a.Reached.P99)/1e6, a.Retries, retrans, failed,
				memoryLine(filepath.Join(dir, "avalanche-"+name+"-memory.txt")))
		}
	}
	if n > 0 {
		fmt.Fprintln(w, strings.TrimSpace(`
all registered: from the first REGISTER to the last device's 200; 200s/s: devices registered per
second of that; p50/p99: per device, from the first REGISTER of the avalanche to its own 200.
retries: registrations started over after a failure; retrans: retransmitted requests (RFC 3261
timer E); failed: registrations that failed (then retried). -noauth: both servers without digest.
memory: before the avalanche → at its peak → once its transactions are gone (the seconds given).
pinhole: RSS (peak: the kernel's VmHWM) and Go heap allocated (go_memstats_heap_alloc_bytes;
before and after read just after a forced GC, the peak sampled every 0.5 s; it can exceed RSS:
allocated pages not yet touched are not resident). Kamailio: shared memory in use (peak: its
max_used) and its processes' private RSS. After a restart, "before" is the restarted server
(pinhole holding the bindings it read back) and per binding counts from the first server just
started, empty; restart: from the signal until the server listened again.`))
	}
	m := 0
	for _, srv := range servers {
		r, err := read(filepath.Join(dir, "mix-"+srv+".json"))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		if m == 0 {
			if n > 0 {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "mixed day: %d devices, refresh every %.0f s, all kinds at once for %.0f s (warm-up %.0f s)\n",
				r.Devices, r.Cadence, r.Duration, r.Warmup)
			fmt.Fprintf(w, "%-9s %-10s %9s %10s %9s %8s %8s %9s %9s\n", "server", "action", "offered/s", "succeeded", "failed", "late", "ok %", "p50 ms", "p99 ms")
		}
		m++
		for _, name := range []string{"register", "refresh", "keepalive", "call"} {
			a, ok := r.Run.Actions[name]
			if !ok {
				continue
			}
			pct := 0.0
			if d := a.Succeeded + a.Failed + a.Busy; d > 0 {
				pct = 100 * float64(a.Succeeded) / float64(d)
			}
			fmt.Fprintf(w, "%-9s %-10s %9.2f %10d %9d %8d %7.1f%% %9.2f %9.2f\n", srv, name, float64(a.Offered)/r.Run.Seconds,
				a.Succeeded, a.Failed, a.Late, pct, float64(a.Latency.P50)/1000, float64(a.Latency.P99)/1000)
		}
	}
	if m > 0 {
		fmt.Fprintln(w, strings.TrimSpace(`
register: first registrations of devices that rebooted (digest); call: setup to the BYE's 200 counted
as one; keepalive: CRLF answered within the deadline (a server that does not answer CRLF fails them
all). ok %: succeeded / (succeeded + failed + skipped while the device's last transaction was out).`))
	}
	if n+m == 0 {
		return fmt.Errorf("no avalanche-*.json or mix-*.json in %s", dir)
	}
	return nil
}

// avalancheTitle says what kind of avalanche the table is about.
func avalancheTitle(mode string) string {
	switch mode {
	case "reregister":
		return "after a restart: devices registered, the server killed and started again on its data, then every device re-registering (same Call-ID, next CSeq, cached credentials) at the offered rate"
	case "reregister-fresh":
		return "after a restart: devices registered, the server killed and started again on its data, then every device registering with a new Call-ID (as after a reboot) at the offered rate"
	}
	return "devices registering on a fresh server, arriving at the offered rate"
}

// memoryLine reads compare.sh's "key value" lines and writes them in MB,
// with the growth per binding held once the avalanche settled.
func memoryLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "-"
	}
	defer f.Close()
	v := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, val, ok := strings.Cut(sc.Text(), " ")
		if x, err := strconv.ParseFloat(strings.TrimSpace(val), 64); ok && err == nil {
			v[k] = x
		}
	}
	mb := func(k string) string { return fmt.Sprintf("%.1f", v[k]/(1<<20)) }
	// Per binding: from the empty server when there was a restart, else
	// from the fresh server the avalanche met.
	from := "before"
	if _, ok := v["empty_private_rss_bytes"]; ok {
		from = "empty"
	}
	per := func(k string) string {
		if v["bindings_held"] <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", (v["after_"+k]-v[from+"_"+k])/v["bindings_held"])
	}
	restart := ""
	if _, ok := v["restart_s"]; ok {
		restart = fmt.Sprintf("; restart %.1f s, bindings %.0f before it, %.0f read back", v["restart_s"],
			v["bindings_before_restart"], v["bindings_after_restart"])
	}
	if _, ok := v["peak_rss_bytes"]; ok {
		line := fmt.Sprintf("RSS %s → %s → %s MB, heap %s → %s (sampled) → %s MB (after GC, %.0f s later)",
			mb("before_rss_bytes"), mb("peak_rss_bytes"), mb("after_rss_bytes"),
			mb("before_heap_bytes"), mb("peak_heap_bytes"), mb("after_heap_bytes"), v["settle_s"])
		if _, ok := v["after_private_rss_bytes"]; ok {
			line += fmt.Sprintf("; per binding: heap %s B, private RSS %s B", per("heap_bytes"), per("private_rss_bytes"))
			if _, ok := v["after_anon_rss_bytes"]; ok {
				line += fmt.Sprintf(" (anonymous %s B)", per("anon_rss_bytes"))
			}
		}
		return line + restart
	}
	if _, ok := v["peak_shm_bytes"]; ok {
		line := fmt.Sprintf("shm %s → %s → %s MB (%.0f s later), private RSS %s → %s MB",
			mb("before_shm_bytes"), mb("peak_shm_bytes"), mb("after_shm_bytes"), v["settle_s"],
			mb("before_private_rss_bytes"), mb("after_private_rss_bytes"))
		if _, ok := v["bindings_held"]; ok {
			line += fmt.Sprintf("; per binding: shm %s B, private RSS %s B", per("shm_bytes"), per("private_rss_bytes"))
			if _, ok := v["after_anon_rss_bytes"]; ok {
				line += fmt.Sprintf(" (anonymous %s B)", per("anon_rss_bytes"))
			}
		}
		return line + restart
	}
	return "-"
}
