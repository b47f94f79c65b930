// Command pinhole is the SIP edge registrar and proxy daemon. It parses
// flags, wires the paths together and handles signals; the work lives in
// the packages below it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/gcpace"
	"github.com/pinhole-sip/pinhole/internal/logging"
	"github.com/pinhole-sip/pinhole/slowpath"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "ctl" {
		os.Exit(ctl(os.Args[2:], os.Stdout, os.Stderr)) // ctl.go
	}
	os.Exit(run())
}

func run() int {
	configPath := flag.String("config", "", "YAML configuration `file` (default: the embedded configuration)")
	checkOnly := flag.Bool("check-config", false, "validate the configuration, print every error found, and exit")
	printDefault := flag.Bool("print-default-config", false, "print the embedded configuration and exit")
	showVersion := flag.Bool("version", false, "print version, commit, Go version and the BPF object's SHA-256, and exit")
	flag.Usage = usage
	flag.Parse() // an unknown flag: usage and exit status 2 (flag.ExitOnError)

	// The daemon takes no arguments; the one word it knows is "version"
	// (ctl is handled before flags). Anything else is refused rather than
	// ignored: "pinhole check-config" must not start a daemon.
	switch args := flag.Args(); {
	case len(args) == 1 && args[0] == "version":
		*showVersion = true
	case len(args) > 0:
		fmt.Fprintf(os.Stderr, "pinhole: unexpected argument %q\n", args[0])
		usage()
		return 2
	}
	if *showVersion {
		printVersion(os.Stdout)
		return 0
	}
	if *printDefault {
		os.Stdout.Write(config.Default())
		return 0
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		// One line per mistake: validation reports them all (errors.Join).
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "pinhole:", line)
		}
		return 2
	}
	if *checkOnly {
		fmt.Printf("pinhole: %s is valid\n", cfg.Source)
		return 0
	}
	logs, err := logging.New(cfg.Log, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pinhole:", err)
		return 2
	}
	log := logs.Logger("main")
	// Paced from the start: loading a million users' credentials and
	// bindings is what first grows the heap.
	pacer := gcpace.New(gcpace.Config{Percent: cfg.Memory.GCHeadroom, Min: int64(cfg.Memory.GCHeadroomMinMB) << 20})
	pacerCtx, stopPacer := context.WithCancel(context.Background())
	defer stopPacer()
	go pacer.Run(pacerCtx)
	metrics.NewGauge("pinhole_gc_percent", func() float64 { return float64(pacer.Percent()) })
	metrics.NewGauge("pinhole_gc_live_heap_bytes", func() float64 { return float64(gcpace.LiveHeap()) })
	// Released apart from the pacing: a GOGC in the environment turns the
	// pacing off, not the return of free heap after a storm.
	releaser := gcpace.NewReleaser(cfg.Memory.ReleaseAfter)
	go releaser.Run(pacerCtx)
	releaseSet := metrics.NewSet()
	releaseSet.RegisterMetricsWriter(func(w io.Writer) {
		metrics.WriteCounterUint64(w, "pinhole_gc_releases_total", releaser.Releases())
		metrics.WriteCounterUint64(w, "pinhole_gc_released_bytes_total", releaser.ReleasedBytes())
	})
	metrics.RegisterSet(releaseSet)
	token, err := cfg.API.ResolveToken()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pinhole:", err)
		return 2
	}

	// Signals are caught before anything starts: a SIGTERM that arrived
	// while pinhole started (the service manager giving up on it, or a
	// test stopping it as soon as it said it was ready) would otherwise
	// end the process with no flush. It is handled once pinhole is up.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)

	srv, err := slowpath.New(cfg, logs.Logger("slowpath"))
	if err != nil {
		log.Error("start failed", "error", err)
		return 1
	}
	if !srv.AuthEnabled() {
		log.Warn("authentication is OFF: any device may register any user of the served domains; set auth.credentials to require digest authentication")
	}
	ed, err := startEdge(cfg, srv, log)
	if err != nil {
		log.Error("start failed", "error", err)
		_ = srv.Close(context.Background())
		return 1
	}
	defer ed.stop()
	if err := srv.Start(); err != nil {
		log.Error("start failed", "error", err)
		_ = srv.Close(context.Background())
		return 1
	}
	ed.runBackground()
	stopMetrics, err := serveMetrics(cfg.Metrics.Listen, log)
	if err != nil {
		log.Error("start failed", "error", err)
		_ = srv.Close(context.Background())
		return 1
	}
	rl := &reloader{path: *configPath, started: cfg, xdp: cfg.XDP, logCfg: cfg.Log, srv: srv, edge: ed, logs: logs, log: log}
	stopAPI, err := serveAPI(cfg.API, token, srv, ed, rl, logs.Logger("mgmt"))
	if err != nil {
		log.Error("start failed", "error", err)
		stopMetrics()
		_ = srv.Close(context.Background())
		return 1
	}
	aors, bindings := srv.Store().Len()
	log.Info("pinhole ready", "config", cfg.Source, "aors", aors, "bindings", bindings)
	printHowTo(cfg)

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			_, _ = rl.reload("SIGHUP") // logs what it did
			continue
		}
		break
	}
	// Graceful stop: new transactions get 503 while those in flight
	// finish on the still open sockets, then the sockets close and every
	// binding is flushed.
	log.Info("stopping: refusing new transactions, finishing those in flight, flushing bindings", "in_flight", srv.InFlight())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopAPI()
	drainCtx, cancelDrain := context.WithTimeout(ctx, drainTimeout)
	if err := srv.Drain(drainCtx); err != nil {
		log.Warn("stopping with transactions unfinished", "error", err)
	}
	cancelDrain()
	stopMetrics()
	ed.stopBackground()
	if err := srv.Close(ctx); err != nil {
		log.Error("stop", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// usage is printed for -h and for a flag or argument pinhole does not know.
func usage() {
	out := flag.CommandLine.Output()
	fmt.Fprintf(out, "usage: pinhole [flags]\n       pinhole version\n       pinhole ctl [flags] command ...\n\nflags:\n")
	flag.PrintDefaults()
}

// drainTimeout bounds how long a stopping pinhole waits for transactions
// in flight; the rest of the 10 s is for closing and the final flush. An
// INVITE still ringing is cut at this point.
const drainTimeout = 7 * time.Second

// printHowTo tells a newcomer how to point a softphone at pinhole.
func printHowTo(cfg *config.Config) {
	domain := cfg.Domains[0]
	fmt.Printf("\npinhole is serving %v\n", cfg.Domains)
	for _, l := range cfg.Listen.Listeners() {
		fmt.Printf("  %-3s %s\n", l.Transport, l.Addr)
	}
	fmt.Printf("\nRegister a softphone with:\n  user:      any name, e.g. alice\n  domain:    %s\n  proxy:     sip:%s;transport=udp\n", domain, cfg.Listen.Listeners()[0].Addr)
	if cfg.Auth.Enabled() {
		fmt.Printf("  password:  as in %s (realm %q)\n", cfg.Auth.Credentials, cfg.Auth.Realm)
		if len(cfg.Domains) > 1 {
			fmt.Printf("             for %s; users of the other domains are in the realm named after their domain\n", domain)
		}
	} else {
		fmt.Printf("  password:  none (authentication is off in this configuration)\n")
	}
	fmt.Printf("Register two phones and call one from the other (sip:bob@%s).\n\n", domain)
}
